"""The fast inference copy: the same function as the network, rebuilt when the network changes."""

import torch
from torch import nn

from owlearn.nets import Network, NetworkSpec
from owlearn.nets.inference import fold_batch_norm, for_inference


def _trained_bn(net: nn.Module) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return net.eval()


def test_folding_keeps_every_backbone_s_outputs():
    for backbone, shape in (("convnet", (1, 28, 28)), ("resnet18", (3, 32, 32))):
        net = _trained_bn(Network(NetworkSpec(backbone, "l2softmax", 5, shape, (0.5,) * shape[0], (0.5,) * shape[0])))
        x = torch.rand(4, *shape)
        fast = for_inference(net)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
        with torch.no_grad():
            torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), net(x),
                                       rtol=1e-4, atol=1e-4)
            for a, b in zip(fast.layer_features(x, "meanstd"), net.layer_features(x, "meanstd"), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)  # folding reorders float sums
        assert net.training is False and any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_copy_is_cached_and_rebuilt_after_a_training_step():
    net = _trained_bn(Network(NetworkSpec("convnet", "linear", 3, (1, 8, 8), backbone_args={"widths": [4, 8]})))
    fast = for_inference(net)
    assert for_inference(net) is fast
    x = torch.rand(2, 1, 8, 8)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net(x).sum().backward()
    opt.step()  # in-place update of the weights (and batch norm running statistics in train mode)
    net.eval()
    rebuilt = for_inference(net)
    assert rebuilt is not fast
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x), rtol=1e-4, atol=1e-5)


def test_fold_counts_only_conv_bn_pairs():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))
    assert fold_batch_norm(seq.eval()) == 1  # the first batch norm follows a ReLU, not a convolution
    assert isinstance(seq[2], nn.BatchNorm2d) and isinstance(seq[4], nn.Identity)
