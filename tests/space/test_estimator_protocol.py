"""Shared plumbing of the feature-space estimators: scikit-learn's protocol without inheriting it, input checks."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from owlearn.space import GaussianClassifier, KNNDetector, LayerEnsembleDetector, NotFittedError
from owlearn.space._estimator import Estimator


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(3, 1, (40, 3)), rng.normal(-3, 1, (40, 3))])
    return X, np.repeat([0, 1, 2], 40)


def test_importing_owlearn_space_does_not_import_sklearn():
    code = "import sys, owlearn.space; print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sklearn_tools_accept_the_classifier():
    X, y = _blobs()
    clf = GaussianClassifier(shrinkage=0.2)
    assert is_classifier(clf)
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == {"shrinkage": 0.2, "store_class_scatter": True}
    scores = cross_val_score(make_pipeline(StandardScaler(), GaussianClassifier()), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9
    search = GridSearchCV(GaussianClassifier(), {"shrinkage": [0.0, 0.5, "auto"]}, cv=3).fit(X, y)
    assert search.best_params_["shrinkage"] in (0.0, 0.5, "auto")
    fitted = GaussianClassifier().fit(X, y)
    assert fitted.score(X, y) == pytest.approx(np.mean(fitted.predict(X) == y))
    weights = (y == 0).astype(float)
    assert fitted.score(X, y, sample_weight=weights) == pytest.approx(np.mean(fitted.predict(X[:40]) == 0))


def test_params_repr_and_errors():
    clf = GaussianClassifier()
    assert repr(clf) == "GaussianClassifier()"
    assert clf.set_params(shrinkage=0.3) is clf and repr(clf) == "GaussianClassifier(shrinkage=0.3)"
    with pytest.raises(ValueError, match="invalid parameter 'shrink'"):
        clf.set_params(shrink=0.1)
    assert clone(KNNDetector(n_neighbors=3)).n_neighbors == 3
    assert repr(LayerEnsembleDetector(W=np.zeros((2, 3)))).startswith("LayerEnsembleDetector(W=array(")

    class Wrapper(Estimator):
        def __init__(self, inner=None):
            self.inner = inner

    # a nested estimator's parameters are reachable as name__param, as in scikit-learn
    wrapper = Wrapper(GaussianClassifier()).set_params(inner__shrinkage=0.1)
    assert wrapper.inner.shrinkage == 0.1 and wrapper.get_params()["inner__shrinkage"] == 0.1
    assert clone(wrapper).inner is not wrapper.inner


def test_not_fitted_error_is_caught_as_value_and_attribute_error():
    X, _ = _blobs()
    for error in (NotFittedError, ValueError, AttributeError):
        with pytest.raises(error, match="not fitted yet"):
            GaussianClassifier().predict(X)
    assert not issubclass(NotFittedError, SklearnNotFittedError)  # owlearn's own: no scikit-learn import


def test_feature_check_accepts_huge_finite_values_and_rejects_nan():
    import torch

    from owlearn.space._state import as_features

    huge = torch.full((4, 3), 3e38, dtype=torch.float32)  # finite, but their float32 sum overflows
    assert torch.equal(as_features(huge, keep_float32=True), huge)
    for bad in (float("nan"), float("inf")):
        x = torch.zeros(4, 3)
        x[2, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            as_features(x, name="X")
