import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor

from owlearn.space import (
    DETECTORS,
    EnergyDetector,
    GaussianClassifier,
    KNNDetector,
    LOFDetector,
    MahalanobisDetector,
    MSPDetector,
    NotFittedError,
    ViMDetector,
    make_detector,
)

PARAMS = {"lof": {}, "knn": {"n_neighbors": 10}, "mahalanobis": {}, "vim": {}, "msp": {}, "energy": {},
          "layers": {"layer_dims": [8, 8, 16]}}


def _inputs(name, X):
    """The multi-layer detector reads blocks side by side: here two 'layers' (halves of X), then X itself."""
    return np.hstack([X[:, :8], X[:, 8:], X]) if name == "layers" else X


def _fitted(name, f, **extra):
    params = {**PARAMS[name], **extra}
    if name in ("vim", "layers"):
        params.update(W=f.W, b=f.b)
    return make_detector(name, **params).fit(_inputs(name, f.X), labels=f.y, logits=f.logits(f.X))


def _scores(det, f, X):
    return det.score_samples(_inputs(det.name, X), logits=f.logits(X))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_far_outliers_are_ranked_below_inliers(features, name):
    det = _fitted(name, features)
    inl, out = _scores(det, features, features.X_test), _scores(det, features, features.outliers)
    auroc = roc_auc_score(np.r_[np.ones(len(inl)), np.zeros(len(out))], np.r_[inl, out])
    assert auroc > 0.99, f"{name}: AUROC {auroc:.3f}"


@pytest.mark.parametrize("normalize", [False, True])
def test_lof_equals_sklearn_including_duplicates(normalize):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    X[:25] = X[0]  # more copies than neighbours: k-distance 0, where sklearn's 1e-10 matters
    X[100:103] = X[100]
    Q = np.vstack([rng.normal(size=(200, 6)) * 1.5, X[:3], X[100:101], X[300:302] + 1e-3])
    ours = LOFDetector(n_neighbors=20, normalize=normalize, contamination=0.1).fit(X)
    unit = (lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)) if normalize else (lambda A: A)
    sk = LocalOutlierFactor(n_neighbors=20, novelty=True, contamination=0.1).fit(unit(X))
    np.testing.assert_allclose(ours.score_samples(Q), sk.score_samples(unit(Q)), rtol=1e-9)
    np.testing.assert_allclose(ours.negative_outlier_factor_, sk.negative_outlier_factor_, rtol=1e-9)
    assert ours.offset_ == pytest.approx(sk.offset_, rel=1e-9)
    np.testing.assert_array_equal(ours.predict(Q), sk.predict(unit(Q)))


@pytest.mark.filterwarnings("ignore:n_neighbors")
def test_lof_auto_contamination_and_small_reference():
    X = np.random.default_rng(1).normal(size=(8, 3))
    lof = LOFDetector().fit(X)  # n_neighbors clipped to n - 1, as sklearn
    sk = LocalOutlierFactor(novelty=True).fit(X)
    assert lof.n_neighbors_ == sk.n_neighbors_ == 7
    assert lof.offset_ == sk.offset_ == -1.5
    np.testing.assert_allclose(lof.score_samples(X + 0.1), sk.score_samples(X + 0.1), rtol=1e-9)


def test_knn_score_is_minus_kth_distance_between_unit_vectors(features):
    X, Q = features.X, np.vstack([features.X_test[:50], features.outliers[:50]])
    det = KNNDetector(n_neighbors=7).fit(X.astype(np.float32))
    unit = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)  # noqa: E731
    d = np.linalg.norm(unit(Q)[:, None] - unit(X.astype(np.float32).astype(np.float64))[None], axis=2)
    np.testing.assert_allclose(det.score_samples(Q), -np.sort(d, axis=1)[:, 6], rtol=1e-6)


def test_mahalanobis_score_is_minus_min_squared_distance(features):
    f = features
    det = MahalanobisDetector(shrinkage=0.0).fit(f.X, f.y)
    means = np.stack([f.X[f.y == k].mean(0) for k in range(3)])
    cov = sum((f.X[f.y == k] - means[k]).T @ (f.X[f.y == k] - means[k]) for k in range(3)) / len(f.X)
    P = np.linalg.inv(cov)
    diff = f.X_test[:, None] - means[None]
    want = -np.einsum("nkd,de,nke->nk", diff, P, diff).min(1)
    np.testing.assert_allclose(det.score_samples(f.X_test), want, rtol=1e-6)
    shared = MahalanobisDetector.from_classifier(det.classifier_)
    np.testing.assert_array_equal(shared.score_samples(f.X_test), det.score_samples(f.X_test))


def test_vim_follows_the_reference_implementation(features):
    f = features
    W, b, dim = f.W, f.b, 8
    u = -np.linalg.pinv(W) @ b
    eig_vals, eig_vecs = np.linalg.eigh((f.X - u).T @ (f.X - u) / len(f.X))
    NS = eig_vecs[:, np.argsort(-eig_vals)[dim:]]
    alpha = (f.X @ W.T + b).max(1).mean() / np.linalg.norm((f.X - u) @ NS, axis=1).mean()
    Q = np.vstack([f.X_test, f.outliers])
    want = logsumexp(Q @ W.T + b, axis=1) - alpha * np.linalg.norm((Q - u) @ NS, axis=1)
    det = ViMDetector(dim=dim).fit(f.X, W=W, b=b)  # D = 16 -> default dim D // 2 = 8
    assert det.dim_ == dim == ViMDetector(W, b).fit(f.X).dim_
    assert det.alpha_ == pytest.approx(alpha, rel=1e-9)
    np.testing.assert_allclose(det.score_samples(Q), want, rtol=1e-9)


def test_logit_detectors_match_their_formulas():
    logits = np.random.default_rng(0).normal(scale=3, size=(40, 5))
    np.testing.assert_allclose(MSPDetector().fit().score_samples(logits=logits), softmax(logits, 1).max(1))
    np.testing.assert_allclose(EnergyDetector().fit().score_samples(logits=logits), logsumexp(logits, 1))
    np.testing.assert_allclose(EnergyDetector(temperature=2.0).fit().score_samples(logits=torch.tensor(logits)),
                               2.0 * logsumexp(logits / 2.0, 1))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_contamination_sets_offset_to_that_training_percentile(features, name):
    det = _fitted(name, features, contamination=0.1)
    if name in ("lof", "knn"):  # scored leave-one-out
        train = det.negative_outlier_factor_ if name == "lof" else None
    else:
        train = _scores(det, features, features.X)
    if train is not None:
        assert det.offset_ == pytest.approx(np.percentile(train, 10.0))
    rejected = (det.predict(_inputs(name, features.X), logits=features.logits(features.X)) == -1).mean()
    assert rejected == pytest.approx(0.1, abs=0.05)  # in-sample; leave-one-out scores are close to it
    d = det.decision_function(_inputs(name, features.X_test), logits=features.logits(features.X_test))
    np.testing.assert_allclose(d, _scores(det, features, features.X_test) - det.offset_)


def test_knn_contamination_uses_leave_one_out_scores(features):
    X = features.X[:300]
    det = KNNDetector(n_neighbors=5, contamination=0.2).fit(X)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    d = np.linalg.norm(unit[:, None] - unit[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert det.offset_ == pytest.approx(np.percentile(-np.sort(d, axis=1)[:, 4], 20.0))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_round_trip_through_a_model_file_gives_identical_outputs(features, name, roundtrip):
    det = _fitted(name, features, contamination=0.05)
    loaded = roundtrip(det)
    Q = np.vstack([features.X_test, features.outliers])
    np.testing.assert_array_equal(_scores(loaded, features, Q), _scores(det, features, Q))
    np.testing.assert_array_equal(loaded.predict(_inputs(name, Q), logits=features.logits(Q)),
                                  det.predict(_inputs(name, Q), logits=features.logits(Q)))
    uncalibrated = roundtrip(_fitted(name, features))
    assert not hasattr(uncalibrated, "offset_") or name == "lof"


def test_lof_max_reference_subsamples_reproducibly(features):
    a = LOFDetector(max_reference=100, random_state=3).fit(features.X)
    b = LOFDetector(max_reference=100, random_state=3).fit(features.X)
    assert a.reference_.shape == (100, 16)
    np.testing.assert_array_equal(a.score_samples(features.X_test), b.score_samples(features.X_test))


def test_errors_name_the_problem(features):
    f = features
    with pytest.raises(NotFittedError):
        KNNDetector().score_samples(f.X)
    with pytest.raises(NotFittedError, match="calibrate"):
        KNNDetector().fit(f.X).predict(f.X_test)
    with pytest.raises(ValueError, match="labels"):
        MahalanobisDetector().fit(f.X)
    with pytest.raises(ValueError, match="needs the last layer"):
        ViMDetector().fit(f.X)
    with pytest.raises(ValueError, match="needs logits"):
        EnergyDetector().fit().score_samples(f.X)
    with pytest.raises(ValueError, match="contamination"):
        KNNDetector(contamination=0.7).fit(f.X)
    with pytest.raises(ValueError, match="contamination"):
        KNNDetector(contamination="auto").fit(f.X)
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("isolation-forest")
    with pytest.raises(ValueError, match="features"):
        LOFDetector().fit(f.X).score_samples(f.X[:, :4])
    with pytest.raises(ValueError, match="n_neighbors"):
        KNNDetector(n_neighbors=0).fit(f.X)
    with pytest.raises(ValueError, match="numeric"):
        LOFDetector().fit([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match="config describes"):
        KNNDetector.from_state({}, LOFDetector().config())


def test_refit_drops_a_stale_threshold(features):
    det = MahalanobisDetector(contamination=0.1).fit(features.X, features.y)
    det.set_params(contamination=None).fit(features.X, features.y)
    assert not hasattr(det, "offset_")


def test_detectors_accept_torch_tensors(features, roundtrip):
    f = features
    X, Q = torch.from_numpy(f.X).float(), torch.from_numpy(f.X_test).float()
    a = GaussianClassifier().fit(X, torch.from_numpy(f.y))
    det = MahalanobisDetector.from_classifier(a)
    np.testing.assert_allclose(det.score_samples(Q), MahalanobisDetector().fit(f.X.astype(np.float32), f.y)
                               .score_samples(f.X_test.astype(np.float32)))
    assert LOFDetector().fit(X).reference_.dtype == np.float32
    layer = torch.nn.Linear(16, 3)  # a network's head: parameters that require grad
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(f.W))
        layer.bias.copy_(torch.from_numpy(f.b))
    vim = ViMDetector(layer.weight, layer.bias).fit(X)
    want = ViMDetector(f.W.astype(np.float32), f.b.astype(np.float32)).fit(f.X.astype(np.float32))
    np.testing.assert_allclose(vim.score_samples(Q), want.score_samples(Q.numpy()), rtol=1e-9)
    assert roundtrip(vim).config() == vim.config()


def test_knn_add_reference_equals_fitting_on_all_and_keeps_the_threshold(features):
    f = features
    old, new = f.X[f.y < 2], f.X[f.y == 2]
    grown = KNNDetector(n_neighbors=5, contamination=0.05).fit(old)
    offset = grown.offset_
    grown.add_reference(new)
    refit = KNNDetector(n_neighbors=5).fit(np.vstack([old, new]))
    assert grown.offset_ == offset and grown.reference_.shape == refit.reference_.shape
    np.testing.assert_allclose(grown.score_samples(f.X_test), refit.score_samples(f.X_test), atol=1e-6)
    with pytest.raises(ValueError, match="features"):
        grown.add_reference(new[:, :3])
