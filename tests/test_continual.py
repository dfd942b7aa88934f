"""Continual learning: the Fisher, herding, the accuracy matrix, the strategies and the command."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from owlearn.continual import (
    EWC,
    ClassBalancedMemory,
    GaussianStrategy,
    Replay,
    Strategy,
    TeacherLogits,
    b4_config,
    class_incremental,
    diagonal_fisher,
    domain_incremental,
    herding,
    make_strategy,
    run_continual,
)
from owlearn.continual.memory import kernel_herding, random_order
from owlearn.continual.regularization import EWCPenalty, stable_curvature
from owlearn.continual.simple import layer_features
from owlearn.data import ImageDataset
from owlearn.nets import Network, NetworkSpec
from owlearn.space import GaussianClassifier
from owlearn.train.loop import extract_features


def _tiny_net(num_classes=4, seed=0):
    torch.manual_seed(seed)
    return Network(NetworkSpec("convnet", "linear", num_classes, (1, 12, 12), backbone_args={"widths": [4, 8]}))


def _quadrants(n_per_class=24, seed=0):
    """Four classes told apart by which quadrant of a noisy 16×16 image is bright."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(n_per_class)
    images = torch.randint(0, 60, (len(labels), 1, 16, 16), dtype=torch.uint8, generator=g)
    for k in range(4):
        images[labels == k, :, (k // 2) * 8:(k // 2) * 8 + 8, (k % 2) * 8:(k % 2) * 8 + 8] += 150
    return ImageDataset(images, labels, ["nw", "ne", "sw", "se"], name="quadrants")


# -- the Fisher ---------------------------------------------------------------------------------------------
def test_fisher_from_per_sample_gradients_equals_a_slow_reference_loop():
    net = _tiny_net().double()
    # BatchNorm with non-trivial running statistics: the Fisher is taken in eval mode
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(11, 1, 12, 12, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (11,), generator=g)
    fast = diagonal_fisher(net, images, labels, batch_size=4)

    net.eval()
    slow = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    for x, y in zip(images, labels):  # one image at a time: its own gradient, squared
        net.zero_grad()
        F.cross_entropy(net(x[None]), y[None]).backward()
        for n, p in net.named_parameters():
            slow[n] += p.grad.square()
    for n in slow:
        torch.testing.assert_close(fast[n], slow[n] / len(labels), rtol=1e-9, atol=1e-12)


def test_fisher_batch_from_the_gradient_budget_gives_the_same_fisher(monkeypatch):
    import owlearn.continual.regularization as regularization

    net = _tiny_net().double()
    images, labels = torch.rand(9, 1, 12, 12, dtype=torch.float64), torch.arange(9) % 4
    whole = diagonal_fisher(net, images, labels, batch_size=9)
    n_params = sum(p.numel() for p in net.parameters())
    # a budget of 2.5 images' gradients: batches of 2, the last one of 1
    monkeypatch.setattr(regularization, "_FISHER_GRADIENT_BYTES", int(2.5 * 4 * n_params))
    seen, real_vmap = [], regularization.vmap

    def recording_vmap(*args, **kwargs):
        batched = real_vmap(*args, **kwargs)

        def call(params, x, y):
            seen.append(len(y))
            return batched(params, x, y)
        return call

    monkeypatch.setattr(regularization, "vmap", recording_vmap)
    budgeted = diagonal_fisher(net, images, labels)
    assert seen == [2, 2, 2, 2, 1]
    for n in whole:
        torch.testing.assert_close(budgeted[n], whole[n], rtol=1e-9, atol=1e-12)


def test_fisher_is_not_the_square_of_the_batch_gradient():
    net = _tiny_net().double()
    images, labels = torch.rand(8, 1, 12, 12, dtype=torch.float64), torch.arange(8) % 4
    fisher = diagonal_fisher(net, images, labels)
    net.eval()
    net.zero_grad()
    F.cross_entropy(net(images), labels).backward()
    batch_sq = net.head.fc.weight.grad.square()
    assert fisher["head.fc.weight"].sum() > batch_sq.sum()  # E[g²] ≥ E[g]², strictly for differing samples


def test_ewc_penalty_is_zero_at_the_anchor_and_pulls_back_after():
    data = _quadrants()
    net = _tiny_net()
    ewc = EWC(strength=10.0)
    sc = class_incremental(data, data, 2)
    from owlearn.continual.base import Context

    ctx = Context(net, sc, b4_config(epochs=1))
    ewc.after_training(ctx, sc.experiences[0], sc.experiences[0].train)
    penalty = ewc.objectives(ctx, sc.experiences[1], sc.experiences[1].train)[1]
    assert penalty(None).item() == 0.0
    with torch.no_grad():
        net.head.fc.bias += 1.0
    fisher_b = ewc._anchors[0][0]["head.fc.bias"].clamp(max=stable_curvature(ctx.config) / 10.0)
    assert penalty(None).item() == pytest.approx(0.5 * 10.0 * float(fisher_b.sum()), rel=1e-5)


def test_ewc_caps_stiffness_so_a_huge_strength_does_not_diverge():
    assert stable_curvature(b4_config()) == pytest.approx(0.5 * 2 * 1.9 / 2.8 / 0.01)
    net = nn.Linear(3, 2)
    fisher = {n: torch.full_like(p, 5.0) for n, p in net.named_parameters()}
    anchor = {n: p.detach().clone() for n, p in net.named_parameters()}
    penalty = EWCPenalty(net, [(fisher, anchor)], strength=1e4, max_curvature=68.0)
    assert all(torch.allclose(f, torch.full_like(f, 68.0 / 1e4)) for _, f, _ in penalty.terms)
    # several anchors: their springs add up, so the cap holds for the sum, each anchor scaled alike
    three = EWCPenalty(net, [(fisher, anchor)] * 3, strength=1e4, max_curvature=68.0)
    summed = {}
    for p, f, _ in three.terms:
        summed[id(p)] = summed.get(id(p), 0) + f
    assert all(torch.allclose(f, torch.full_like(f, 68.0 / 1e4)) for f in summed.values())
    mild = EWCPenalty(net, [(fisher, anchor)] * 3, strength=1.0, max_curvature=68.0)  # 15 < 68: untouched
    assert all(torch.equal(f, fisher[n]) for (_, f, _), n in zip(mild.terms, list(fisher) * 3))
    # without a cap λF = 5e4: one SGD step would overshoot the anchor ~500-fold; with it the run stays finite
    data = _quadrants()
    sc = class_incremental(data, data, 2)
    result = run_continual(sc, EWC(strength=1e6), _tiny_net(), config=b4_config(epochs=2))
    assert np.isfinite(result.matrix.values).all()


# -- herding and the memory -----------------------------------------------------------------------------------
def _herding_as_written(features, m):
    """iCaRL, Algorithm 4, literally: p_k = argmin_x ||mu - 1/k [phi(x) + sum_{j<k} phi(p_j)]||."""
    phi = [f / f.norm() for f in features.double()]
    mu = sum(phi) / len(phi)
    picked = []
    for k in range(1, m + 1):
        best, best_dist = None, float("inf")
        for i, x in enumerate(phi):
            if i in picked:
                continue
            dist = float((mu - (x + sum((phi[j] for j in picked), torch.zeros_like(mu))) / k).norm())
            if dist < best_dist:
                best, best_dist = i, dist
        picked.append(best)
    return picked


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_herding_picks_what_the_papers_rule_picks(seed):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(40, 6, generator=g).abs() + torch.rand(40, 1, generator=g)
    assert herding(features, 12).tolist() == _herding_as_written(features, 12)


def _kernel_herding_as_written(features, m, bandwidth):
    """Chen, Welling & Smola (2010), literally: p_t = argmax_x E_i k(x, x_i) - 1/t sum_{j<t} k(x, p_j), with a
    Gaussian kernel on unit vectors whose width is bandwidth × the median squared distance (all pairs)."""
    phi = F.normalize(features.double(), dim=1)
    squared = torch.cdist(phi, phi) ** 2
    h2 = bandwidth * squared[~torch.eye(len(phi), dtype=torch.bool)].median()
    k = torch.exp(-squared / (2 * h2))
    picked = []
    for t in range(1, m + 1):
        score = k.mean(1) - (k[:, picked].sum(1) / t if picked else 0)
        score[picked] = -float("inf")
        picked.append(int(score.argmax()))
    return picked


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_herding_picks_what_the_direct_rule_picks(seed):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(60, 5, generator=g).abs() + torch.rand(60, 1, generator=g)
    # fewer than 1,000 images: the median is taken over all pairs, as in the direct rule
    assert kernel_herding(features, 15, bandwidth=0.25, block=7).tolist() == _kernel_herding_as_written(
        features, 15, 0.25)


def test_kernel_herding_keeps_the_classes_spread():
    # 90% of the images around one direction, 10% around another: the first 20 picks of kernel herding hold
    # about 10% from the small group; the paper's herding, pulling the exemplars' mean towards the class
    # mean, takes one from it (with the mean re-normalised to unit length, as it once was here, none)
    g = torch.Generator().manual_seed(0)
    main = torch.randn(180, 8, generator=g) * 0.3 + F.one_hot(torch.tensor(0), 8) * 3
    minor = torch.randn(20, 8, generator=g) * 0.3 + F.one_hot(torch.tensor(1), 8) * 3
    features = torch.cat([main, minor])
    assert int((kernel_herding(features, 20) >= 180).sum()) == 2
    assert int((herding(features, 20) >= 180).sum()) == 1
    identical = kernel_herding(torch.ones(5, 3), 5)  # zero median distance: still a full, valid order
    assert sorted(identical.tolist()) == list(range(5))


def test_memory_is_rebalanced_as_classes_arrive_and_keeps_priority_order():
    data = _quadrants(n_per_class=30)
    memory = ClassBalancedMemory(21)
    memory.add_classes(data, [0], lambda images, m: torch.arange(m))
    first = memory.images[0].clone()
    assert memory.sizes() == {0: 21}
    memory.add_classes(data, [1, 2], lambda images, m: torch.arange(m))
    assert memory.sizes() == {0: 7, 1: 7, 2: 7}
    assert torch.equal(memory.images[0], first[:7])  # shrinking keeps the first (most important) exemplars
    memory.add_classes(data, [3], lambda images, m: random_order(len(images), m, 0))
    assert memory.sizes() == {0: 6, 1: 5, 2: 5, 3: 5} and len(memory.dataset()) == 21


def test_a_class_that_comes_back_in_a_new_domain_keeps_exemplars_of_both():
    light = _quadrants(n_per_class=30)
    dark = ImageDataset(255 - light.images, light.labels, light.class_names, "dark")
    memory = ClassBalancedMemory(16)
    memory.add_classes(light, [0, 1, 2, 3], lambda images, m: torch.arange(m))
    memory.add_classes(dark, [0, 1, 2, 3], lambda images, m: torch.arange(m))
    assert memory.sizes() == {0: 4, 1: 4, 2: 4, 3: 4} and len(memory.dataset()) == 16
    for c, images in memory.images.items():  # two of the first domain's (its best), two of the second's
        assert torch.equal(images[:2], light.images[light.labels == c][:2])
        assert torch.equal(images[2:], dark.images[dark.labels == c][:2])
    small = ClassBalancedMemory(6)
    small.add_classes(light, [0, 1, 2, 3], lambda images, m: torch.arange(m))
    with pytest.raises(ValueError, match="cannot keep one of each of the 8 classes seen"):
        small.add_classes(dark, [0, 1, 2, 3], lambda images, m: torch.arange(m))


# -- the accuracy matrix ----------------------------------------------------------------------------------------
class _Scripted(Strategy):
    """No training; after experience i it answers correctly for classes < 2(i+1) on even images only,
    and says class 0 otherwise."""

    name = "scripted"

    def trains_on(self, ctx, exp):
        return False

    def predict(self, ctx, images):
        known = 2 * (ctx.experience + 1)
        truth = self.truth[: len(images)]
        even = torch.arange(len(images)) % 2 == 0
        return torch.where(even & (truth < known), truth, torch.zeros_like(truth))


def test_accuracy_matrix_of_a_scripted_scenario_is_what_hand_computation_gives():
    # 4 classes, 4 test images each, in 2 experiences of 2 classes
    labels = torch.arange(4).repeat_interleave(4)
    data = ImageDataset(torch.zeros(16, 1, 16, 16, dtype=torch.uint8), labels, list("abcd"))
    sc = class_incremental(data, data, 2)
    strategy = _Scripted()
    strategy.truth = sc.test_upto(1).labels
    result = run_continual(sc, strategy, _tiny_net(), config=b4_config(epochs=1))
    # the test set is [class 0 ×4, class 1 ×4, class 2 ×4, class 3 ×4]; even positions are answered right
    # for known classes, odd ones get class 0 (right for class 0 only).
    # after exp 0: class 0 → 4/4, class 1 → 2/4 → experience 0: 6/8; classes 2, 3 → 0 → experience 1: 0/8
    # after exp 1: experience 0 as before 6/8; classes 2, 3 → 2/4 each → experience 1: 4/8
    expected = np.array([[0.75, 0.0], [0.75, 0.5]])
    np.testing.assert_allclose(result.matrix.values, expected)
    summary = result.matrix.summary()
    assert summary["average_accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    assert summary["average_incremental_accuracy"] == pytest.approx((0.75 + (0.75 + 0.5) / 2) / 2)
    assert summary["forgetting"] == pytest.approx(0.0)
    assert summary["backward_transfer"] == pytest.approx(0.0)
    assert result.final_accuracy == pytest.approx(10 / 16)
    assert result.seen_accuracy == pytest.approx([0.75, 10 / 16])
    assert result.per_class_accuracy == pytest.approx([1.0, 0.5, 0.5, 0.5])
    assert result.final_confusion.sum() == 16 and result.final_confusion[1, 0] == 2


# -- scenarios ------------------------------------------------------------------------------------------------
def test_class_order_given_or_seeded():
    data = _quadrants(n_per_class=2)
    assert [e.classes for e in class_incremental(data, data, 4, class_order=[2, 0, 3, 1]).experiences] == \
        [[2], [0], [3], [1]]
    a = [e.classes for e in class_incremental(data, data, 2, seed=5).experiences]
    assert a == [e.classes for e in class_incremental(data, data, 2, seed=5).experiences]
    assert sorted(sum(a, [])) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot split 4 classes into 5 experiences"):
        class_incremental(data, data, 5)
    with pytest.raises(ValueError, match="distinct"):
        class_incremental(data, data, 2, class_order=[0, 0, 1, 2])


def test_domain_incremental_keeps_one_label_space():
    a, b = _quadrants(seed=0), _quadrants(seed=1)
    b = ImageDataset(255 - b.images, b.labels, ["1", "2", "3", "4"])
    sc = domain_incremental([("light", a, a), ("dark", b, b)])
    assert sc.kind == "domain" and sc.class_names[0] == "nw / 1"
    assert [e.classes for e in sc.experiences] == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_gaussian_strategy_reads_the_layer_below_simplenets_features():
    data = ImageDataset(_quadrants().images.repeat(1, 1, 2, 2), _quadrants().labels, list("abcd"))  # 32×32
    sc = class_incremental(data, data, 2)
    torch.manual_seed(0)
    net = Network(NetworkSpec("simplenet", "linear", 4, (1, 32, 32)))
    strategy = GaussianStrategy()
    run_continual(sc, strategy, net, config=b4_config(epochs=1))
    assert strategy.classifier.n_features_in_ == 20 * 5 * 5  # SimpleNet's pooled conv maps, not its 50-d output
    from owlearn.continual.base import Context

    feats = strategy.features(Context(net, sc, b4_config()), data.images[:3])
    inner = F.relu(F.max_pool2d(net.backbone.conv2(F.relu(F.max_pool2d(net.backbone.conv1(
        net.normalize(data.images[:3].float() / 255)), 2))), 2)).flatten(1)
    torch.testing.assert_close(feats, inner.sqrt(), rtol=1e-4, atol=1e-5)


# -- strategies -------------------------------------------------------------------------------------------------
def test_teacher_table_equals_a_forward_pass_of_the_teacher():
    data = _quadrants()
    net = _tiny_net()
    table = TeacherLogits(net, data, augmented=False)
    live = TeacherLogits(net.eval(), data, augmented=True)

    class _Step:
        index = torch.tensor([3, 7, 50])
        x = data.images[index].float() / 255

    torch.testing.assert_close(table(_Step), live(_Step), rtol=1e-5, atol=1e-5)


def test_gaussian_strategy_equals_a_classifier_refit_on_all_features():
    data = _quadrants()
    sc = class_incremental(data, data, 3, class_order=[3, 1, 0, 2])
    strategy, net = GaussianStrategy(layer="features", power=1.0), _tiny_net()
    result = run_continual(sc, strategy, net, config=b4_config(epochs=1))
    feats = extract_features(net, data)  # the network is frozen after the first experience
    order = [3, 1, 0, 2]
    relabelled = torch.tensor([order.index(int(y)) for y in data.labels])
    refit = GaussianClassifier().fit(feats, relabelled.numpy())
    np.testing.assert_allclose(strategy.classifier.means_, refit.means_, atol=1e-6)
    np.testing.assert_allclose(strategy.classifier.covariance_, refit.covariance_, atol=1e-6)
    assert result.logs[1]["epochs"] == []  # no gradient step after the first experience


@pytest.mark.parametrize("name", ["naive", "joint", "ewc", "online-ewc", "lwf", "icarl", "replay", "gaussian"])
def test_every_strategy_runs_through_the_loop_and_is_deterministic(name):
    data = _quadrants()
    sc = class_incremental(data, data, 2)
    params = {"memory_size": 20} if name in ("icarl", "replay") else {}
    runs = [run_continual(sc, make_strategy(name, **params), _tiny_net(), config=b4_config(epochs=2))
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].matrix.values, runs[1].matrix.values)
    doc = runs[0].to_json()
    assert 0.0 <= doc["final_accuracy"] <= 1.0 and len(doc["per_class_accuracy"]) == 4


def test_replay_memory_joins_the_training_set():
    data = _quadrants()
    sc = class_incremental(data, data, 2)
    strategy = Replay(memory_size=10)
    result = run_continual(sc, strategy, _tiny_net(), config=b4_config(epochs=1))
    assert result.logs[1]["train_images"] == len(sc.experiences[1].train) + 10
    assert strategy.memory.sizes() == {0: 3, 1: 3, 2: 2, 3: 2}


def test_replay_never_answers_with_a_class_it_has_not_trained_on():
    # logit adjustment leaves the outputs of classes still to come untouched: they must not win the argmax
    data = _quadrants()
    sc = class_incremental(data, data, 2)
    strategy = Replay(memory_size=10)
    net = _tiny_net()
    with torch.no_grad():
        net.head.fc.bias[2:] = 100.0  # the untrained outputs of the second experience's classes would win
    result = run_continual(sc, strategy, net, config=b4_config(epochs=2))
    after_first = result.matrix.values[0]
    assert after_first[0] >= 0.5  # only its own two classes are answered; a plain argmax answers 2 or 3: 0.0
    assert after_first[1] == 0.0  # and would score on the second experience before seeing it


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        make_strategy("magic")
    with pytest.raises(ValueError, match="does not take"):
        make_strategy("naive", memory_size=3)


def test_icarl_mahalanobis_nearest_mean_uses_the_exemplars_shared_covariance():
    data = _quadrants()
    sc = class_incremental(data, data, 2)
    strategy = make_strategy("icarl", memory_size=40, metric="mahalanobis")
    net = _tiny_net()
    result = run_continual(sc, strategy, net, config=b4_config(epochs=2))
    assert result.to_json()["final_accuracy"] > 0.5
    # the classifier is a Gaussian fitted on the exemplar features: its predictions are the strategy's
    feats = extract_features(net, data)
    classes = torch.tensor(strategy._mean_classes)
    expected = classes[torch.from_numpy(strategy._gaussian.mahalanobis(feats).argmin(1))]
    ctx = SimpleNamespace(network=net, config=b4_config())
    torch.testing.assert_close(strategy.predict(ctx, data.images), expected)
    with pytest.raises(ValueError, match="metric"):
        make_strategy("icarl", metric="euclid")


def test_icarl_on_the_pre_fc_layer_classifies_in_that_space():
    data = ImageDataset(_quadrants().images.repeat(1, 1, 2, 2), _quadrants().labels, list("abcd"))  # 32×32
    sc = class_incremental(data, data, 2)
    torch.manual_seed(0)
    net = Network(NetworkSpec("simplenet", "linear", 4, (1, 32, 32)))
    strategy = make_strategy("icarl", memory_size=40, layer="pre-fc", power=0.5)
    run_continual(sc, strategy, net, config=b4_config(epochs=1))
    assert strategy._gaussian.n_features_in_ == 20 * 5 * 5  # SimpleNet's pooled conv maps, not its 50-d output
    ctx = SimpleNamespace(network=net, config=b4_config())
    feats = layer_features(ctx, data.images, "pre-fc", 0.5)
    expected = torch.tensor(strategy._mean_classes)[torch.from_numpy(strategy._gaussian.mahalanobis(feats).argmin(1))]
    torch.testing.assert_close(strategy.predict(ctx, data.images), expected)
    with pytest.raises(ValueError, match="layer"):
        make_strategy("icarl", layer="logits")


def test_icarl_selection_rule_is_a_choice_and_both_rules_fill_the_memory():
    data = _quadrants()
    sc = class_incremental(data, data, 2)
    for selection in ("herding", "kernel-herding", "random"):
        strategy = make_strategy("icarl", memory_size=20, selection=selection)
        run_continual(sc, strategy, _tiny_net(), config=b4_config(epochs=1))
        assert strategy.memory.sizes() == {0: 5, 1: 5, 2: 5, 3: 5}
        assert strategy.config()["selection"] == selection
    with pytest.raises(ValueError, match="selection"):
        make_strategy("icarl", selection="farthest")
    with pytest.raises(ValueError, match="bandwidth"):
        make_strategy("icarl", bandwidth=0.0)


def test_results_are_strict_json_when_some_classes_never_arrive():
    import json

    data = _quadrants(n_per_class=10)
    sc = class_incremental(data, data, 2, class_order=[2, 0])  # classes 1 and 3 never arrive
    doc = run_continual(sc, make_strategy("naive"), _tiny_net(), config=b4_config(epochs=1)).to_json()
    assert doc["per_class_accuracy"][1] is None and doc["per_class_accuracy"][3] is None
    json.dumps(doc, allow_nan=False)  # no NaN anywhere


def test_icarl_refuses_means_from_all_where_it_would_have_no_effect():
    from owlearn.continual.rehearsal import ICaRL

    with pytest.raises(ValueError, match="means_from='all' applies to the cosine metric"):
        ICaRL(means_from="all")  # the default metric is Mahalanobis
    assert ICaRL(means_from="all", metric="cosine").means_from == "all"
