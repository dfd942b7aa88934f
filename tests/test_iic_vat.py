import math

import pytest
import torch
from torch import nn

from owlearn.cluster import iic_loss, joint_distribution
from owlearn.train.vat import VAT, adversarial_direction, frozen_batchnorm_stats, vat_loss


def _mutual_information(joint: torch.Tensor) -> float:
    pi, pj = joint.sum(1), joint.sum(0)
    return float(sum(joint[i, j] * math.log(joint[i, j] / (pi[i] * pj[j]))
                     for i in range(joint.shape[0]) for j in range(joint.shape[1]) if joint[i, j] > 0))


def test_iic_loss_is_minus_the_mutual_information_of_the_joint():
    g = torch.Generator().manual_seed(0)
    p1 = torch.softmax(torch.randn(50, 4, generator=g), 1)
    p2 = torch.softmax(torch.randn(50, 4, generator=g), 1)
    joint = joint_distribution(p1, p2)
    assert torch.allclose(joint, joint.T) and float(joint.sum()) == pytest.approx(1.0)
    assert float(iic_loss(p1, p2)) == pytest.approx(-_mutual_information(joint), abs=1e-6)


def test_a_perfect_bijection_maximises_mutual_information():
    k = 5
    p = torch.eye(k).repeat(4, 1)  # every image certain, both views agree, clusters used evenly
    best = -float(iic_loss(p, p))
    assert best == pytest.approx(math.log(k), abs=1e-4)  # up to the clamp of empty cells
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        q1 = torch.softmax(3 * torch.randn(20, k, generator=g), 1)
        q2 = torch.softmax(3 * torch.randn(20, k, generator=g), 1)
        assert -float(iic_loss(q1, q2)) < best
    collapsed = torch.zeros(20, k)
    collapsed[:, 0] = 1
    assert -float(iic_loss(collapsed, collapsed)) == pytest.approx(0.0, abs=1e-4)


def test_alpha_weights_the_marginal_entropies():
    p = torch.eye(4).repeat(3, 1)
    # for an even bijection: H(joint) = log K, H(Zi) = H(Zj) = log K, so loss = log K - 2 α log K
    assert float(iic_loss(p, p, alpha=10.0)) == pytest.approx(math.log(4) - 20 * math.log(4), abs=1e-4)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="same shape"):
        iic_loss(torch.rand(3, 4), torch.rand(3, 5))


def _toy():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 3))


def test_vat_direction_has_unit_norm_and_beats_a_random_direction():
    model = _toy()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 4, 4, generator=g)
    logits = model(x)
    d = adversarial_direction(model, x, logits, xi=1e-3, iterations=2, generator=g)
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(64), atol=1e-5)
    eps = 0.5
    with torch.no_grad():
        p = torch.softmax(logits, 1)

        def kl(r):
            return (p * (torch.log_softmax(logits, 1) - torch.log_softmax(model(x + eps * r), 1))).sum(1)
        random = torch.randn(x.shape, generator=g)
        random = random / random.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        assert float(kl(d).mean()) > 2 * float(kl(random).mean())


def test_vat_direction_has_unit_norm_when_the_gradient_is_tiny():
    # the power iteration's gradient is of the order of ξ²: at ξ = 1e-6 its norm is far below any fixed
    # floor against division by zero, and the direction must still come out with unit norm
    model = _toy()
    x = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(3)).double()
    d = adversarial_direction(model.double(), x, model(x), xi=1e-6, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(16, dtype=torch.float64), atol=1e-9)


def test_vat_direction_at_the_default_xi_matches_the_exact_power_iteration():
    # float32 at the default ξ against float64 at ξ = 1e-6 (where float64 is exact enough): the same direction
    model = _toy()
    x = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    d = adversarial_direction(model, x, model(x), generator=torch.Generator().manual_seed(6))
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(32), atol=1e-5)
    exact = _toy().double()
    reference = adversarial_direction(exact, x.double(), exact(x.double()), xi=1e-6,
                                      generator=torch.Generator().manual_seed(6))
    cosine = torch.nn.functional.cosine_similarity(d.flatten(1).double(), reference.flatten(1))
    assert float(cosine.min()) > 0.99


def test_vat_loss_has_no_gradient_through_the_clean_prediction():
    model = _toy()
    x = torch.randn(8, 1, 4, 4)
    clean = model(x)
    loss = vat_loss(model, x, clean, eps=0.5)
    loss.backward()
    assert loss.item() > -1e-6 and model[1].weight.grad is not None  # a KL divergence, up to rounding


def test_batchnorm_statistics_do_not_move_under_perturbation():
    bn = nn.BatchNorm1d(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), bn, nn.Linear(4, 3)).train()
    before = bn.running_mean.clone()
    with frozen_batchnorm_stats(model):
        model(torch.randn(8, 1, 4, 4) * 5 + 3)
    assert torch.equal(bn.running_mean, before) and bn.momentum == 0.1


def test_vat_objective_trains_in_the_shared_loop():
    from owlearn.data import ImageDataset
    from owlearn.nets import Network, NetworkSpec
    from owlearn.train import CrossEntropy, TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (64, 1, 12, 12), dtype=torch.uint8, generator=g)
    labels = torch.arange(64) % 2
    labels[16:] = -1  # mostly unlabeled: VAT still has something to say about those
    data = ImageDataset(images, labels, ["a", "b"])
    net = Network(NetworkSpec("convnet", "linear", 2, (1, 12, 12), backbone_args={"widths": [8, 8, 8, 8]}))
    history = Trainer(net, TrainConfig(epochs=1, batch_size=16), objectives=[CrossEntropy(), VAT(eps=1.0)],
                      progress=False).fit(data)
    assert math.isfinite(history.last["loss"])


def test_vat_direction_under_bf16_autocast_is_the_float32_one():
    # bf16 would round ξ·d away (at the default ξ too); the power iteration must fall back to float32 inside autocast
    model = _toy()
    x = torch.randn(32, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    reference = adversarial_direction(model, x, model(x), generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        assert logits.dtype == torch.bfloat16
        d = adversarial_direction(model, x, logits, generator=torch.Generator().manual_seed(2))
    assert d.dtype == torch.float32
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(32), atol=1e-5)
    assert torch.allclose(d, reference, atol=1e-5)


def test_iic_joint_distribution_stays_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    p1, p2 = torch.softmax(torch.randn(256, 10, generator=g), 1), torch.softmax(torch.randn(256, 10, generator=g), 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = joint_distribution(p1, p2)
    assert under.dtype == torch.float32
    assert torch.allclose(under, joint_distribution(p1, p2), atol=1e-7)
