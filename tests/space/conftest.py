"""Synthetic feature sets with known answers, and a model-file round trip for any estimator."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors


def _roundtrip(estimator):
    """Write an estimator as safetensors bytes + JSON text and read it back, as a model file does."""
    state = load_tensors(save_tensors(estimator.state_dict()))
    config = json.loads(json.dumps(estimator.config()))
    return type(estimator).from_state(state, config)


def make_features(n_per_class=200, n_outliers=200, seed=0):
    """Three classes in 16-d: centres 6 e_k, noise std 1 in dims 0-7 and 0.3 in dims 8-15.

    Outliers sit 10 units away along dims 12-13, where no class varies much; the nearest-mean linear
    layer ``W = centres``, ``b = -|centre|^2 / 2`` gives logits for the logit-based detectors.
    """
    rng = np.random.default_rng(seed)
    dim, k = 16, 3
    centres = np.zeros((k, dim))
    centres[np.arange(k), np.arange(k)] = 6.0
    scale = np.r_[np.ones(8), np.full(8, 0.3)]

    def inliers(n):
        y = np.repeat(np.arange(k), n)
        return centres[y] + rng.normal(size=(len(y), dim)) * scale, y

    X, y = inliers(n_per_class)
    X_test, y_test = inliers(n_per_class // 2)
    outliers = rng.normal(size=(n_outliers, dim)) * scale
    outliers[:, 12:14] += 10.0 / np.sqrt(2)
    W, b = centres, -0.5 * (centres**2).sum(1)
    return SimpleNamespace(X=X, y=y, X_test=X_test, y_test=y_test, outliers=outliers, W=W, b=b,
                           logits=lambda F: F @ W.T + b, centres=centres)


@pytest.fixture(scope="session")
def features():
    return make_features()


@pytest.fixture
def roundtrip():
    return _roundtrip
