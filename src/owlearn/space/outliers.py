"""Outlier detectors: reject inputs unlike anything the classifier was trained on.

All detectors share scikit-learn's novelty-detection interface (as in ``LocalOutlierFactor``):
:meth:`~OutlierDetector.score_samples` is higher for more normal inputs,
``decision_function = score_samples - offset_`` is negative for outliers, and ``predict`` returns
``+1`` (inlier) or ``-1`` (outlier). The threshold ``offset_`` comes from ``contamination`` at fit
time, or from held-out inliers with :func:`owlearn.space.calibrate`.

Feature-based detectors (:class:`LOFDetector`, :class:`KNNDetector`, :class:`MahalanobisDetector`,
:class:`ViMDetector`) read a network's penultimate features; logit-based ones (:class:`MSPDetector`,
:class:`EnergyDetector`) read its logits. Every detector takes both and ignores what it does not use.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F

from owlearn.space._estimator import Estimator
from owlearn.space._state import NotFittedError, StateMixin, as_features, as_labels, check_fitted
from owlearn.space.gaussian import GaussianClassifier

__all__ = [
    "DETECTORS",
    "EnergyDetector",
    "KNNDetector",
    "LOFDetector",
    "MSPDetector",
    "MahalanobisDetector",
    "OutlierDetector",
    "ViMDetector",
    "make_detector",
]


# =====================================================================================================
# Exact k-nearest neighbours, fast on a CPU
# =====================================================================================================
# Distances come from one float32 matrix product per block (|q|^2 + |r|^2 - 2 q.r, the only way to
# reach BLAS speed), which selects a few more candidates than needed; their distances are then
# recomputed exactly in float64 from the differences. A per-query bound on the float32 error proves
# that no other point can be closer; queries where it cannot (near-ties, duplicates) are redone in
# float64 over all references. The result is the exact neighbour set, as scikit-learn's brute force.

_U32 = 2.0**-24  # unit roundoff of float32
_EXTRA = 8  # candidates beyond k, so that the error bound rarely fails
_ALIGN = 64  # references are padded to a multiple of this, so every block splits into groups evenly
_SELF_BLOCK = 8192  # side of the square blocks of the self search (256 MB of float32 at most)
_CROSS_WIDTH = 32768  # references per block of a query search: long rows amortise the selection
_CROSS_ELEMS = 2**23  # distances per block of a query search (32 MB)


def _even_blocks(n: int, most: int) -> int:
    """A block size <= ``most`` (a multiple of ``_ALIGN``) that cuts ``n`` into near-equal blocks."""
    n_blocks = -(-n // most)
    return -(-n // (n_blocks * _ALIGN)) * _ALIGN


def _group_size(m: int, kk: int) -> int:
    # about sqrt(m / kk) minimises the values sorted per row, width + kk * group (see _fold)
    for group in (32, 16, 8, 4):
        if group * group * kk <= m and m % group == 0:
            return group
    return 1


def _fold(S: torch.Tensor, dim: int, best_v: torch.Tensor, best_i: torch.Tensor, r0: int, offset: int) -> None:
    """Merge the distances of a block into the running ``kk`` smallest of the rows they belong to.

    ``S`` is a contiguous distance block whose rows (``dim=1``) or columns (``dim=0``) belong to rows
    ``r0, r0 + 1, ...`` of ``best_v``/``best_i`` and whose other axis holds references ``offset, ...``.
    """
    kk = best_v.shape[1]
    rows = S if dim == 1 else S.T
    n, m = rows.shape
    group = _group_size(m, kk)
    if group == 1:
        cand_v, cand_i = rows, torch.arange(m).expand(n, m)
    else:
        width = m // group
        # Split each row into `width` groups (columns c, c + width, c + 2 width, ...). An element among
        # the kk smallest lies in one of the kk groups with the smallest minima: a group ranked below
        # them has kk groups whose minima, and so kk elements, are no larger. Selecting groups first
        # is therefore exact, and sorts width + kk * group values per row instead of m (torch.topk is
        # the slow part). The minima are reduced over whole contiguous slices whichever way S is read.
        # (Skipping groups above the running kk-th best was tried: at <= 10 blocks per row it is slower.)
        if dim == 1:
            group_min = S.unflatten(1, (group, width)).amin(1)  # (n, width)
        else:
            group_min = S.unflatten(0, (group, width)).amin(0).T.contiguous()  # (n, width)
        _, groups = torch.topk(group_min, kk, dim=1, largest=False, sorted=False)
        cand_i = (groups.unsqueeze(2) + width * torch.arange(group)).flatten(1)  # (n, kk * group)
        cand_v = rows.gather(1, cand_i)
    r1 = r0 + n
    cat_v = torch.cat([best_v[r0:r1], cand_v], 1)
    cat_i = torch.cat([best_i[r0:r1], cand_i + offset], 1)
    new_v, pos = torch.topk(cat_v, kk, dim=1, largest=False, sorted=False)
    best_v[r0:r1] = new_v
    best_i[r0:r1] = cat_i.gather(1, pos)


class _NeighborIndex:
    """Reference points prepared for exact k-nearest-neighbour queries (Euclidean).

    ``ref`` is kept in its own precision (float32 or float64); exact distances are computed in float64.
    """

    def __init__(self, ref: torch.Tensor) -> None:
        self.ref = ref
        n, dim = ref.shape
        # centring changes no distance but shrinks |x|^2, and with it the float32 cancellation error
        self.center = ref.mean(0, dtype=torch.float64)
        # Augmented rows make one matrix product give squared distances, with no extra pass for norms:
        # [x_i, |x_i|^2, 1] . [-2 x_j, 1, |x_j|^2] = |x_i|^2 + |x_j|^2 - 2 x_i.x_j. Padding rows (to a
        # multiple of _ALIGN) have infinite norm, hence are infinitely far from everything.
        n_pad = -(-n // _ALIGN) * _ALIGN
        centred = (ref.double() - self.center).float()
        norm = torch.full((n_pad,), math.inf, dtype=torch.float32)
        norm[:n] = centred.double().square().sum(1)
        self.max_norm = float(norm[:n].max())
        self.left = torch.zeros((n_pad, dim + 2), dtype=torch.float32)  # [x, |x|^2, 1]
        self.left[:n, :dim] = centred
        self.left[:, dim] = norm
        self.left[:, dim + 1] = 1.0
        self.right = torch.empty_like(self.left)  # [-2 x, 1, |x|^2]
        self.right[:, :dim] = -2.0 * self.left[:, :dim]
        self.right[:, dim] = 1.0
        self.right[:, dim + 1] = norm

    def query(self, Q: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances (float64, ascending) and indices of the ``k`` nearest references, ``(n, k)`` each.

        ``Q=None`` queries the references themselves, each excluding itself (not its duplicates), as
        scikit-learn's ``kneighbors()`` does.
        """
        n_ref, dim = self.ref.shape
        available = n_ref - 1 if Q is None else n_ref
        if not 1 <= k <= available:
            raise ValueError(f"need 1 <= k <= {available} neighbours, got k={k}")
        kk = min(k + _EXTRA, available)
        if Q is None:
            q_norm = self.left[:n_ref, dim]
            approx, cand = self._self_candidates(kk)
        else:
            q_left = torch.empty((Q.shape[0], dim + 2), dtype=torch.float32)
            q_left[:, :dim] = Q - self.center
            q_norm = q_left[:, :dim].double().square().sum(1).float()
            q_left[:, dim] = q_norm
            q_left[:, dim + 1] = 1.0
            approx, cand = self._candidates(q_left, kk)
        Q64 = self.ref if Q is None else Q
        d2, cand = self._exact(Q64, cand)
        if kk < available:
            # Every non-candidate has float32 distance >= the largest candidate's, and a float32 distance
            # is within eps of the true one: rounding the inputs and norms costs ~6u(|q|^2 + |r|^2), the
            # (D + 2)-term product at most 2(D + 2)u(|q|^2 + |r|^2); eps doubles that for safety.
            eps = 4.0 * (dim + 16) * _U32 * (q_norm.double() + self.max_norm)
            proven = d2[:, k - 1] < approx.double().amax(1) - eps
            redo = torch.nonzero(~proven).flatten()
            if redo.numel():
                d2[redo], cand[redo] = self._float64_rows(Q64, redo, kk, exclude_self=Q is None)
        return d2[:, :k].sqrt(), cand[:, :k]

    def _self_candidates(self, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_pad = self.left.shape[0]
        block = _even_blocks(n_pad, _SELF_BLOCK)
        best_v = torch.full((n_pad, kk), math.inf)
        best_i = torch.zeros((n_pad, kk), dtype=torch.int64)
        for i0 in range(0, n_pad, block):
            for j0 in range(i0, n_pad, block):  # distances are symmetric: each block serves rows and columns
                S = self.left[i0:i0 + block] @ self.right[j0:j0 + block].T  # (bi, bj) squared distances
                if j0 == i0:
                    S.diagonal().fill_(math.inf)
                _fold(S, 1, best_v, best_i, i0, j0)
                if j0 != i0:
                    _fold(S, 0, best_v, best_i, j0, i0)
        n = self.ref.shape[0]
        return best_v[:n], best_i[:n]

    def _candidates(self, q_left: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, n_pad = q_left.shape[0], self.left.shape[0]
        width = _even_blocks(n_pad, _CROSS_WIDTH)
        rows = max(1, _CROSS_ELEMS // width)
        best_v = torch.full((n, kk), math.inf)
        best_i = torch.zeros((n, kk), dtype=torch.int64)
        for j0 in range(0, n_pad, width):
            Rj = self.right[j0:j0 + width]
            for q0 in range(0, n, rows):
                S = q_left[q0:q0 + rows] @ Rj.T  # (rows, width) squared distances
                _fold(S, 1, best_v, best_i, q0, j0)
        return best_v, best_i

    def _exact(self, Q64: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact squared distances to candidate references, sorted (ties by index); reorders ``cand``."""
        n, kk = cand.shape
        d2 = torch.empty((n, kk), dtype=torch.float64)
        step = max(1, 2**22 // (kk * Q64.shape[1]))  # ~32 MB of float64 differences at a time
        for r0 in range(0, n, step):
            diff = self.ref[cand[r0:r0 + step]].double() - Q64[r0:r0 + step].double().unsqueeze(1)
            d2[r0:r0 + step] = diff.square().sum(2)
        cand, order = cand.sort(1)  # stable sort on distance after sorting on index: ties by index
        d2 = d2.gather(1, order)
        d2, order = d2.sort(dim=1, stable=True)
        return d2, cand.gather(1, order)

    def _float64_rows(self, Q64: torch.Tensor, rows: torch.Tensor, kk: int, *, exclude_self: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The float64 brute force, for the few rows whose float32 candidates are not proven exact."""
        ref = self.ref.double() - self.center
        ref_norm = ref.square().sum(1)
        cand = torch.empty((rows.numel(), kk), dtype=torch.int64)
        step = max(1, _CROSS_ELEMS // ref.shape[0])
        for r0 in range(0, rows.numel(), step):
            ids = rows[r0:r0 + step]
            q = Q64[ids].double() - self.center
            d2 = torch.addmm(ref_norm.unsqueeze(0), q, ref.T, alpha=-2.0)  # |q|^2 is the same along a row
            if exclude_self:
                d2[torch.arange(ids.numel()), ids] = math.inf
            cand[r0:r0 + step] = torch.topk(d2, kk, dim=1, largest=False).indices
        return self._exact(Q64[rows], cand)


def _normalize(X: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (in float64, returned in the input's precision)."""
    return F.normalize(X.double(), dim=1).to(X.dtype)


def seeded_subset(n: int, most: int | None, random_state: int | None = 0) -> torch.Tensor:
    """Indices of at most ``most`` of ``n`` samples: all of them, or a seeded random subset in order."""
    if most is None or n <= most:
        return torch.arange(n)
    rng = np.random.default_rng(random_state)
    return torch.from_numpy(np.sort(rng.choice(n, size=most, replace=False)))


def _subsample(X: torch.Tensor, max_reference: int | None, random_state: int | None) -> torch.Tensor:
    if max_reference is None or X.shape[0] <= max_reference:
        return X
    return X[seeded_subset(X.shape[0], max_reference, random_state)]


# =====================================================================================================
# The common interface
# =====================================================================================================
class OutlierDetector(StateMixin, Estimator):
    """Base class: scikit-learn's novelty-detection contract plus the model-file protocol.

    Subclasses implement ``_fit`` and ``_score``; this class adds thresholds (``contamination``,
    ``offset_``), ``decision_function`` and ``predict``.
    """

    name: ClassVar[str] = ""
    _fitted_attr: ClassVar[str] = "n_features_in_"
    _json_attrs: ClassVar[tuple[str, ...]] = ("offset_", "n_features_in_")
    _auto_offset: ClassVar[float | None] = None  # the offset_ of contamination="auto", where it has one
    contamination: float | str | None

    def fit(self, features: Any = None, labels: Any = None, logits: Any = None) -> Self:
        """Learn what normal inputs look like.

        Parameters
        ----------
        features
            Penultimate features of (inlier) training samples, shape ``(N, D)``.
        labels
            Their class labels, shape ``(N,)`` (only :class:`MahalanobisDetector` needs them).
        logits
            Their logits, shape ``(N, C)`` (logit-based detectors; for ``contamination``).

        Returns
        -------
        self
        """
        c = self.contamination
        is_fraction = isinstance(c, Real) and not isinstance(c, bool)
        if not (c is None or (c == "auto" and self._auto_offset is not None) or (is_fraction and 0.0 < c <= 0.5)):
            allowed = "None, 'auto'" if self._auto_offset is not None else "None"
            raise ValueError(f"contamination must be {allowed} or a float in (0, 0.5], got {c!r}")
        if hasattr(self, "offset_"):
            del self.offset_  # a threshold belongs to the model it was set for
        self._fit(features, labels, logits)
        if is_fraction:
            # as scikit-learn: this fraction of the training samples falls below the threshold
            self.offset_ = float(np.percentile(self._training_scores(features, labels, logits), 100.0 * c))
        elif c == "auto":
            self.offset_ = self._auto_offset
        return self

    def score_samples(self, features: Any = None, logits: Any = None) -> np.ndarray:
        """Normality score of each sample, shape ``(N,)``: the higher, the more normal."""
        check_fitted(self, self._fitted_attr)
        return self._score(features, logits)

    def decision_function(self, features: Any = None, logits: Any = None) -> np.ndarray:
        """``score_samples - offset_``: negative for outliers, shape ``(N,)``."""
        scores = self.score_samples(features, logits)
        if not hasattr(self, "offset_"):
            raise NotFittedError(f"{type(self).__name__} has no threshold: fit it with contamination=<float> "
                                 "or call owlearn.space.calibrate(detector, held_out_features, ...)")
        return scores - self.offset_

    def predict(self, features: Any = None, logits: Any = None) -> np.ndarray:
        """``+1`` for inliers and ``-1`` for outliers (a score equal to ``offset_`` is an inlier)."""
        return np.where(self.decision_function(features, logits) >= 0.0, 1, -1)

    # -- for subclasses -------------------------------------------------------------------------------
    def _fit(self, features: Any, labels: Any, logits: Any) -> None:
        raise NotImplementedError

    def _score(self, features: Any, logits: Any) -> np.ndarray:
        raise NotImplementedError

    def _training_scores(self, features: Any, labels: Any, logits: Any) -> np.ndarray:
        """Scores of the training samples, for ``contamination`` (default: score them in-sample)."""
        return self._score(features, logits)

    def _features(self, features: Any, *, fitting: bool = False, keep_float32: bool = False) -> torch.Tensor:
        if features is None:
            raise ValueError(f"{type(self).__name__} needs features")
        n_features = None if fitting else self.n_features_in_
        return as_features(features, n_features=n_features, keep_float32=keep_float32)


def _check_k(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _check_max_reference(value: Any) -> None:
    if value is not None:
        _check_k(value, "max_reference")


# =====================================================================================================
# Detectors on features
# =====================================================================================================
class _NeighborDetector(OutlierDetector):
    """A detector that keeps reference features (``reference_``) and searches their neighbours."""

    def _reference(self, features: Any, normalize: bool) -> tuple[int, torch.Tensor]:
        """Checked ``n_neighbors`` and the (normalised, subsampled) reference features to fit on."""
        k = _check_k(self.n_neighbors, "n_neighbors")
        _check_max_reference(self.max_reference)
        ref = self._features(features, fitting=True, keep_float32=True)
        return k, _subsample(_normalize(ref) if normalize else ref, self.max_reference, self.random_state)

    def _set_reference(self, ref: torch.Tensor) -> None:
        self.n_features_in_ = ref.shape[1]
        self.reference_ = ref.numpy().copy()  # never a view of the caller's array
        self._index: _NeighborIndex | None = _NeighborIndex(torch.from_numpy(self.reference_))

    def _neighbors(self) -> _NeighborIndex:
        if getattr(self, "_index", None) is None:  # after from_state: built on first use
            self._index = _NeighborIndex(torch.from_numpy(self.reference_))
        return self._index

    def _after_load(self) -> None:
        self._index = None


class LOFDetector(_NeighborDetector):
    """Local Outlier Factor (Breunig et al. 2000) in novelty mode, exact and fast on large sets.

    Scores equal ``sklearn.neighbors.LocalOutlierFactor(novelty=True).score_samples`` (the negated
    LOF, ~-1 for inliers), but the k-nearest-neighbour searches run as blocked float32 matrix
    products with an exact float64 check, close to BLAS speed. Fitting costs about ``M^2 D / 2``
    multiply-adds for ``M`` references of dimension ``D`` (every reference needs its own neighbours),
    scoring ``N M D``; ``max_reference`` bounds both.

    Parameters
    ----------
    n_neighbors
        ``k``: neighbours that define the local density (clipped to the reference size - 1).
    normalize
        Scale features to unit L2 norm first (cosine geometry, usual for network features).
    max_reference
        Keep at most this many training features (a random subset); ``None`` keeps all.
    contamination
        ``"auto"``: ``offset_ = -1.5`` as scikit-learn; a float: that fraction of the training
        samples is below the threshold; ``None``: no threshold until :func:`calibrate`.
    random_state
        Seed of the ``max_reference`` subset.

    Attributes
    ----------
    reference_ : ndarray of shape (M, D)
        Reference features (normalized if asked), float32 if given as float32.
    k_distance_, lrd_, negative_outlier_factor_ : ndarray of shape (M,)
        Distance to the k-th neighbour, local reachability density and negated LOF of each reference.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> lof = LOFDetector(n_neighbors=10).fit(rng.normal(size=(500, 8)))
    >>> lof.predict(np.vstack([np.zeros((1, 8)), np.full((1, 8), 10.0)])).tolist()
    [1, -1]
    """

    name: ClassVar[str] = "lof"
    _auto_offset: ClassVar[float | None] = -1.5  # scikit-learn's: a LOF above 1.5 is an outlier
    _array_attrs: ClassVar[tuple[str, ...]] = (
        "reference_", "k_distance_", "lrd_", "negative_outlier_factor_")
    _json_attrs: ClassVar[tuple[str, ...]] = ("offset_", "n_features_in_", "n_neighbors_")

    def __init__(self, n_neighbors: int = 20, *, normalize: bool = False, max_reference: int | None = None,
                 contamination: float | Literal["auto"] | None = "auto",
                 random_state: int | None = 0) -> None:
        self.n_neighbors = n_neighbors
        self.normalize = normalize
        self.max_reference = max_reference
        self.contamination = contamination
        self.random_state = random_state

    def _fit(self, features: Any, labels: Any, logits: Any) -> None:
        k, ref = self._reference(features, self.normalize)
        if ref.shape[0] < 2:
            raise ValueError("LOFDetector needs at least 2 training samples")
        self.n_neighbors_ = max(1, min(k, ref.shape[0] - 1))
        self._set_reference(ref)
        dist, idx = self._neighbors().query(None, self.n_neighbors_)
        self.k_distance_ = dist[:, -1].numpy()
        self.lrd_ = self._lrd(dist, idx).numpy()
        lrd = torch.from_numpy(self.lrd_)
        self.negative_outlier_factor_ = (-(lrd[idx] / lrd.unsqueeze(1)).mean(1)).numpy()

    def _lrd(self, dist: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        reach = torch.maximum(dist, torch.from_numpy(self.k_distance_)[idx])
        return 1.0 / (reach.mean(1) + 1e-10)  # 1e-10 as scikit-learn: > k duplicates give distance 0

    def _score(self, features: Any, logits: Any) -> np.ndarray:
        Q = self._features(features)
        if self.normalize:
            Q = _normalize(Q)
        dist, idx = self._neighbors().query(Q, self.n_neighbors_)
        lrd_ratios = torch.from_numpy(self.lrd_)[idx] / self._lrd(dist, idx).unsqueeze(1)
        return (-lrd_ratios.mean(1)).numpy()

    def _training_scores(self, features: Any, labels: Any, logits: Any) -> np.ndarray:
        return self.negative_outlier_factor_  # leave-one-out, as scikit-learn


class KNNDetector(_NeighborDetector):
    """Deep nearest neighbours (Sun et al. 2022): distance to the k-th nearest training feature.

    Features are L2-normalized; the score is ``-||z - z_(k)||`` for the k-th nearest normalized
    training feature ``z_(k)`` (exact, with the same blocked search as :class:`LOFDetector`).

    Parameters
    ----------
    n_neighbors
        ``k``; 50 is the paper's choice for CIFAR-10-sized training sets (clipped to the reference size).
    max_reference
        Keep at most this many training features (random subset; the paper samples 1% of ImageNet).
    contamination
        ``None`` (no threshold until :func:`calibrate`) or the fraction of training samples, scored
        leave-one-out, below the threshold (costs a k-NN search of the training set).
    random_state
        Seed of the ``max_reference`` subset.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> knn = KNNDetector(n_neighbors=5).fit(rng.normal(size=(200, 8)) + [5, 0, 0, 0, 0, 0, 0, 0])
    >>> s = knn.score_samples(np.array([[5.0, 0, 0, 0, 0, 0, 0, 0], [-5.0, 0, 0, 0, 0, 0, 0, 0]]))
    >>> bool(s[0] > s[1])
    True
    """

    name: ClassVar[str] = "knn"
    _array_attrs: ClassVar[tuple[str, ...]] = ("reference_",)
    _json_attrs: ClassVar[tuple[str, ...]] = ("offset_", "n_features_in_", "n_neighbors_")

    def __init__(self, n_neighbors: int = 50, *, max_reference: int | None = None,
                 contamination: float | None = None, random_state: int | None = 0) -> None:
        self.n_neighbors = n_neighbors
        self.max_reference = max_reference
        self.contamination = contamination
        self.random_state = random_state

    def _fit(self, features: Any, labels: Any, logits: Any) -> None:
        k, ref = self._reference(features, normalize=True)
        self.n_neighbors_ = min(k, ref.shape[0])
        self._set_reference(ref)

    def _score(self, features: Any, logits: Any) -> np.ndarray:
        Q = _normalize(self._features(features))
        dist, _ = self._neighbors().query(Q, self.n_neighbors_)
        return (-dist[:, -1]).numpy()

    def add_reference(self, features: Any) -> Self:
        """Add samples to the reference set, e.g. the examples of a class taught later.

        The same as fitting on the old references and the new samples together, without normalising and
        copying the old ones again: only the search structure is rebuilt. The threshold is kept. With
        ``max_reference`` set, the set may grow beyond it (a refit would subsample).
        """
        check_fitted(self, self._fitted_attr)
        new = _normalize(self._features(features, keep_float32=True)).numpy()
        self.reference_ = np.concatenate([self.reference_, new.astype(self.reference_.dtype, copy=False)])
        self.n_neighbors_ = min(_check_k(self.n_neighbors, "n_neighbors"), self.reference_.shape[0])
        self._index = _NeighborIndex(torch.from_numpy(self.reference_))
        return self

    def left_out_scores(self, features: Any, at_most: int | None = None) -> np.ndarray:
        """Scores of samples that are in the reference set, each with its k-th neighbour taken among the
        others (in-sample, every reference would be its own nearest neighbour); ``at_most``: of a seeded
        subset of that many."""
        Q = self._features(features)
        Q = _normalize(Q[seeded_subset(Q.shape[0], at_most)])
        dist, _ = self._neighbors().query(Q, min(self.n_neighbors_ + 1, self.reference_.shape[0]))
        return (-dist[:, -1]).numpy()

    def _training_scores(self, features: Any, labels: Any, logits: Any) -> np.ndarray:
        # leave-one-out: in-sample, every training feature would be its own nearest neighbour
        n_ref = self.reference_.shape[0]
        if n_ref < 2:
            raise ValueError("contamination needs at least 2 training samples")
        dist, _ = self._neighbors().query(None, min(self.n_neighbors_, n_ref - 1))
        return (-dist[:, -1]).numpy()


class MahalanobisDetector(OutlierDetector):
    """Class-conditional Gaussians with a shared covariance (Lee et al. 2018).

    The score is ``-min_k (x - mu_k)^T Sigma^-1 (x - mu_k)``, computed by a
    :class:`~owlearn.space.GaussianClassifier` (so the same shrinkage rules apply).

    Parameters
    ----------
    shrinkage
        Passed to :class:`~owlearn.space.GaussianClassifier` (``"auto"``: OAS).
    contamination
        ``None`` or the fraction of training samples (scored in-sample) below the threshold.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 1, (100, 3)), rng.normal(6, 1, (100, 3))])
    >>> det = MahalanobisDetector().fit(X, labels=np.repeat([0, 1], 100))
    >>> s = det.score_samples(np.array([[0.0, 0, 0], [3.0, 3, 3]]))
    >>> bool(s[0] > s[1])
    True
    """

    name: ClassVar[str] = "mahalanobis"
    _nested: ClassVar[tuple[str, ...]] = ("classifier_",)

    def __init__(self, shrinkage: float | Literal["auto"] = "auto", *,
                 contamination: float | None = None) -> None:
        self.shrinkage = shrinkage
        self.contamination = contamination

    @classmethod
    def from_classifier(cls, classifier: GaussianClassifier) -> Self:
        """A fitted detector that shares ``classifier``: classes added to it are known to the detector.

        It has no threshold yet: set one with :func:`~owlearn.space.calibrate`.
        """
        check_fitted(classifier, "classes_")
        det = cls(shrinkage=classifier.shrinkage)
        det.classifier_ = classifier
        det.n_features_in_ = classifier.n_features_in_
        return det

    def _fit(self, features: Any, labels: Any, logits: Any) -> None:
        X = self._features(features, fitting=True)
        if labels is None:
            raise ValueError("MahalanobisDetector needs the class labels of the training features")
        self.classifier_ = GaussianClassifier(shrinkage=self.shrinkage).fit(X, as_labels(labels, X.shape[0]))
        self.n_features_in_ = X.shape[1]

    def _score(self, features: Any, logits: Any) -> np.ndarray:
        return -self.classifier_.mahalanobis(self._features(features)).min(axis=1)

    @classmethod
    def _nested_types(cls) -> dict[str, type]:
        return {"classifier_": GaussianClassifier}


def _default_vim_dim(n_features: int) -> int:
    if n_features >= 1500:
        return 1000
    if n_features >= 768:
        return 512
    return n_features // 2


class ViMDetector(OutlierDetector):
    """Virtual-logit Matching (Wang et al. 2022): logit energy minus the scaled feature residual.

    Follows the authors' reference implementation: with the last layer ``logits = x W^T + b``,
    the origin is ``u = -pinv(W) b``; the principal subspace is spanned by the top-``dim``
    eigenvectors of the uncentred second moment of ``x - u`` over the training features (the
    reference's ``EmpiricalCovariance(assume_centered=True)`` on ``x - u``); the residual is the
    norm of ``x - u`` outside it; ``alpha = mean max-logit / mean residual`` on the training data;
    and the score is ``logsumexp(logits) - alpha * residual`` (higher = more normal). This equals
    the paper's ``-log p(virtual class)`` up to a monotone map, so it ranks identically.

    Parameters
    ----------
    W, b
        Weight ``(C, D)`` and bias ``(C,)`` of the final linear layer (or pass them to :meth:`fit`).
    dim
        Dimension of the principal subspace; default 1000 if ``D >= 1500``, 512 if ``D >= 768``,
        else ``D // 2``.
    contamination
        ``None`` or the fraction of training samples (scored in-sample) below the threshold.

    Notes
    -----
    Logits are always computed from ``W`` and ``b``; a ``logits`` argument is ignored, so that the
    origin and the energy come from the same layer.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W, b = rng.normal(size=(3, 8)), np.zeros(3)
    >>> vim = ViMDetector(W, b, dim=3).fit(rng.normal(size=(300, 8)) @ np.diag([3, 3, 3, 1, .1, .1, .1, .1]))
    >>> s = vim.score_samples(np.array([[0, 0, 0, 0, 0, 0, 0, 0.0], [0, 0, 0, 0, 9, 9, 9, 9.0]]))
    >>> bool(s[0] > s[1])
    True
    """

    name: ClassVar[str] = "vim"
    _array_params: ClassVar[tuple[str, ...]] = ("W", "b")
    _array_attrs: ClassVar[tuple[str, ...]] = ("weight_", "bias_", "origin_", "residual_basis_")
    _json_attrs: ClassVar[tuple[str, ...]] = ("offset_", "n_features_in_", "alpha_", "dim_")

    def __init__(self, W: Any = None, b: Any = None, *, dim: int | None = None,
                 contamination: float | None = None) -> None:
        self.W = W
        self.b = b
        self.dim = dim
        self.contamination = contamination

    def fit(self, features: Any = None, labels: Any = None, logits: Any = None, *, W: Any = None,
            b: Any = None) -> Self:
        """As :meth:`OutlierDetector.fit`; ``W`` and ``b`` here override the constructor's."""
        self._fit_weights = (W, b)
        try:
            return super().fit(features, labels, logits)
        finally:
            del self._fit_weights

    def _fit(self, features: Any, labels: Any, logits: Any) -> None:
        W_in, b_in = self._fit_weights
        W_in = self.W if W_in is None else W_in
        b_in = self.b if b_in is None else b_in
        if W_in is None or b_in is None:
            raise ValueError("ViMDetector needs the last layer's weight W (C, D) and bias b (C,)")
        X = self._features(features, fitting=True)
        n_features = X.shape[1]
        W = as_features(W_in, name="W", n_features=n_features)
        b_row = b_in.detach().reshape(1, -1) if isinstance(b_in, torch.Tensor) else np.reshape(b_in, (1, -1))
        b = as_features(b_row, name="b", n_features=W.shape[0])[0]
        dim = _default_vim_dim(n_features) if self.dim is None else self.dim
        if not isinstance(dim, int | np.integer) or not 0 < dim < n_features:
            raise ValueError(f"dim must be an integer in [1, {n_features - 1}], got {dim!r}")
        origin = -torch.linalg.pinv(W) @ b  # (D,)
        centred = X - origin
        _, vecs = torch.linalg.eigh(centred.T @ centred / X.shape[0])  # eigenvalues ascending
        # copies: W and b may share memory with the caller's arrays (and with the W, b parameters)
        self.weight_, self.bias_, self.origin_ = W.numpy().copy(), b.numpy().copy(), origin.numpy()
        self.residual_basis_ = vecs[:, : n_features - int(dim)].contiguous().numpy()  # (D, D - dim)
        self.dim_ = int(dim)
        self.n_features_in_ = n_features
        max_logit = (X @ W.T + b).amax(1)
        self.alpha_ = float(max_logit.mean() / self._residual(X).mean())

    def _residual(self, X: torch.Tensor) -> torch.Tensor:
        return ((X - torch.from_numpy(self.origin_)) @ torch.from_numpy(self.residual_basis_)).norm(dim=1)

    def _score(self, features: Any, logits: Any) -> np.ndarray:
        X = self._features(features)
        energy = torch.logsumexp(X @ torch.from_numpy(self.weight_).T + torch.from_numpy(self.bias_), dim=1)
        return (energy - self.alpha_ * self._residual(X)).numpy()


# =====================================================================================================
# Detectors on logits
# =====================================================================================================
class _LogitDetector(OutlierDetector):
    _fitted_attr: ClassVar[str] = "n_logits_in_"
    _json_attrs: ClassVar[tuple[str, ...]] = ("offset_", "n_logits_in_")

    def __init__(self, temperature: float = 1.0, *, contamination: float | None = None) -> None:
        self.temperature = temperature
        self.contamination = contamination

    def _fit(self, features: Any, labels: Any, logits: Any) -> None:
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r}")
        if self.contamination is not None and logits is None:
            raise ValueError(f"{type(self).__name__}: contamination needs the training logits")
        # nothing to learn; remember the number of classes (None: fitted without logits)
        self.n_logits_in_ = None if logits is None else self._logits(logits, fitting=True).shape[1]

    def _logits(self, logits: Any, *, fitting: bool = False) -> torch.Tensor:
        if logits is None:
            raise ValueError(f"{type(self).__name__} needs logits")
        n = None if fitting else self.n_logits_in_
        return as_features(logits, name="logits", n_features=n) / self.temperature


class MSPDetector(_LogitDetector):
    """Maximum softmax probability (Hendrycks & Gimpel 2017): ``max softmax(logits / T)``.

    Examples
    --------
    >>> import numpy as np
    >>> MSPDetector().fit().score_samples(logits=np.array([[9.0, 0, 0], [1, 1, 1]])).round(3).tolist()
    [1.0, 0.333]
    """

    name: ClassVar[str] = "msp"

    def _score(self, features: Any, logits: Any) -> np.ndarray:
        return torch.softmax(self._logits(logits), dim=1).amax(1).numpy()


class EnergyDetector(_LogitDetector):
    """Negative free energy (Liu et al. 2020): ``T * logsumexp(logits / T)``, ``T = 1`` by default.

    Examples
    --------
    >>> import numpy as np
    >>> EnergyDetector().fit().score_samples(logits=np.array([[0.0, 0.0]])).round(4).tolist()
    [0.6931]
    """

    name: ClassVar[str] = "energy"

    def _score(self, features: Any, logits: Any) -> np.ndarray:
        return (self.temperature * torch.logsumexp(self._logits(logits), dim=1)).numpy()


DETECTORS: dict[str, type[OutlierDetector]] = {
    cls.name: cls
    for cls in (LOFDetector, MahalanobisDetector, KNNDetector, ViMDetector, MSPDetector, EnergyDetector)
}
"""Detector classes by name, as :func:`make_detector` knows them."""


def make_detector(name: str, **params: Any) -> OutlierDetector:
    """Create an (unfitted) detector by name: ``"lof"``, ``"mahalanobis"``, ``"knn"``, ``"vim"``,
    ``"msp"``, ``"energy"`` or ``"layers"`` (:class:`~owlearn.space.LayerEnsembleDetector`), with its
    constructor parameters.

    Examples
    --------
    >>> make_detector("knn", n_neighbors=10)
    KNNDetector(n_neighbors=10)
    """
    try:
        cls = DETECTORS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}") from None
    return cls(**params)
