import pytest
import torch

from owlearn.nets import Network, NetworkSpec
from owlearn.nets.heads import L2SoftmaxHead, l2_softmax_alpha_lower_bound


@pytest.mark.parametrize("backbone,shape,dim", [
    ("simplenet", (1, 28, 28), 50), ("convnet", (1, 28, 28), 256), ("convnet", (3, 32, 32), 256),
    ("resnet18", (3, 32, 32), 512),
])
@pytest.mark.parametrize("head", ["linear", "l2softmax", "cosine"])
def test_every_backbone_gives_features_and_logits(backbone, shape, dim, head):
    spec = NetworkSpec(backbone, head, 7, shape, mean=(0.5,) * shape[0], std=(0.25,) * shape[0])
    net = Network(spec).eval()
    x = torch.rand(3, *shape)
    assert net.features(x).shape == (3, dim)
    assert net(x).shape == (3, 7)
    assert net.feature_dim == dim


def test_simplenet_is_the_write_up_network():
    net = Network(NetworkSpec("simplenet", "linear", 10, (1, 28, 28)))
    assert net.backbone.fc.in_features == 320 and net.backbone.fc.out_features == 50
    assert sum(p.numel() for p in net.parameters()) == 21840  # 260 + 5,020 + 16,050 + 510


def test_l2_softmax_puts_features_on_a_sphere_of_radius_alpha():
    head = L2SoftmaxHead(16, 4, alpha=5.0)
    f = torch.randn(10, 16) * 7
    scaled = head.embed(f)
    assert torch.allclose(scaled.norm(dim=1), torch.full((10,), 5.0))
    assert torch.allclose(head(f), head.fc(scaled))


@pytest.mark.parametrize("head", ["linear", "l2softmax", "cosine"])
def test_logits_are_one_linear_map_of_the_embedding(head):
    net = Network(NetworkSpec("convnet", head, 5, (1, 16, 16))).eval()
    x = torch.rand(4, 1, 16, 16)
    W, b = net.head.last_layer()
    assert torch.allclose(net(x), net.embed(x) @ W.T + b, atol=1e-5)


def test_learned_alpha_is_a_parameter():
    head = L2SoftmaxHead(8, 3, alpha=4.0, learn_alpha=True)
    assert any(p is head.alpha for p in head.parameters())
    head(torch.randn(2, 8)).sum().backward()
    assert head.alpha.grad is not None


def test_alpha_lower_bound_matches_the_paper():
    # Ranjan et al. 2017: α_low = log(p (C-2) / (1-p)); for C=10, p=0.9 that is log 72
    assert l2_softmax_alpha_lower_bound(10) == pytest.approx(4.2767, abs=1e-4)


def test_bad_spec_names_what_is_wrong():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        NetworkSpec("vgg", "linear", 10, (1, 28, 28))
    with pytest.raises(ValueError, match="one value per channel"):
        NetworkSpec("convnet", "linear", 10, (3, 32, 32), mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="at least 16"):
        Network(NetworkSpec("simplenet", "linear", 10, (1, 8, 8)))
