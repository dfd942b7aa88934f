"""Shared plumbing of the feature-space estimators: input checks and the model-file protocol.

Every estimator in :mod:`owlearn.space` can be written to a model file as tensors (safetensors) plus a
JSON document, and read back without pickle. :class:`StateMixin` implements that protocol from three
class-level lists, so an estimator only declares which of its attributes are arrays and which are
plain JSON values.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

import numpy as np
import torch

from owlearn.space._estimator import NotFittedError

__all__ = ["NotFittedError", "StateMixin", "as_features", "as_labels", "check_fitted"]

ArrayLike = np.ndarray | torch.Tensor


def as_features(
    X: Any,
    *,
    name: str = "features",
    n_features: int | None = None,
    keep_float32: bool = False,
) -> torch.Tensor:
    """Check a feature matrix and return it as a CPU torch tensor.

    Parameters
    ----------
    X
        Array-like or tensor of shape ``(N, D)``.
    name
        What to call ``X`` in error messages.
    n_features
        Expected ``D``; ``None`` accepts any.
    keep_float32
        Return ``float32`` input as ``float32`` (memory-heavy reference sets); otherwise always
        ``float64``, the precision every estimator computes in.
    """
    if isinstance(X, torch.Tensor):
        t = X.detach().cpu()
    else:
        arr = np.asarray(X)
        if arr.dtype == object or arr.dtype.kind in "SUV":
            raise ValueError(f"{name}: expected a numeric array (N, D), got {type(X).__name__} of {arr.dtype}")
        t = torch.as_tensor(arr)
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-d array (N, D), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name}: empty array of shape {tuple(t.shape)}")
    if n_features is not None and t.shape[1] != n_features:
        raise ValueError(f"{name}: has {t.shape[1]} features, but the estimator was fitted with {n_features}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected real numbers, got {t.dtype}")
    low = t.dtype in (torch.float32, torch.float16, torch.bfloat16)
    t = t.to(torch.float32 if keep_float32 and low else torch.float64)
    # a NaN or infinity makes the sum non-finite, so a finite sum proves every entry finite; the sum reads
    # the matrix once without the boolean copy isfinite() makes (a second of a detector's fit on 60k rows).
    # It runs in the matrix's own dtype: sum(dtype=float64) would first copy a float32 matrix whole in float64.
    # Only a non-finite sum (a NaN, an infinity, or an overflow of huge finite values) needs the exact check
    if not math.isfinite(float(t.sum())) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or infinity")
    return t


def as_labels(y: Any, n: int, *, name: str = "labels") -> np.ndarray:
    """Check class labels: ``n`` non-negative integers, returned as an ``int64`` array."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},) to match the features, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.size and np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer class labels, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: labels must be >= 0 (-1 marks an unlabeled sample: drop those first)")
    return arr.astype(np.int64, copy=False)


def check_fitted(estimator: Any, attribute: str) -> None:
    """Raise :class:`NotFittedError` (a ``ValueError`` and ``AttributeError``) unless fitted."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet; call 'fit' with appropriate "
            "arguments before using this estimator."
        )


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


class StateMixin:
    """``state_dict`` / ``config`` / ``from_state`` for an estimator with scikit-learn style attributes.

    Subclasses list their learned attributes in ``_array_attrs`` (numpy arrays, stored as tensors)
    and ``_json_attrs`` (ints, floats, strings and lists of them, stored in the config); constructor
    parameters that are arrays go in ``_array_params``, and fitted sub-estimators in ``_nested``.
    Attributes that are absent (an uncalibrated ``offset_``) are simply not written.
    """

    _array_attrs: ClassVar[tuple[str, ...]] = ()
    _json_attrs: ClassVar[tuple[str, ...]] = ()
    _array_params: ClassVar[tuple[str, ...]] = ()
    _nested: ClassVar[tuple[str, ...]] = ()

    def _own_tensors(self) -> dict[str, str]:
        """State-dict key → attribute of the tensors this estimator writes itself (nested ones write their own);
        which exist depends on what was fitted."""
        names = {f"param.{k}": k for k in self._array_params if getattr(self, k) is not None}
        names.update({k: k for k in self._array_attrs if hasattr(self, k)})
        return names

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors of the fitted estimator, for a safetensors file (CPU, contiguous)."""
        state = {key: _tensor(getattr(self, attr)) for key, attr in self._own_tensors().items()}
        for key in self._nested:
            if hasattr(self, key):
                state.update({f"{key}.{k}": v for k, v in getattr(self, key).state_dict().items()})
        return state

    def config(self) -> dict[str, Any]:
        """JSON-able description: the class, its parameters and its non-array learned values."""
        params = {k: _to_json(v) for k, v in self.get_params(deep=False).items()  # type: ignore[attr-defined]
                  if k not in self._array_params}
        fitted = {k: _to_json(getattr(self, k)) for k in self._json_attrs if hasattr(self, k)}
        for key in self._nested:
            if hasattr(self, key):
                fitted[key] = getattr(self, key).config()
        # the tensors state_dict() writes: a file that lost some of them is refused on loading, not at first use
        return {"class": type(self).__name__, "params": params, "fitted": fitted, "tensors": list(self._own_tensors())}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], config: dict[str, Any]) -> Self:
        """Rebuild an estimator from :meth:`state_dict` and :meth:`config`; outputs are identical."""
        if config.get("class") != cls.__name__:
            raise ValueError(f"config describes a {config.get('class')!r}, not a {cls.__name__}")
        missing = [k for k in config.get("tensors", ()) if k not in state]  # files from before the list: no check
        if missing:
            raise ValueError(f"{cls.__name__} lacks the tensor(s) {', '.join(missing)} its config lists")
        params = dict(config["params"])
        for key in cls._array_params:
            tensor = state.get(f"param.{key}")
            params[key] = None if tensor is None else _fresh(tensor)
        obj = cls(**params)
        fitted = config.get("fitted", {})
        for key in cls._json_attrs:
            if key in fitted:
                setattr(obj, key, fitted[key])
        for key in cls._array_attrs:
            if key in state:
                setattr(obj, key, _fresh(state[key]))
        for key in cls._nested:
            if key in fitted:
                sub_config = fitted[key]
                sub_cls = _nested_class(cls, key, sub_config)
                prefix = key + "."
                sub_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                setattr(obj, key, sub_cls.from_state(sub_state, sub_config))
        obj._after_load()
        return obj

    def _after_load(self) -> None:
        """Hook: rebuild caches after :meth:`from_state` (default: nothing)."""

    @classmethod
    def _nested_types(cls) -> dict[str, type]:
        return {}


def _fresh(tensor: torch.Tensor) -> np.ndarray:
    """A freshly allocated copy: tensors read from a file may sit at other memory alignments, which
    changes the rounding of vectorised kernels; a copy makes a loaded estimator compute bitwise like
    the one that was fitted."""
    return tensor.detach().cpu().clone().numpy()


def _nested_class(cls: type[StateMixin], key: str, sub_config: dict[str, Any]) -> type[StateMixin]:
    sub_cls = cls._nested_types().get(key)
    if sub_cls is None or sub_config.get("class") != sub_cls.__name__:
        raise ValueError(f"{cls.__name__}.{key}: unexpected component {sub_config.get('class')!r}")
    return sub_cls


def _tensor(value: ArrayLike) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous()
    return torch.from_numpy(np.ascontiguousarray(value))
