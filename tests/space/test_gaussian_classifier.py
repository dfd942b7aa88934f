import numpy as np
import pytest
import torch
from sklearn.covariance import OAS
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from owlearn.space import GaussianClassifier, NotFittedError


def _data(n=300, dim=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    means = rng.normal(scale=2.0, size=(k, dim))
    A = rng.normal(size=(dim, dim)) / np.sqrt(dim) + np.eye(dim)  # correlated, well-conditioned noise
    return means[y] + rng.normal(size=(n, dim)) @ A, y


def test_predictions_equal_sklearn_lda_without_shrinkage():
    X, y = _data()
    X_new, _ = _data(seed=1)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=None).fit(X, y)
    clf = GaussianClassifier(shrinkage=0.0).fit(X, y)
    np.testing.assert_array_equal(clf.predict(X_new), lda.predict(X_new))
    np.testing.assert_allclose(clf.predict_proba(X_new), lda.predict_proba(X_new), atol=1e-7)
    np.testing.assert_allclose(clf.means_, lda.means_, rtol=1e-12)
    np.testing.assert_allclose(clf.priors_, lda.priors_, rtol=1e-12)


def test_decision_function_and_mahalanobis_follow_the_formula():
    X, y = _data()
    X_new, _ = _data(n=50, seed=2)
    clf = GaussianClassifier(shrinkage=0.2).fit(X, y)
    P = np.linalg.inv(clf.covariance_)
    diff = X_new[:, None, :] - clf.means_[None]
    d2 = np.einsum("nkd,de,nke->nk", diff, P, diff)
    np.testing.assert_allclose(clf.mahalanobis(X_new), d2, rtol=1e-9)
    np.testing.assert_allclose(clf.decision_function(X_new), -0.5 * d2 + np.log(clf.priors_), rtol=1e-9)
    np.testing.assert_allclose(clf.predict_proba(X_new).sum(1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X_new)), clf.predict_proba(X_new))


def test_auto_shrinkage_is_oas_on_class_centred_features():
    X, y = _data(n=60, dim=20)  # few samples per dimension: shrinkage matters
    clf = GaussianClassifier().fit(X, y)
    oas = OAS(assume_centered=True).fit(X - clf.means_[np.searchsorted(clf.classes_, y)])
    assert clf.shrinkage_ == pytest.approx(oas.shrinkage_, rel=1e-10)
    floor = 1e-9 * np.trace(oas.covariance_) / X.shape[1]  # trace is unchanged by shrinkage
    np.testing.assert_allclose(clf.covariance_, oas.covariance_ + floor * np.eye(X.shape[1]), rtol=1e-10,
                               atol=1e-14)


def test_fixed_shrinkage_targets_scaled_identity():
    X, y = _data()
    clf0 = GaussianClassifier(shrinkage=0.0).fit(X, y)
    clf = GaussianClassifier(shrinkage=0.5).fit(X, y)
    S = clf0.scatter_ / len(X)
    mu = np.trace(S) / X.shape[1]
    np.testing.assert_allclose(clf.covariance_, 0.5 * S + (0.5 + 1e-9) * mu * np.eye(X.shape[1]), rtol=1e-12)


def _same_model(a, b, X, rtol=1e-6):
    np.testing.assert_array_equal(a.classes_, b.classes_)
    assert a.class_names_ == b.class_names_
    np.testing.assert_array_equal(a.counts_, b.counts_)
    np.testing.assert_allclose(a.means_, b.means_, rtol=rtol)
    np.testing.assert_allclose(a.covariance_, b.covariance_, rtol=rtol, atol=1e-12)
    assert a.shrinkage_ == pytest.approx(b.shrinkage_, rel=rtol)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("shrinkage", ["auto", 0.0, 0.3])
def test_add_class_equals_refit(shrinkage):
    X, y = _data(k=5)
    names = ["a", "b", "c", "d", "e"]
    old = y < 4
    clf = GaussianClassifier(shrinkage=shrinkage).fit(X[old], y[old], class_names=names[:4])
    assert clf.add_class(torch.as_tensor(X[~old]), name="e") == 4
    _same_model(clf, GaussianClassifier(shrinkage=shrinkage).fit(X, y, class_names=names), X)


def test_add_class_to_an_empty_classifier_builds_the_model():
    X, y = _data(k=3)
    clf = GaussianClassifier()
    for k in range(3):
        assert clf.add_class(X[y == k]) == k
    _same_model(clf, GaussianClassifier().fit(X, y), X)


@pytest.mark.parametrize("store_class_scatter", [True, False])
def test_update_class_equals_refit(store_class_scatter):
    X, y = _data()
    first = np.arange(len(X)) < 200
    clf = GaussianClassifier(store_class_scatter=store_class_scatter).fit(X[first], y[first])
    for k in range(4):
        clf.update_class(k, X[~first & (y == k)])
    _same_model(clf, GaussianClassifier().fit(X, y), X)


def test_remove_class_equals_refit_without_it():
    X, y = _data(k=4)
    names = ["a", "b", "c", "d"]
    clf = GaussianClassifier().fit(X, y, class_names=names)
    clf.remove_class("b").remove_class(3)
    keep = (y != 1) & (y != 3)
    _same_model(clf, GaussianClassifier().fit(X[keep], y[keep], class_names=names), X)
    assert clf.classes_.tolist() == [0, 2] and clf.class_names_ == ["a", "c"]
    assert clf.add_class(X[y == 1], name="b2") == 3  # new labels never collide with kept ones


def test_round_trip_through_a_model_file_gives_identical_outputs(roundtrip):
    X, y = _data()
    for clf in (GaussianClassifier().fit(X, y, class_names=list("wxyz")),
                GaussianClassifier(shrinkage=0.1, store_class_scatter=False).fit(X, y)):
        loaded = roundtrip(clf)
        assert loaded.get_params() == clf.get_params()
        np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
        np.testing.assert_array_equal(loaded.mahalanobis(X), clf.mahalanobis(X))
        assert loaded.class_names_ == clf.class_names_
        # and it keeps growing exactly like the original
        assert loaded.add_class(X[:10] + 5.0) == clf.add_class(X[:10] + 5.0)
        np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("syrk_from", [384, 2])  # small scatters by a general product, or symmetric by syrk
def test_the_file_holds_the_statistics_alone_and_what_follows_from_them_is_rebuilt(roundtrip, monkeypatch,
                                                                                    syrk_from):
    import owlearn.space.gaussian as gaussian

    monkeypatch.setattr(gaussian, "_SYRK_MIN_FEATURES", syrk_from)
    X, y = _data(dim=12)
    clf = GaussianClassifier().fit(X, y, class_names=list("wxyz"))
    state = clf.state_dict()
    assert not {"means_", "priors_", "covariance_", "cholesky_"} & set(state)
    # both paths give exactly symmetric scatters, stored as their upper triangles (K, D(D+1)/2)
    assert all(np.array_equal(w, w.T) for w in clf._class_scatter_list())
    assert tuple(state["class_scatters_"].shape) == (4, 12 * 13 // 2)
    loaded = roundtrip(clf)
    for attr in ("means_", "priors_", "covariance_", "cholesky_", "scatter_", "class_scatters_"):
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(clf, attr), err_msg=attr)
    np.testing.assert_array_equal(loaded.mahalanobis(X), clf.mahalanobis(X))
    # removing a class after loading is the same exact operation as before saving
    np.testing.assert_array_equal(loaded.remove_class("x").mahalanobis(X), clf.remove_class("x").mahalanobis(X))


def test_a_file_written_with_the_derived_arrays_loads_as_it_is(roundtrip):
    X, y = _data()
    clf = GaussianClassifier().fit(X, y)
    # every array whole, as files were written before
    old_layout = {k: torch.from_numpy(np.ascontiguousarray(getattr(clf, k))) for k in clf._array_attrs}
    assert {"cholesky_", "covariance_"} <= set(old_layout) and old_layout["class_scatters_"].dim() == 3
    config = dict(clf.config(), tensors=list(old_layout))
    loaded = GaussianClassifier.from_state(old_layout, config)
    np.testing.assert_array_equal(loaded.mahalanobis(X), clf.mahalanobis(X))
    np.testing.assert_array_equal(loaded.class_scatters_, clf.class_scatters_)


def test_torch_float32_input_gives_the_same_model_as_numpy():
    X, y = _data()
    X32 = X.astype(np.float32)
    a = GaussianClassifier().fit(torch.from_numpy(X32), torch.from_numpy(y))
    b = GaussianClassifier().fit(X32, y)
    np.testing.assert_array_equal(a.predict_proba(X32), b.predict_proba(torch.from_numpy(X32)))


def test_fewer_samples_than_features_still_fits_without_shrinkage():
    X, y = _data(n=12, dim=30, k=3)
    clf = GaussianClassifier(shrinkage=0.0).fit(X, y)  # singular scatter: the 1e-9 floor keeps it solvable
    assert np.isfinite(clf.predict_proba(X)).all()
    assert (clf.predict(X) == y).mean() == 1.0


def test_errors_name_the_problem():
    X, y = _data()
    with pytest.raises(NotFittedError):
        GaussianClassifier().predict(X)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    with pytest.raises(ValueError, match="shrinkage"):
        GaussianClassifier(shrinkage=1.5).fit(X, y)
    with pytest.raises(ValueError, match="unlabeled"):
        GaussianClassifier().fit(X, np.where(y == 0, -1, y))
    with pytest.raises(ValueError, match="class_names"):
        GaussianClassifier().fit(X, y, class_names=["a"])
    clf = GaussianClassifier().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="already exists"):
        clf.add_class(X[:5], name="0")
    with pytest.raises(ValueError, match="no class"):
        clf.remove_class(9)
    with pytest.raises(ValueError, match="store_class_scatter"):
        GaussianClassifier(store_class_scatter=False).fit(X, y).remove_class(0)
    with pytest.raises(ValueError, match="only class"):
        GaussianClassifier().fit(X, np.zeros(len(X), dtype=int)).remove_class(0)
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full((1, X.shape[1]), np.nan))


def test_mahalanobis_in_row_blocks_equals_one_pass(monkeypatch):
    import owlearn.space.gaussian as gaussian

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 1000)
    X = (rng.normal(size=(1000, 12)) + y[:, None]).astype(np.float32)
    clf = GaussianClassifier().fit(X, y)
    one_pass = clf.mahalanobis(X)
    monkeypatch.setattr(gaussian, "_ROWS_PER_BLOCK", 64)  # 16 blocks, the last one short
    blocked = clf.mahalanobis(X)
    np.testing.assert_allclose(blocked, one_pass, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(clf.mahalanobis(X.astype(np.float64)), one_pass, rtol=1e-12, atol=1e-12)


def test_scatter_paths_agree_and_add_class_equals_refit_on_the_syrk_path(monkeypatch):
    # few features: a torch product; many (here forced from 1 on): SciPy's syrk, which computes one triangle
    from owlearn.space import gaussian

    X, y = _data(k=5, dim=9)
    torch_path = GaussianClassifier().fit(X, y)
    monkeypatch.setattr(gaussian, "_SYRK_MIN_FEATURES", 1)
    syrk_path = GaussianClassifier().fit(X, y)
    np.testing.assert_allclose(syrk_path.scatter_, torch_path.scatter_, rtol=1e-12, atol=1e-12)
    old = y < 4
    grown = GaussianClassifier().fit(X[old], y[old])
    grown.add_class(X[~old])
    _same_model(grown, syrk_path, X)


@pytest.mark.parametrize("syrk_from", [1, 10**6])
def test_class_statistics_in_row_blocks_equal_one_pass(monkeypatch, syrk_from):
    # the rows pass through one reused float64 buffer: a short last block must not see stale rows
    from owlearn.space import gaussian

    monkeypatch.setattr(gaussian, "_SYRK_MIN_FEATURES", syrk_from)
    rng = np.random.default_rng(1)
    X = torch.from_numpy((rng.normal(size=(1000, 12)) * 3 + 100).astype(np.float32))
    n, total, scatter = gaussian._class_stats(X)
    monkeypatch.setattr(gaussian, "_ROWS_PER_BLOCK", 96)  # 11 blocks, the last one of 40 rows
    n_b, total_b, scatter_b = gaussian._class_stats(X)
    X64 = X.double()
    centred = X64 - X64.mean(0)
    assert n == n_b == 1000
    torch.testing.assert_close(total_b, X64.sum(0), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(scatter_b, centred.T @ centred, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(scatter_b, scatter, rtol=1e-10, atol=1e-8)
