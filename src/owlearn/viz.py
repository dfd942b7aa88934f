"""Figures for reports: confusion matrices, feature maps, training curves, rejection and continual plots.

Every function draws on a :class:`matplotlib.figure.Figure` created directly, never through
``pyplot``: no GUI backend is ever selected, nothing global changes, and figures are freed as soon as
they go out of scope, so plotting is safe in servers, threads and headless jobs. Each function writes
a PNG atomically (a temporary file in the same folder, renamed when complete: a crash never leaves a
half-written image behind) and returns the path it wrote.

Inputs may be lists, numpy arrays or torch tensors on any device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.colors import Normalize, PowerNorm
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke

from owlearn._atomic import atomic_path

__all__ = [
    "contact_sheet",
    "plot_accuracy_over_experiences",
    "plot_confusion_matrix",
    "plot_feature_map",
    "plot_roc_curves",
    "plot_score_histograms",
    "plot_training_curves",
]

DPI = 120
"""Resolution of every figure: sharp on screen, small on disk."""

PathLike = str | os.PathLike


def _to_numpy(x: Any) -> np.ndarray:
    # Duck-typed so that this module does not import torch.
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _save(fig: Figure, path: PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # The temporary name ends in ".part", so the format must be given explicitly.
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _class_colors(k: int) -> list[Any]:
    """``k`` distinguishable colours: the qualitative tab palettes while they last, then a spread of turbo."""
    from matplotlib import colormaps

    if k <= 10:
        return [colormaps["tab10"](i) for i in range(k)]
    if k <= 20:
        return [colormaps["tab20"](i) for i in range(k)]
    # Interleave the hue order so that neighbouring class indices (often similar classes) differ.
    cmap = colormaps["turbo"]
    order = np.argsort([(i * 7) % k for i in range(k)])
    return [cmap(0.05 + 0.9 * float(order[i]) / max(k - 1, 1)) for i in range(k)]


# --------------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------------


def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str],
    path: PathLike,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Draw a confusion matrix as a heat map (rows = true class, columns = prediction).

    The figure grows with the number of classes and stays readable up to about 100 classes: tick labels
    shrink, and cell values are written in the cells only for 20 classes or fewer.

    Parameters
    ----------
    cm
        Count matrix of shape ``(K, K)``, e.g. from :func:`owlearn.metrics.confusion_matrix`.
    class_names
        ``K`` class names.
    path
        Where to write the PNG.
    normalize
        Divide each row by its total, so a cell is the share of that true class predicted as the column
        class (the diagonal is per-class recall). Rows with no images stay zero.
    title
        Figure title; by default it states the normalisation and the overall accuracy.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = plot_confusion_matrix(np.array([[5, 1], [2, 7]]), ["cat", "dog"],
    ...                             os.path.join(tmp.name, "cm.png"))
    >>> out.name
    'cm.png'
    >>> tmp.cleanup()
    """
    counts = _to_numpy(cm).astype(np.float64)
    k = counts.shape[0]
    if counts.ndim != 2 or counts.shape != (k, k) or k == 0:
        raise ValueError(f"cm must be a non-empty square matrix, got shape {counts.shape}")
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k} x {k} confusion matrix")
    total = counts.sum()
    if normalize:
        row = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, row, out=np.zeros_like(counts), where=row > 0)
    else:
        values = counts

    # About 0.4 inch per cell for few classes, shrinking to 0.14 inch at 100 classes.
    side = float(np.clip(1.5 + 0.42 * k, 4.5, 16.0))
    tick_fs = float(np.clip(260 / max(k, 1), 4.5, 10))
    fig = Figure(figsize=(side + 1.2, side), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(values.max()), 1.0)
    # With many classes each confusion is a small share of a row; a square-root colour scale keeps those
    # cells visible next to the dark diagonal instead of fading them all to white.
    norm = Normalize(0, vmax) if k <= 20 else PowerNorm(0.5, vmin=0, vmax=vmax)
    im = ax.imshow(values, cmap="Blues", norm=norm, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    cbar.set_label(("share of true class" if normalize else "images") + (" (sqrt scale)" if k > 20 else ""))

    if max(len(n) for n in names) <= 3 and k <= 30:
        ax.set_xticks(np.arange(k), labels=names, fontsize=tick_fs)  # short names fit upright
    elif k <= 20:
        ax.set_xticks(np.arange(k), labels=names, fontsize=tick_fs, rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(np.arange(k), labels=names, fontsize=tick_fs, rotation=90)
    ax.set_yticks(np.arange(k), labels=names, fontsize=tick_fs)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    if k <= 20:
        cell_fs = float(np.clip(110 / k, 6, 10))
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                if v == 0:
                    continue  # Empty cells stay blank: the eye then finds the real confusions faster.
                text = f"{v:.2f}" if normalize else f"{int(v)}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=cell_fs,
                    color="white" if v > 0.55 * vmax else "black",
                )
    else:
        # With many classes, thin grid lines every 10 classes help to find a row.
        for b in range(10, k, 10):
            ax.axhline(b - 0.5, color="0.85", lw=0.4)
            ax.axvline(b - 0.5, color="0.85", lw=0.4)
    if title is None:
        acc = f", accuracy {100 * np.trace(counts) / total:.1f}%" if total else ""
        title = f"Confusion matrix ({'row-normalised' if normalize else 'counts'}{acc})"
    ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# feature maps
# --------------------------------------------------------------------------------------------------


def _stratified_indices(labels: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_points`` indices, keeping each label's share (largest-remainder rounding)."""
    n = labels.size
    if n <= max_points:
        return np.arange(n)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * (max_points / n)
    quota = np.floor(exact).astype(int)
    # Hand the leftover points to the labels with the largest fractional parts so the total is exact.
    for c in np.argsort(-(exact - quota), kind="stable")[: max_points - quota.sum()]:
        quota[c] += 1
    picked = [rng.choice(np.flatnonzero(inverse == c), size=q, replace=False) for c, q in enumerate(quota) if q]
    return np.sort(np.concatenate(picked))


def _embed_2d(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n, d = x.shape
    if method == "pca":
        comps = min(2, d, n)
        out = PCA(n_components=comps, random_state=seed).fit_transform(x) if comps else np.zeros((n, 0))
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    from sklearn.manifold import TSNE

    # Perplexity must stay below N; (N-1)/3 is scikit-learn's own ceiling for small sets.
    perplexity = float(min(30.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, learning_rate="auto", random_state=seed)
    return tsne.fit_transform(x)


def plot_feature_map(
    features: Any,
    labels: Any,
    class_names: Sequence[str],
    path: PathLike,
    method: Literal["tsne", "pca"] = "tsne",
    extra: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_points: int = 3000,
    title: str | None = None,
) -> Path:
    """Draw a 2-D map of a feature space, one colour per class.

    Points are embedded with t-SNE (``init="pca"``, perplexity ``min(30, (N-1)/3)``) or PCA. Sets in
    ``extra`` (for instance features of out-of-distribution images) are embedded *jointly* with the main
    points, so their position relative to the classes is meaningful, and drawn on top in grey/black
    markers. With more than ``max_points`` points a seeded subsample keeps each class's share; the same
    cap applies to each ``extra`` set separately. With more than 30 classes the legend is replaced by
    class names written at each class's median position.

    Parameters
    ----------
    features
        Array of shape ``(N, D)``.
    labels
        Integer labels of shape ``(N,)``; labels outside ``0 .. K-1`` (e.g. ``-1``) are drawn as
        "unlabeled" light grey points.
    class_names
        ``K`` class names.
    path
        Where to write the PNG.
    method
        ``"tsne"`` (local neighbourhoods, the usual picture of class clusters) or ``"pca"`` (linear and
        fast; distances along the axes are meaningful). Fewer than 5 points in all are always mapped with
        PCA. t-SNE takes seconds for a few hundred points and about a minute for 3000 on two cores.
    extra
        Optional name -> features ``(M_i, D)`` drawn as extra point sets.
    seed
        Seed of the subsample and of t-SNE; the same inputs give the same picture.
    max_points
        Cap on the number of main points (and of each extra set).
    title
        Figure title; by default the method and the point counts.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(5, 1, (20, 8))])
    >>> y = np.repeat([0, 1], 20)
    >>> out = plot_feature_map(x, y, ["a", "b"], os.path.join(tmp.name, "map.png"), method="pca",
    ...                        extra={"ood": rng.normal(10, 1, (5, 8))})
    >>> out.name
    'map.png'
    >>> tmp.cleanup()
    """
    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    x = _to_numpy(features).astype(np.float32)
    y = _to_numpy(labels).reshape(-1).astype(np.int64)
    if x.ndim != 2 or x.shape[0] != y.size or x.shape[0] == 0:
        raise ValueError(f"features must be (N, D) with N = len(labels) > 0, got {x.shape} and {y.shape}")
    names = [str(n) for n in class_names]
    k = len(names)
    rng = np.random.default_rng(seed)

    keep = _stratified_indices(y, max_points, rng)
    x, y = x[keep], y[keep]
    blocks = [x]
    extra_sets: list[tuple[str, int]] = []
    for name, feats in (extra or {}).items():
        e = _to_numpy(feats).astype(np.float32)
        if e.ndim != 2 or e.shape[1] != x.shape[1]:
            raise ValueError(f"extra[{name!r}] must be (M, {x.shape[1]}), got shape {e.shape}")
        if e.shape[0] > max_points:
            e = e[np.sort(rng.choice(e.shape[0], size=max_points, replace=False))]
        blocks.append(e)
        extra_sets.append((str(name), e.shape[0]))
    allx = np.concatenate(blocks)
    if not np.isfinite(allx).all():
        raise ValueError("features contain NaN or infinite values")
    if method == "tsne" and allx.shape[0] < 5:
        method = "pca"  # t-SNE needs a few points to define neighbourhoods; PCA is the honest picture
    emb = _embed_2d(allx, method, seed)

    fig = Figure(figsize=(9.5, 7.5) if k <= 30 else (10, 9), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    n_main = x.shape[0]
    main = emb[:n_main]
    # Marker size shrinks with the number of points so dense maps do not turn into solid blobs.
    size = float(np.clip(1500 / math.sqrt(allx.shape[0]) / 4, 3, 30))
    unlabeled = (y < 0) | (y >= k)
    if unlabeled.any():
        ax.scatter(main[unlabeled, 0], main[unlabeled, 1], s=size, c="0.8", lw=0, label="unlabeled")
    colors = _class_colors(k)
    for c in range(k):
        sel = y == c
        if sel.any():
            ax.scatter(main[sel, 0], main[sel, 1], s=size, color=colors[c], lw=0, alpha=0.85, label=names[c])
    markers = ["x", "+", "^", "s", "v", "D"]
    greys = ["black", "0.35", "0.55", "0.2", "0.45", "0.65"]
    start = n_main
    for i, (name, m) in enumerate(extra_sets):
        pts = emb[start : start + m]
        start += m
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=size * 1.2,
            marker=markers[i % len(markers)],
            color=greys[i % len(greys)],
            lw=0.8 if markers[i % len(markers)] in "x+" else 0,
            alpha=0.8,
            label=f"{name} (extra)",
        )
    if k <= 30:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8 if k <= 15 else 6.5,
            markerscale=max(1.0, math.sqrt(40 / size)),
            frameon=False,
            ncols=1 if k <= 20 else 2,
        )
    else:
        for c in range(k):
            sel = y == c
            if sel.any():
                cx, cy = np.median(main[sel], axis=0)
                # A thin white halo keeps the name legible over points without hiding a small cluster.
                ax.text(
                    cx,
                    cy,
                    names[c],
                    fontsize=6.5,
                    ha="center",
                    va="center",
                    path_effects=[withStroke(linewidth=2, foreground="white", alpha=0.8)],
                )
        if extra_sets:
            ax.legend(
                handles=ax.collections[-len(extra_sets) :],
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                fontsize=8,
                frameon=False,
            )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{'t-SNE' if method == 'tsne' else 'PCA'} 1")
    ax.set_ylabel(f"{'t-SNE' if method == 'tsne' else 'PCA'} 2")
    if title is None:
        counts = f"{n_main} points, {k} classes"
        if extra_sets:
            counts += " + " + ", ".join(f"{m} {name}" for name, m in extra_sets)
        title = f"Feature map ({'t-SNE' if method == 'tsne' else 'PCA'}; {counts})"
    ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


def _curve_group(key: str) -> str | None:
    k = key.lower()
    if k in ("epoch", "step", "experience"):
        return None
    if "loss" in k:
        return "Loss"
    if "acc" in k:
        return "Accuracy"
    if k.endswith("_per_s") or "throughput" in k:
        return "Throughput (per s)"
    if k in ("lr", "learning_rate") or k.endswith("_lr"):
        return "Learning rate"
    return None


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: PathLike, title: str | None = None) -> Path:
    """Plot losses, accuracies and (when logged) throughput and learning rate against the epoch.

    Keys are grouped by name into panels: anything containing ``loss``, anything containing ``acc``,
    keys ending in ``_per_s`` and the learning rate (``lr``); other keys are ignored. A key missing from
    some epochs (e.g. validation every few epochs) is drawn only where present.

    Parameters
    ----------
    history
        One dict per epoch, e.g. ``{"epoch": 1, "loss": 0.6, "acc": 0.81, "val_acc": 0.79,
        "images_per_s": 5200.0}``. Without an ``epoch`` key the position (1, 2, ...) is used.
    path
        Where to write the PNG.
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> hist = [{"epoch": e, "loss": 1 / e, "acc": 1 - 0.5 / e, "val_acc": 1 - 0.6 / e} for e in (1, 2, 3)]
    >>> plot_training_curves(hist, os.path.join(tmp.name, "curves.png")).name
    'curves.png'
    >>> tmp.cleanup()
    """
    if not history:
        raise ValueError("history is empty")
    groups: dict[str, list[str]] = {}
    for rec in history:
        for key, val in rec.items():
            g = _curve_group(key)
            if g is not None and isinstance(val, int | float | np.number) and not isinstance(val, bool):
                if key not in groups.setdefault(g, []):
                    groups[g].append(key)
    if not groups:
        raise ValueError("history has no loss, accuracy, throughput or learning-rate values to plot")
    order = [g for g in ("Loss", "Accuracy", "Throughput (per s)", "Learning rate") if g in groups]
    epochs = [rec.get("epoch", i + 1) for i, rec in enumerate(history)]

    # One row for up to two panels, a 2 x 2 grid beyond: keeps the figure about as wide as a page.
    ncols = min(len(order), 2)
    nrows = math.ceil(len(order) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.7 * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(order) :]:
        ax.set_visible(False)
    for ax, g in zip(axes, order, strict=False):
        for key in groups[g]:
            xs = [e for e, rec in zip(epochs, history, strict=True) if rec.get(key) is not None]
            ys = [float(rec[key]) for rec in history if rec.get(key) is not None]
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, ms=3.5, lw=1.6, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(g)
        ax.set_title(g)
        ax.grid(alpha=0.3)
        if g == "Learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if g.startswith("Throughput"):
            # From zero, so that a few percent of timing noise does not look like a collapse.
            top = max((float(r[k]) for r in history for k in groups[g] if r.get(k) is not None), default=1.0)
            ax.set_ylim(0, 1.1 * top if top > 0 else 1.0)
        ax.legend(fontsize=8)
        # Integer epochs deserve integer ticks.
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title or "Training curves")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# rejection
# --------------------------------------------------------------------------------------------------


# In-distribution scores are drawn in blue; each out-of-distribution set takes the next of these colours.
_OUT_COLORS = ["tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:gray"]


def _score_sets(in_scores: Any, out_scores_by_name: Mapping[str, Any] | Any
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The in-distribution scores as one float64 vector, and the named out-of-distribution sets."""
    pos = _to_numpy(in_scores).astype(np.float64).reshape(-1)
    if pos.size == 0:
        raise ValueError("in_scores is empty")
    return pos, _out_sets(out_scores_by_name)


def _out_sets(out_scores_by_name: Mapping[str, Any] | Any) -> dict[str, np.ndarray]:
    if not isinstance(out_scores_by_name, Mapping):
        out_scores_by_name = {"out-of-distribution": out_scores_by_name}
    sets = {str(k): _to_numpy(v).astype(np.float64).reshape(-1) for k, v in out_scores_by_name.items()}
    if not sets or any(v.size == 0 for v in sets.values()):
        raise ValueError("out_scores_by_name needs at least one non-empty set of scores")
    return sets


def plot_score_histograms(
    in_scores: Any,
    out_scores_by_name: Mapping[str, Any] | Any,
    path: PathLike,
    threshold: float | None = None,
    title: str | None = None,
) -> Path:
    """Overlaid histograms of the rejection score for in-distribution and out-of-distribution images.

    Histograms are density-normalised on shared bins, so sets of different sizes compare directly; the
    legend gives each out-of-distribution set's AUROC.

    Parameters
    ----------
    in_scores
        Scores of in-distribution images (higher = more normal).
    out_scores_by_name
        Name -> scores of each out-of-distribution set (a bare array is accepted as one set).
    path
        Where to write the PNG.
    threshold
        If given, drawn as a vertical line: images at or above it are accepted.
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> rng = np.random.default_rng(0)
    >>> plot_score_histograms(rng.normal(2, 1, 500), {"noise": rng.normal(0, 1, 300)},
    ...                       os.path.join(tmp.name, "h.png"), threshold=0.5).name
    'h.png'
    >>> tmp.cleanup()
    """
    from owlearn.metrics import auroc

    pos, outs = _score_sets(in_scores, out_scores_by_name)
    everything = np.concatenate([pos, *outs.values()])
    everything = everything[np.isfinite(everything)]
    if everything.size:
        lo, hi = float(everything.min()), float(everything.max())
        p_lo, p_hi = np.percentile(everything, [0.5, 99.5])
        if hi - lo > 2 * (p_hi - p_lo):
            # A few extreme scores would squash every histogram into a couple of bins: show the central
            # 99% and pile the outliers into the edge bins instead.
            lo, hi = float(p_lo), float(p_hi)
    else:
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 60)

    fig = Figure(figsize=(8, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    sets = [(f"in-distribution (n={pos.size})", pos, "tab:blue")]
    sets += [
        (f"{name} (n={s.size}, AUROC {auroc(pos, s):.3f})", s, _OUT_COLORS[i % len(_OUT_COLORS)])
        for i, (name, s) in enumerate(outs.items())
    ]
    for label, s, color in sets:
        clipped = np.clip(s[np.isfinite(s)], lo, hi)
        # A light fill shows where the mass is; a solid outline keeps overlapping sets apart.
        ax.hist(clipped, bins=bins, density=True, histtype="stepfilled", alpha=0.2, color=color)
        ax.hist(clipped, bins=bins, density=True, histtype="step", lw=1.5, color=color, label=label)
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.2, label=f"threshold = {threshold:.4g}")
    ax.set_xlabel("score (higher = more in-distribution)")
    ax.set_ylabel("density")
    ax.set_title(title or "Rejection scores")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_roc_curves(
    in_scores: Any,
    out_scores_by_name: Mapping[str, Any] | Any,
    path: PathLike,
    title: str | None = None,
) -> Path:
    """ROC curves of in-distribution (positive) versus each out-of-distribution set.

    The x axis is the share of out-of-distribution images accepted, the y axis the share of
    in-distribution images accepted. The legend gives AUROC and FPR at 95% TPR, and a dot marks that
    operating point on each curve.

    Parameters
    ----------
    in_scores
        Scores of in-distribution images (higher = more normal).
    out_scores_by_name
        Name -> scores of each out-of-distribution set (a bare array is accepted as one set).
    path
        Where to write the PNG.
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> rng = np.random.default_rng(0)
    >>> plot_roc_curves(rng.normal(2, 1, 500), {"noise": rng.normal(0, 1, 300)},
    ...                 os.path.join(tmp.name, "roc.png")).name
    'roc.png'
    >>> tmp.cleanup()
    """
    from sklearn.metrics import roc_curve

    from owlearn.metrics import auroc, threshold_at_tpr

    pos, outs = _score_sets(in_scores, out_scores_by_name)

    fig = Figure(figsize=(6, 5.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance")
    for i, (name, s) in enumerate(outs.items()):
        y = np.concatenate([np.ones(pos.size), np.zeros(s.size)])
        fpr, tpr, _ = roc_curve(y, np.concatenate([pos, s]))
        # The operating point of FPR@95 (see owlearn.metrics.fpr_at_tpr), marked on the curve.
        t95 = threshold_at_tpr(pos, 0.95)
        fpr95, tpr95 = float(np.mean(s >= t95)), float(np.mean(pos >= t95))
        color = _OUT_COLORS[i % len(_OUT_COLORS)]
        ax.plot(fpr, tpr, color=color, lw=1.8, label=f"{name}: AUROC {auroc(pos, s):.3f}, FPR@95 {fpr95:.3f}")
        ax.plot([fpr95], [tpr95], "o", color=color, ms=5)
    ax.axhline(0.95, color="0.75", lw=0.8, ls="--")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("out-of-distribution accepted (FPR)")
    ax.set_ylabel("in-distribution accepted (TPR)")
    ax.set_title(title or "ROC: in-distribution vs out-of-distribution")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------


def contact_sheet(
    images: Any,
    path: PathLike,
    ncols: int | None = None,
    labels: Sequence[Any] | None = None,
    min_cell: int = 64,
) -> Path:
    """Tile images into one grid PNG, optionally with a caption under each.

    Images are enlarged by an integer factor with nearest-neighbour sampling (so that small images such
    as 28 x 28 digits stay crisp and no pixel is invented) until a cell is at least ``min_cell`` pixels.

    Parameters
    ----------
    images
        ``uint8`` array of shape ``(N, C, H, W)`` with ``C`` 1 (grayscale) or 3 (RGB), or ``(N, H, W)``.
    path
        Where to write the PNG.
    ncols
        Images per row; by default about ``sqrt(N)``.
    labels
        Optional caption per image (anything with ``str``); long captions are cut to the cell width.
    min_cell
        Smallest cell side in pixels after enlargement.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> imgs = np.random.default_rng(0).integers(0, 256, (6, 1, 28, 28), dtype=np.uint8)
    >>> contact_sheet(imgs, os.path.join(tmp.name, "sheet.png"), labels=list("abcdef")).name
    'sheet.png'
    >>> tmp.cleanup()
    """
    from PIL import Image, ImageDraw, ImageFont

    arr = _to_numpy(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or arr.shape[0] == 0:
        raise ValueError(f"images must be (N, 1|3, H, W) with N > 0, got shape {arr.shape}")
    n, c, h, w = arr.shape
    if labels is not None and len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} images")
    cols = int(ncols) if ncols else math.ceil(math.sqrt(n))
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    scale = max(1, math.ceil(min_cell / max(1, min(h, w))))
    ch, cw = h * scale, w * scale
    pad = 4
    font = ImageFont.load_default(size=max(10, min(16, cw // 7))) if labels is not None else None
    text_h = (font.size + 6) if font is not None else 0
    texts = [str(lab) for lab in labels] if labels is not None else []
    # Columns widen (up to twice the image) to fit captions; the image is centred in its column.
    col_w = cw
    if font is not None:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        col_w = max(cw, min(2 * cw, math.ceil(max(probe.textlength(t, font=font) for t in texts)) + 2))

    sheet = Image.new("RGB", (cols * (col_w + pad) + pad, rows * (ch + pad + text_h) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        img = arr[i].transpose(1, 2, 0)
        # A 2-D uint8 array becomes an "L" image and (H, W, 3) an "RGB" one.
        tile = Image.fromarray(np.ascontiguousarray(img[..., 0] if c == 1 else img))
        tile = tile.resize((cw, ch), Image.Resampling.NEAREST).convert("RGB")
        r, q = divmod(i, cols)
        x0, y0 = pad + q * (col_w + pad), pad + r * (ch + pad + text_h)
        sheet.paste(tile, (x0 + (col_w - cw) // 2, y0))
        if font is not None:
            text = texts[i]
            # Cut a caption that is still too long, marking the cut with an ellipsis.
            if draw.textlength(text, font=font) > col_w:
                while len(text) > 1 and draw.textlength(text + "…", font=font) > col_w:
                    text = text[:-1]
                text += "…"
            draw.text((x0 + col_w / 2, y0 + ch + 2), text, fill="black", font=font, anchor="mt")
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


# --------------------------------------------------------------------------------------------------
# continual learning
# --------------------------------------------------------------------------------------------------


def plot_accuracy_over_experiences(
    results: Mapping[str, Sequence[float]],
    path: PathLike,
    title: str | None = None,
    ylabel: str = "accuracy on experiences seen so far",
) -> Path:
    """Accuracy after each experience of a continual-learning run, one line per method.

    Parameters
    ----------
    results
        Method name -> accuracy after experience 1, 2, ... (lists may differ in length).
    path
        Where to write the PNG.
    title
        Figure title.
    ylabel
        Label of the y axis (say which accuracy the values are).

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> plot_accuracy_over_experiences({"finetune": [0.99, 0.6, 0.4], "replay": [0.99, 0.9, 0.85]},
    ...                                os.path.join(tmp.name, "cl.png")).name
    'cl.png'
    >>> tmp.cleanup()
    """
    if not results or all(len(v) == 0 for v in results.values()):
        raise ValueError("results is empty")
    fig = Figure(figsize=(7, 4.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    longest = 0
    top = 0.0
    for i, (name, accs) in enumerate(results.items()):
        ys = _to_numpy(accs).astype(np.float64).reshape(-1)
        if ys.size == 0:
            continue
        xs = np.arange(1, ys.size + 1)
        longest = max(longest, ys.size)
        top = max(top, float(np.nanmax(ys)) if np.isfinite(ys).any() else 0.0)
        ax.plot(xs, ys, marker=markers[i % len(markers)], ms=5, lw=1.8, label=f"{name} (final {ys[-1]:.3g})")
    ax.set_xticks(np.arange(1, longest + 1))
    ax.set_xlim(0.7, longest + 0.3)
    # Fractions get a 0..1 axis and percentages 0..100, so runs of different methods compare at a glance.
    ax.set_ylim(0, 1.02 if top <= 1.0 else max(100.0, top) * 1.02)
    ax.set_xlabel("experience")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Accuracy over experiences")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
