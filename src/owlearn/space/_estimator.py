"""scikit-learn's estimator protocol, without importing scikit-learn.

The feature-space estimators are scikit-learn estimators by protocol: ``get_params`` / ``set_params``
(so :func:`sklearn.base.clone`, pipelines and grid searches work), ``__sklearn_tags__``, and ``score`` for
classifiers. They do not inherit from ``sklearn.base.BaseEstimator``: importing any part of scikit-learn
loads all of ``sklearn.base`` and, through it, much of SciPy, which costs 68 MB of resident memory and
1.6 s of start-up on a 2-core machine (docs/performance.md, "Where the memory goes"). Every process that
adds a class or rejects an input would pay that, the web service and each continual-learning run
included, although none of them uses it. scikit-learn is imported only when it asks for the tags itself.
"""

from __future__ import annotations

import inspect
from typing import Any, Self

import numpy as np

__all__ = ["ClassifierEstimator", "Estimator", "NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """Raised when an estimator is used before ``fit``: a ``ValueError`` and an ``AttributeError``, like
    :class:`sklearn.exceptions.NotFittedError`, so code that catches either of those catches it."""


class Estimator:
    """``get_params``, ``set_params``, ``repr`` and tags as in ``sklearn.base.BaseEstimator``.

    As there, the constructor's parameters are the estimator's parameters and are stored unchanged in
    attributes of the same name.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        names = [p.name for p in signature.parameters.values() if p.name != "self"]
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()):
            raise TypeError(f"{cls.__name__}.__init__ must name its parameters (no *args or **kwargs)")
        return sorted(names)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters; with ``deep``, also those of nested estimators as ``name__param``."""
        params: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update({f"{name}__{k}": v for k, v in value.get_params().items()})
            params[name] = value
        return params

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (``name__param`` reaches into a nested estimator); returns self."""
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid parameters: {sorted(self._param_names())}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        # like scikit-learn: only the parameters that differ from their defaults
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            if not _same(value, default):
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False))


class ClassifierEstimator(Estimator):
    """An :class:`Estimator` that scikit-learn treats as a classifier, with accuracy as its ``score``."""

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags

        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy of :meth:`predict` on ``X`` against the labels ``y`` (weighted by ``sample_weight``)."""
        correct = self.predict(X) == _as_numpy(y)  # type: ignore[attr-defined]
        weights = None if sample_weight is None else _as_numpy(sample_weight)
        return float(np.average(correct, weights=weights))


def _as_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _same(value: Any, default: Any) -> bool:
    if value is default:
        return True
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray) or hasattr(value, "detach"):
        return False  # arrays are shown whenever given
    try:
        return bool(value == default) and type(value) is type(default)
    except (TypeError, ValueError):
        return False
