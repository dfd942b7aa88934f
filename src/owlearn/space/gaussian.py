"""One Gaussian per class with a shared covariance: classify, measure distance, and grow by classes.

This is linear discriminant analysis written around *sufficient statistics* (per class: count, sum
and within-class scatter), as in Lee et al. 2018, "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks". Because the statistics add up, a class can be
added, extended or removed later from its own features alone, and the result equals a fresh fit on
all the data: the network never has to be retrained to learn a new class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch

from owlearn.space._estimator import ClassifierEstimator
from owlearn.space._state import StateMixin, as_features, as_labels, check_fitted

__all__ = ["GaussianClassifier", "oas_shrinkage"]

_ROWS_PER_BLOCK = 4096
"""Rows promoted to float64 at a time, by :meth:`GaussianClassifier.mahalanobis` and the class statistics:
it bounds their float64 temporaries (1,024-row blocks made a 6,000 × 896 class 15% slower)."""

_SYRK_MIN_FEATURES = 384
"""From this many features on, class scatters are a BLAS ``syrk`` through SciPy; below, a torch product.

For 6,000 rows on one thread, the torch product takes 0.08 s against syrk's 0.027 s at 320 features and 0.19
against 0.058 s at 512; at 896 features (two threads) 0.30 against 0.17 s. Importing SciPy's linear algebra
costs 0.26 s and 16 MB resident once, which only the wider features win back: B4's Gaussian strategy
(320-d, ten classes) peaked 10 MB lower without it (docs/performance.md).
"""

_FLOOR = 1e-9
"""Ridge added to the shrunk covariance, relative to its mean variance ``trace(S) / D``.

It keeps the Cholesky factor defined when ``S`` is singular (fewer samples than features, duplicated
features) even with ``shrinkage=0``; at 1e-9 it changes no prediction on well-conditioned data.
"""


def oas_shrinkage(covariance: torch.Tensor, n_samples: int) -> float:
    """Oracle Approximating Shrinkage intensity (Chen et al. 2010) of an empirical covariance.

    Exactly :func:`sklearn.covariance.oas`'s formula: with ``p`` features, ``mu = trace(S) / p`` and
    ``alpha = mean(S ** 2)``, the intensity is
    ``min(1, (alpha + mu**2) / ((n + 1) * (alpha - mu**2 / p)))`` (1 when the denominator is 0,
    0 when ``p == 1``). It needs only ``S`` and ``n``, so it can be recomputed from sufficient
    statistics after every update, unlike Ledoit-Wolf, which needs fourth moments of the data.

    Examples
    --------
    >>> import torch
    >>> round(oas_shrinkage(torch.eye(3, dtype=torch.float64), n_samples=100), 3)
    1.0
    """
    p = covariance.shape[0]
    if p == 1:
        return 0.0
    alpha = float(covariance.square().mean())
    mu = float(torch.diagonal(covariance).sum()) / p
    num = alpha + mu**2
    den = (n_samples + 1) * (alpha - mu**2 / p)
    return 1.0 if den == 0 else min(num / den, 1.0)


def _class_stats(X: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Count, sum and scatter ``sum (x - mean)(x - mean)^T`` of one class's features, in float64.

    ``X`` may be float32: its rows pass through one float64 buffer of a block's size, reused for every
    block and both passes, so neither a float64 copy of the class nor its centred copy is ever held whole,
    and the process's allocator sees one small request instead of two per block (freed blocks of
    several MB stay on glibc's heap: docs/performance.md).
    """
    n, d = X.shape
    buffer = torch.empty(min(n, _ROWS_PER_BLOCK), d, dtype=torch.float64)

    def promoted(blocks_centred_on: torch.Tensor | None):
        for block in X.split(_ROWS_PER_BLOCK):
            rows = buffer[:len(block)].copy_(block)
            yield rows if blocks_centred_on is None else rows.sub_(blocks_centred_on)

    total = torch.zeros(d, dtype=torch.float64)
    for rows in promoted(None):
        total += rows.sum(0)
    mean = total / n  # two-pass: no cancellation from sum(x x^T) - n mean mean^T
    if d < _SYRK_MIN_FEATURES:
        scatter = torch.zeros(d, d, dtype=torch.float64)
        for centred in promoted(mean):
            scatter.addmm_(centred.T, centred)
        # a general product rounds its two triangles apart; mirrored, the scatter is exactly symmetric, as the
        # syrk path's, and a model file can store its upper triangle alone
        return n, total, scatter.triu() + scatter.triu(1).T
    from scipy.linalg.blas import dsyrk  # here, not at import: SciPy's linear algebra is 16 MB resident

    # the scatter is the bulk of adding a class; a symmetric rank-k update (BLAS syrk) does half the
    # work of a general product, in float64 all the same, and accumulates block after block in place
    upper = np.zeros((d, d), order="F")
    for centred in promoted(mean):
        upper = dsyrk(1.0, centred.numpy().T, beta=1.0, c=upper, trans=0, overwrite_c=1)  # .T: Fortran view
    scatter = np.triu(upper) + np.triu(upper, 1).T
    return n, total, torch.from_numpy(scatter)


class GaussianClassifier(StateMixin, ClassifierEstimator):
    """Class-conditional Gaussians with one shared covariance (LDA) that can grow by classes.

    Each class ``k`` has mean ``mu_k`` and prior ``n_k / N``; all share the covariance ``Sigma``.
    The discriminant is ``-1/2 (x - mu_k)^T Sigma^-1 (x - mu_k) + log(n_k / N)``; ``predict_proba``
    is its softmax, so predictions equal scikit-learn's ``LinearDiscriminantAnalysis``.

    ``Sigma`` is shrunk towards a scaled identity: with ``S = W / N`` the pooled within-class
    scatter ``W`` over the number of samples ``N`` (the maximum-likelihood covariance of the
    class-centred features), ``Sigma = (1 - rho) S + rho mu I + 1e-9 mu I`` with ``mu = trace(S)/D``.
    The last term is a tiny floor so that a singular ``S`` still has a Cholesky factor.

    Parameters
    ----------
    shrinkage
        ``rho``: a float in ``[0, 1]``, or ``"auto"`` (default): the Oracle Approximating Shrinkage
        intensity of ``S`` with ``n = N`` — the value ``sklearn.covariance.OAS(assume_centered=True)``
        finds on the class-centred training features (see :func:`oas_shrinkage`). It is a function
        of ``W`` and ``N`` only, so :meth:`add_class`, :meth:`update_class` and
        :meth:`remove_class` recompute it and stay equal to a refit.
    store_class_scatter
        Keep each class's ``D x D`` scatter (``K D^2`` floats) so that :meth:`remove_class` can
        subtract it exactly. ``False`` keeps only the pooled scatter and disables removal.

    Attributes
    ----------
    classes_ : ndarray of shape (K,)
        Integer labels of the known classes.
    class_names_ : list of str
        Name of each class, aligned with ``classes_``.
    counts_, sums_, scatter_
        Sufficient statistics: samples per class ``(K,)``, per-class feature sums ``(K, D)``, pooled
        within-class scatter ``(D, D)``; ``class_scatters_`` ``(K, D, D)`` when stored.
    means_, priors_, covariance_, cholesky_
        Class means, class priors, the shrunk covariance and its lower Cholesky factor.
    shrinkage_ : float
        The ``rho`` in use.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 1, (50, 4)), rng.normal(5, 1, (50, 4))])
    >>> y = np.repeat([0, 1], 50)
    >>> clf = GaussianClassifier().fit(X, y, class_names=["cat", "dog"])
    >>> clf.predict(np.array([[0.0, 0, 0, 0], [5, 5, 5, 5]])).tolist()
    [0, 1]
    >>> clf.add_class(rng.normal(-5, 1, (20, 4)), name="owl")
    2
    >>> clf.class_names_
    ['cat', 'dog', 'owl']
    >>> clf.predict(np.full((1, 4), -5.0)).tolist()
    [2]
    """

    _array_attrs: ClassVar[tuple[str, ...]] = (
        "classes_", "counts_", "sums_", "scatter_", "class_scatters_",
        "means_", "priors_", "covariance_", "cholesky_",
    )
    _json_attrs: ClassVar[tuple[str, ...]] = ("class_names_", "shrinkage_", "n_features_in_")

    def __init__(self, shrinkage: float | Literal["auto"] = "auto", store_class_scatter: bool = True) -> None:
        self.shrinkage = shrinkage
        self.store_class_scatter = store_class_scatter

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, class_names: Sequence[str] | None = None) -> Self:
        """Estimate one mean per class and the shared covariance.

        Parameters
        ----------
        X
            Features, array or tensor of shape ``(N, D)``.
        y
            Integer labels ``>= 0`` of shape ``(N,)``.
        class_names
            Indexed by label: ``class_names[k]`` names label ``k`` (the convention of
            :class:`owlearn.data.dataset.ImageDataset`). Default: the label as a string.
        """
        self._check_params()
        Xt = as_features(X, keep_float32=True)  # _class_stats promotes a block at a time
        labels = as_labels(y, Xt.shape[0])
        classes = np.unique(labels)
        names = _names_for(classes, class_names)
        stats = [_class_stats(Xt[torch.from_numpy(labels == c)]) for c in classes]
        counts = np.array([n for n, _, _ in stats], dtype=np.int64)
        sums = torch.stack([s for _, s, _ in stats]).numpy()
        scatters = [w.numpy() for _, _, w in stats]
        self._commit(classes, names, counts, sums, scatters, pooled=_pooled(scatters))
        return self

    def fit_statistics(self, counts: Any, sums: Any, scatters: Sequence[Any],
                       class_names: Sequence[str] | None = None) -> Self:
        """Fit from sufficient statistics of labels ``0 … K-1`` (e.g. summed over processes, see
        :func:`owlearn.train.distributed.gaussian_statistics`): counts ``(K,)``, feature sums ``(K, D)``
        and scatters about each class mean ``K × (D, D)``. Classes with count 0 are left out.
        """
        self._check_params()
        counts = np.asarray(counts, dtype=np.int64)
        present = np.flatnonzero(counts > 0)
        if present.size == 0:
            raise ValueError("fit_statistics: every class has count 0")
        names = _names_for(present, class_names)
        scatters = [np.asarray(scatters[k], dtype=np.float64) for k in present]
        self._commit(present, names, counts[present], np.asarray(sums, dtype=np.float64)[present], scatters,
                     pooled=_pooled(scatters))
        return self

    def add_class(self, X_new: Any, name: str | None = None) -> int:
        """Add a class from its features alone and return its label (one more than the largest).

        The shared covariance is updated from the new class's scatter, so the result equals a fresh
        :meth:`fit` on all the data. An unfitted classifier starts from this class.

        Parameters
        ----------
        X_new
            Features of the new class, shape ``(n, D)``.
        name
            Its name; default: the label as a string. Names must be unique.
        """
        self._check_params()
        fitted = hasattr(self, "classes_")
        Xt = as_features(X_new, name="X_new", n_features=self.n_features_in_ if fitted else None, keep_float32=True)
        label = int(self.classes_.max()) + 1 if fitted else 0
        name = str(label) if name is None else str(name)
        if fitted and name in self.class_names_:
            raise ValueError(f"add_class: a class named {name!r} already exists")
        n, s, w = _class_stats(Xt)
        w_np = w.numpy()
        if fitted:
            classes = np.append(self.classes_, label)
            names = [*self.class_names_, name]
            counts = np.append(self.counts_, n)
            sums = np.concatenate([self.sums_, s.numpy()[None]])
            scatters = self._class_scatter_list() + [w_np] if self.store_class_scatter else None
            # the new class comes last in class order, so this is bitwise the sum _pooled would redo
            pooled = self.scatter_ + w_np
        else:
            classes, names = np.array([label]), [name]
            counts, sums = np.array([n], dtype=np.int64), s.numpy()[None]
            scatters, pooled = [w_np], w_np.copy()
        self._commit(classes, names, counts, sums, scatters, pooled)
        return label

    def update_class(self, label_or_name: int | str, X: Any) -> Self:
        """Add more samples ``X`` to an existing class (exact, like refitting with them included).

        Two scatters merge as ``W_a + W_b + n_a n_b / (n_a + n_b) (mu_b - mu_a)(mu_b - mu_a)^T``
        (Chan et al.'s parallel variance update).
        """
        check_fitted(self, "classes_")
        k = self._index(label_or_name)
        Xt = as_features(X, n_features=self.n_features_in_, keep_float32=True)
        n_b, s_b, w_b = _class_stats(Xt)
        n_a = int(self.counts_[k])
        delta = s_b.numpy() / n_b - self.sums_[k] / n_a
        extra = w_b.numpy() + (n_a * n_b / (n_a + n_b)) * np.outer(delta, delta)
        counts, sums = self.counts_.copy(), self.sums_.copy()
        counts[k] += n_b
        sums[k] += s_b.numpy()
        if self.store_class_scatter:
            scatters = self._class_scatter_list()
            scatters[k] = scatters[k] + extra
            pooled = _pooled(scatters)
        else:
            scatters, pooled = None, self.scatter_ + extra
        self._commit(self.classes_, list(self.class_names_), counts, sums, scatters, pooled)
        return self

    def remove_class(self, label_or_name: int | str) -> Self:
        """Forget a class exactly: the result equals a fit on the data without it.

        Needs ``store_class_scatter=True`` (its scatter is subtracted from the pooled one).
        """
        check_fitted(self, "classes_")
        k = self._index(label_or_name)
        if not self.store_class_scatter:
            raise ValueError("remove_class needs each class's scatter: use store_class_scatter=True")
        if len(self.classes_) == 1:
            raise ValueError("remove_class: cannot remove the only class")
        keep = np.arange(len(self.classes_)) != k
        scatters = [w for i, w in enumerate(self._class_scatter_list()) if keep[i]]
        names = [n for i, n in enumerate(self.class_names_) if keep[i]]
        self._commit(self.classes_[keep], names, self.counts_[keep], self.sums_[keep], scatters,
                     _pooled(scatters))
        return self

    # -- prediction -----------------------------------------------------------------------------------
    def mahalanobis(self, X: Any) -> np.ndarray:
        """Squared Mahalanobis distance of each sample to each class mean, shape ``(N, K)``."""
        check_fitted(self, "classes_")
        # float32 input stays float32 here and each block is promoted on its own: the float64 temporaries
        # are then a block's, not N rows' (four N x D copies: ~100 MB for 10,000 rows of 320-d features)
        Xt = as_features(X, n_features=self.n_features_in_, keep_float32=True)
        d2 = torch.empty(len(Xt), len(self.classes_), dtype=torch.float64)
        for start in range(0, len(Xt), _ROWS_PER_BLOCK):
            # a float64 copy of the block, centred in place: whiten with the Cholesky factor (never an
            # explicit inverse), after moving the origin to the data mean so that |z|^2 + |m|^2 - 2 z.m
            # does not cancel for features far from zero
            centred = Xt[start:start + _ROWS_PER_BLOCK].to(torch.float64, copy=True).sub_(self._center)
            Z = torch.linalg.solve_triangular(self._L, centred.T, upper=False).T  # (n, D)
            del centred
            d2[start:start + len(Z)] = (Z.square().sum(1, keepdim=True) + self._wmeans_sq
                                        - 2.0 * (Z @ self._wmeans.T))
        return d2.clamp_min_(0.0).numpy()

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-class discriminant ``-1/2 Mahalanobis^2 + log prior``, shape ``(N, K)``."""
        d2 = self.mahalanobis(X)  # checks fitted first
        return -0.5 * d2 + np.log(self.priors_)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`."""
        return torch.log_softmax(torch.from_numpy(self.decision_function(X)), dim=1).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior class probabilities (softmax of :meth:`decision_function`), shape ``(N, K)``."""
        return torch.softmax(torch.from_numpy(self.decision_function(X)), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class label of each sample, shape ``(N,)``."""
        best = self.decision_function(X).argmax(axis=1)  # checks fitted first
        return self.classes_[best]

    # -- internals ------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        s = self.shrinkage
        if not (s == "auto" or (isinstance(s, int | float) and not isinstance(s, bool) and 0.0 <= s <= 1.0)):
            raise ValueError(f"shrinkage must be 'auto' or a float in [0, 1], got {s!r}")

    def _index(self, label_or_name: int | str) -> int:
        if isinstance(label_or_name, str):
            if label_or_name not in self.class_names_:
                raise ValueError(f"no class named {label_or_name!r}; known: {self.class_names_}")
            return self.class_names_.index(label_or_name)
        hits = np.flatnonzero(self.classes_ == int(label_or_name))
        if hits.size == 0:
            raise ValueError(f"no class with label {label_or_name!r}; known: {self.classes_.tolist()}")
        return int(hits[0])

    def _class_scatter_list(self) -> list[np.ndarray]:
        scatters = self.__dict__["_class_scatters"]
        return list(scatters)  # rows of a stacked array are views: no copy either way

    @property
    def class_scatters_(self) -> np.ndarray:
        """Each class's within-class scatter, ``(K, D, D)``.

        Kept as a list of ``(D, D)`` arrays and stacked only when read (saving reads it): adding a class
        then appends one scatter instead of copying all ``K`` (60 MB per added class at 10 classes of
        864 features, a fifth of the Gaussian's part of adding a class).
        """
        scatters = self.__dict__.get("_class_scatters")
        if scatters is None:
            raise AttributeError("class_scatters_")
        if not isinstance(scatters, np.ndarray):
            scatters = self.__dict__["_class_scatters"] = np.stack(scatters)
        return scatters

    @class_scatters_.setter
    def class_scatters_(self, value: np.ndarray | list[np.ndarray]) -> None:
        self.__dict__["_class_scatters"] = value

    @class_scatters_.deleter
    def class_scatters_(self) -> None:
        del self.__dict__["_class_scatters"]

    def _commit(self, classes: np.ndarray, names: list[str], counts: np.ndarray, sums: np.ndarray,
                scatters: list[np.ndarray] | None, pooled: np.ndarray) -> None:
        """Derive the model from new statistics, then set every attribute (all or nothing)."""
        derived = self._derive(np.asarray(counts, dtype=np.int64), np.asarray(sums, dtype=np.float64), pooled)
        self.classes_ = np.asarray(classes, dtype=np.int64)
        self.class_names_ = list(names)
        self.counts_ = np.asarray(counts, dtype=np.int64)
        self.sums_ = np.asarray(sums, dtype=np.float64)
        self.scatter_ = np.asarray(pooled, dtype=np.float64)
        if self.store_class_scatter and scatters is not None:
            self.class_scatters_ = list(scatters)
        elif hasattr(self, "class_scatters_"):
            del self.class_scatters_
        self.n_features_in_ = self.sums_.shape[1]
        self._set_derived(*derived)
        self._build_caches()

    def _derive(self, counts: np.ndarray, sums: np.ndarray, pooled: np.ndarray):
        """Shrinkage, shared covariance and its Cholesky factor from the sufficient statistics."""
        n_total = int(counts.sum())
        d = sums.shape[1]
        S = torch.from_numpy(pooled) / n_total
        rho = oas_shrinkage(S, n_total) if self.shrinkage == "auto" else float(self.shrinkage)
        mu = float(torch.diagonal(S).sum()) / d
        if not mu > 0.0:
            raise ValueError("the pooled within-class covariance is zero (every class is a single point "
                             "or repeated sample): give some class at least two distinct samples")
        cov = (1.0 - rho) * S
        cov.diagonal().add_((rho + _FLOOR) * mu)
        L, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise ValueError("the shared covariance is not positive definite (features with huge "
                             "dynamic range?): try shrinkage='auto' or a larger shrinkage")
        return rho, cov, L

    def _set_derived(self, rho: float, cov: torch.Tensor, L: torch.Tensor) -> None:
        self.means_ = self.sums_ / self.counts_[:, None]
        self.priors_ = self.counts_ / int(self.counts_.sum())
        self.shrinkage_ = rho
        self.covariance_ = cov.numpy()
        # C order, as after loading from a file: the same layout gives bitwise the same solves
        self.cholesky_ = np.ascontiguousarray(L.numpy())

    # -- the model file: the sufficient statistics only ---------------------------------------------------
    # Means, priors, covariance and its Cholesky factor follow from the counts, sums and pooled scatter by
    # the same computation as at fitting, so they are derived on loading rather than stored. They come out
    # bitwise the same on the same machine and thread count (BLAS's Cholesky rounds differently across
    # thread counts, by about 1e-16 relative, as every solve did before). Each class's scatter, symmetric,
    # is stored as its upper triangle. A Gaussian of 10 classes of 896 features takes 42 MB instead of 84.
    # Files that hold the derived arrays (written before) load as they are.
    def _own_tensors(self) -> dict[str, str]:
        return {key: attr for key, attr in super()._own_tensors().items() if attr not in _DERIVED}

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        full = state.get("class_scatters_")
        if full is not None and torch.equal(full, full.transpose(1, 2)):  # exact: a rounding-asymmetric one stays
            rows, cols = torch.triu_indices(full.shape[1], full.shape[1])
            state["class_scatters_"] = full[:, rows, cols].contiguous()
        return state

    def _after_load(self) -> None:
        scatters = self.__dict__.get("_class_scatters")
        if isinstance(scatters, np.ndarray) and scatters.ndim == 2:  # upper triangles, as state_dict packs them
            self.class_scatters_ = _unpack_upper(scatters, self.sums_.shape[1])
        if hasattr(self, "counts_") and not hasattr(self, "cholesky_"):
            self._set_derived(*self._derive(self.counts_, self.sums_, self.scatter_))
        self._build_caches()

    def _build_caches(self) -> None:
        # caches for mahalanobis(): whitened class means relative to the overall mean. Fresh copies:
        # arrays read from a file may sit at other memory alignments, which changes the rounding of
        # vectorised kernels; copies make a loaded classifier compute bitwise like the fitted one
        self._L = torch.from_numpy(self.cholesky_).clone()
        means = torch.from_numpy(self.means_).clone()
        self._center = (torch.from_numpy(self.priors_).clone()[:, None] * means).sum(0)
        self._wmeans = torch.linalg.solve_triangular(self._L, (means - self._center).T, upper=False).T
        self._wmeans_sq = self._wmeans.square().sum(1)[None, :]


_DERIVED = ("means_", "priors_", "covariance_", "cholesky_")  # recomputed on loading, not stored


def _unpack_upper(packed: np.ndarray, d: int) -> np.ndarray:
    """``(K, D(D+1)/2)`` upper triangles back to ``(K, D, D)`` symmetric matrices."""
    if packed.shape[1] != d * (d + 1) // 2:
        raise ValueError(f"class_scatters_ holds {packed.shape[1]} values per class, not the {d * (d + 1) // 2} "
                         f"of the upper triangle of a {d} x {d} scatter")
    rows, cols = np.triu_indices(d)
    full = np.empty((len(packed), d, d))
    full[:, rows, cols] = packed
    full[:, cols, rows] = packed
    return full


def _pooled(scatters: list[np.ndarray]) -> np.ndarray:
    # summed in class order, the same way in fit and in every update, so that results match bitwise
    total = scatters[0].copy()
    for w in scatters[1:]:
        total += w
    return total


def _names_for(classes: np.ndarray, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [str(c) for c in classes]
    class_names = list(class_names)
    if len(class_names) <= int(classes.max()):
        raise ValueError(f"class_names has {len(class_names)} names but labels go up to "
                         f"{int(classes.max())}: class_names[k] must name label k")
    names = [str(class_names[c]) for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return names
