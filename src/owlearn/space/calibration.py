"""Thresholds for outlier detectors from held-out inliers only (no outlier examples needed).

A detector's ``offset_`` decides what it rejects. Without examples of outliers the honest choice is
the rate of normal inputs to accept: :func:`calibrate` places the threshold so that a chosen fraction
of held-out inliers (features the detector was not fitted on) passes.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, TypeVar

import numpy as np

__all__ = ["acceptance_threshold", "calibrate"]


class _Scorer(Protocol):
    offset_: float

    def score_samples(self, features: Any = None, logits: Any = None) -> np.ndarray: ...


D = TypeVar("D", bound=_Scorer)


def acceptance_threshold(scores: Any, accept_rate: float) -> float:
    """The largest threshold ``t`` with ``mean(scores >= t) >= accept_rate``.

    No interpolation: ``t`` is the ``m``-th largest score with ``m = ceil(accept_rate * n)``, so at
    least ``m`` of the ``n`` scores (more with ties) are accepted by ``score >= t``. On new samples
    from the same distribution the expected acceptance is ``m / (n + 1)``, within ``1 / n`` of the
    target.

    Examples
    --------
    >>> acceptance_threshold([1.0, 2.0, 3.0, 4.0], accept_rate=0.75)
    2.0
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError("acceptance_threshold needs a non-empty array of finite scores")
    if not 0.0 < accept_rate <= 1.0:
        raise ValueError(f"accept_rate must be in (0, 1], got {accept_rate!r}")
    # the tiny slack keeps 0.99 * 10000 = 9900.000000000002 from asking for 9901 samples
    m = min(s.size, max(1, math.ceil(accept_rate * s.size - 1e-9)))
    return float(s[s.size - m])


def calibrate(detector: D, held_out_features: Any = None, held_out_logits: Any = None,
              accept_rate: float = 0.99) -> D:
    """Set ``detector.offset_`` so that ``accept_rate`` of held-out inliers are predicted inliers.

    Parameters
    ----------
    detector
        A fitted detector from :mod:`owlearn.space.outliers`.
    held_out_features, held_out_logits
        Features and/or logits (whichever the detector reads) of inliers it was *not* fitted on:
        in-sample scores are optimistic for neighbour-based detectors.
    accept_rate
        Fraction of held-out inliers to accept; see :func:`acceptance_threshold` for the exact rule.

    Returns
    -------
    detector
        The same object, with ``offset_`` set.

    Examples
    --------
    >>> import numpy as np
    >>> from owlearn.space import KNNDetector
    >>> rng = np.random.default_rng(0)
    >>> det = KNNDetector(n_neighbors=5).fit(rng.normal(size=(300, 4)))
    >>> held_out = rng.normal(size=(1000, 4))
    >>> float((calibrate(det, held_out, accept_rate=0.9).predict(held_out) == 1).mean())
    0.9
    """
    scores = detector.score_samples(held_out_features, held_out_logits)
    detector.offset_ = acceptance_threshold(scores, accept_rate)
    return detector
