"""Feature-space estimators: classify, reject and grow in a trained network's feature space.

Everything here works on feature arrays ``(N, D)`` (numpy or torch; computed in float64, returned as
numpy) and knows nothing about networks:

- :class:`GaussianClassifier`: one Gaussian per class with a shared covariance; classes can be added,
  extended and removed exactly from their features alone.
- Outlier detectors with scikit-learn's novelty interface (higher score = more normal, ``predict``
  gives +1/-1): :class:`LOFDetector`, :class:`KNNDetector`, :class:`MahalanobisDetector`,
  :class:`ViMDetector`, :class:`MSPDetector`, :class:`EnergyDetector`, and
  :class:`LayerEnsembleDetector` (Mahalanobis on several layers plus ViM and kNN), made by name with
  :func:`make_detector`.
- :func:`calibrate`: a detector's threshold from held-out inliers and a target acceptance rate.

Each estimator has ``state_dict()``, ``config()`` and ``from_state(state, config)`` for model files.
"""

from owlearn.space._state import NotFittedError
from owlearn.space.calibration import acceptance_threshold, calibrate
from owlearn.space.gaussian import GaussianClassifier, oas_shrinkage
from owlearn.space.layers import LayerEnsembleDetector
from owlearn.space.outliers import (
    DETECTORS,
    EnergyDetector,
    KNNDetector,
    LOFDetector,
    MahalanobisDetector,
    MSPDetector,
    OutlierDetector,
    ViMDetector,
    make_detector,
)

__all__ = [
    "DETECTORS",
    "EnergyDetector",
    "GaussianClassifier",
    "KNNDetector",
    "LOFDetector",
    "LayerEnsembleDetector",
    "MSPDetector",
    "MahalanobisDetector",
    "NotFittedError",
    "OutlierDetector",
    "ViMDetector",
    "acceptance_threshold",
    "calibrate",
    "make_detector",
    "oas_shrinkage",
]
