"""The multi-layer detector: per-layer Mahalanobis scores, standardised and summed, plus ViM."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from owlearn.nets import Network, NetworkSpec
from owlearn.space import GaussianClassifier, KNNDetector, LayerEnsembleDetector, ViMDetector
from owlearn.space.outliers import seeded_subset


def _layered(f):
    """Block 0: dims 0-7 (where classes differ), block 1: dims 8-15 (where the outliers differ), then all."""
    return lambda X: np.hstack([X[:, :8], X[:, 8:], X])


def test_score_is_the_sum_of_standardised_layer_scores(features):
    f, blocks = features, _layered(features)
    det = LayerEnsembleDetector([8, 8, 16], f.W, f.b, shrinkage=0.0, knn_block=None).fit(blocks(f.X), labels=f.y)
    Q = np.vstack([f.X_test, f.outliers])
    want = np.zeros(len(Q))
    for part in (slice(0, 8), slice(8, 16)):  # the default blocks (-3, -2): the two 'layers'
        g = GaussianClassifier(shrinkage=0.0).fit(f.X[:, part], f.y)
        train = -g.mahalanobis(f.X[:, part]).min(1)
        want += (-g.mahalanobis(Q[:, part]).min(1) - train.mean()) / train.std()
    vim = ViMDetector(f.W, f.b).fit(f.X)
    train = vim.score_samples(f.X)
    want += (vim.score_samples(Q) - train.mean()) / train.std()
    np.testing.assert_allclose(det.score_samples(blocks(Q)), want, rtol=1e-9, atol=1e-9)


def test_knn_term_is_standardised_on_training_features_outside_its_reference_set(features):
    f, blocks = features, _layered(features)
    X, Q = blocks(f.X), blocks(np.vstack([f.X_test, f.outliers]))
    n_ref = len(X) // 2
    det = LayerEnsembleDetector([8, 8, 16], vim=False, blocks=[0], knn_block=1, knn_reference=n_ref).fit(X, labels=f.y)
    without = LayerEnsembleDetector([8, 8, 16], vim=False, blocks=[0], knn_block=None).fit(X, labels=f.y)
    order = np.random.default_rng(0).permutation(len(X))
    ref, rest = np.sort(order[:n_ref]), order[n_ref:]
    knn = KNNDetector(n_neighbors=1).fit(X[ref, 8:16].astype(np.float32))  # kept in float32, as the network's
    held_out = knn.score_samples(X[rest, 8:16])
    want = without.score_samples(Q) + (knn.score_samples(Q[:, 8:16]) - held_out.mean()) / held_out.std()
    np.testing.assert_allclose(det.score_samples(Q), want, rtol=1e-9, atol=1e-9)
    # the outliers differ in block 1, which the kNN term reads: it makes them stand out further
    auc = lambda d: roc_auc_score(np.r_[np.ones(len(f.X_test)), np.zeros(len(f.outliers))], d.score_samples(Q))  # noqa: E731
    assert auc(det) > auc(without)
    with pytest.raises(ValueError, match="knn_block"):
        LayerEnsembleDetector([8, 8, 16], vim=False, knn_block=3).fit(X, labels=f.y)


def test_a_layer_sees_outliers_that_the_last_layer_misses():
    # the classes differ in block 0; outliers look normal there but sit far off in block 1 (an earlier layer)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 300)
    shallow, deep = rng.normal(size=(600, 4)), rng.normal(size=(600, 3)) + 6.0 * y[:, None]
    X = np.hstack([shallow, deep])
    out = np.hstack([rng.normal(size=(200, 4)) + 5.0, rng.normal(size=(200, 3)) + 6.0])
    inl = np.hstack([rng.normal(size=(200, 4)), rng.normal(size=(200, 3))])
    both = LayerEnsembleDetector([4, 3], blocks=[0, 1], vim=False).fit(X, labels=y)
    last = LayerEnsembleDetector([4, 3], blocks=[1], vim=False).fit(X, labels=y)
    auc = lambda d: roc_auc_score(np.r_[np.ones(200), np.zeros(200)], d.score_samples(np.vstack([inl, out])))  # noqa: E731
    assert auc(both) > 0.99 > 0.7 > auc(last)


def test_add_class_teaches_every_layer(features):
    f, blocks = features, _layered(features)
    det = LayerEnsembleDetector([8, 8, 16], vim=False).fit(blocks(f.X[f.y < 2]), labels=f.y[f.y < 2])
    before = det.score_samples(blocks(f.X_test[f.y_test == 2])).mean()
    n_ref = len(det.knn_.reference_)
    det.add_class(blocks(f.X[f.y == 2]), name="new")
    assert det.score_samples(blocks(f.X_test[f.y_test == 2])).mean() > before + 10
    assert len(det.knn_.reference_) == n_ref + int((f.y == 2).sum())  # the kNN term knows the class too


def test_left_out_scores_are_the_scores_of_each_example_without_itself(features):
    f, blocks = features, _layered(features)
    old, new = blocks(f.X[f.y < 2]), blocks(f.X[f.y == 2])

    def grown(examples):
        det = LayerEnsembleDetector([8, 8, 16], vim=False).fit(old, labels=f.y[f.y < 2])
        det.add_class(examples, name="new")
        return det

    det = grown(new)
    left_out = det.left_out_scores(new)
    assert (left_out < det.score_samples(new)).all()  # in-sample, every example flatters itself
    for i in range(5):  # the class learned from the others: only the shared covariance differs a little
        without_i = grown(np.delete(new, i, axis=0))
        np.testing.assert_allclose(left_out[i], without_i.score_samples(new[i:i + 1])[0], rtol=0.01)
    # a seeded subset scores the same examples the same way (the class's size still counts in full)
    some = seeded_subset(len(new), 7)
    np.testing.assert_allclose(det.left_out_scores(new, at_most=7), left_out[some.numpy()], rtol=1e-12)
    np.testing.assert_allclose(det.knn_.left_out_scores(new[:, 8:16], at_most=7),
                               det.knn_.left_out_scores(new[:, 8:16])[some.numpy()], rtol=1e-12)


def test_errors_name_the_problem(features):
    f = features
    with pytest.raises(ValueError, match="layer_dims"):
        LayerEnsembleDetector(vim=False).fit(f.X, labels=f.y)
    with pytest.raises(ValueError, match="add up"):
        LayerEnsembleDetector([8, 7], blocks=[0], vim=False).fit(f.X, labels=f.y)
    with pytest.raises(ValueError, match="blocks"):
        LayerEnsembleDetector([8, 8], blocks=[0, -2], vim=False).fit(f.X, labels=f.y)
    with pytest.raises(ValueError, match="labels"):
        LayerEnsembleDetector([8, 8], blocks=[0], vim=False).fit(f.X)
    with pytest.raises(ValueError, match="weight W"):
        LayerEnsembleDetector([8, 8], blocks=[0]).fit(f.X, labels=f.y)


@pytest.mark.parametrize("backbone, in_shape, mean", [("convnet", (1, 28, 28), (0.5,)),
                                                      ("simplenet", (1, 28, 28), (0.5,)),
                                                      ("resnet18", (3, 32, 32), (0.5, 0.5, 0.5))])
@pytest.mark.parametrize("pooling", ["mean", "meanstd"])
def test_network_layer_outputs_agree_with_its_forward_pass(backbone, in_shape, mean, pooling):
    torch.manual_seed(0)
    net = Network(NetworkSpec(backbone, "l2softmax", 5, in_shape, mean, mean)).eval()
    x = torch.rand(3, *in_shape)
    with torch.no_grad():
        layers, emb, logits = net.layer_outputs(x, pooling)
        torch.testing.assert_close(emb, net.embed(x))
        torch.testing.assert_close(logits, net(x))
        assert [t.shape[1] for t in layers] == net.layer_dims(pooling)
        # the last stage, averaged over space, is the backbone's feature vector
        torch.testing.assert_close(layers[-1][:, : net.feature_dim], net.features(x))
    with pytest.raises(ValueError, match="pooling"):
        net.layer_features(x, "max")
