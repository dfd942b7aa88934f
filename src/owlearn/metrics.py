"""Evaluation metrics: closed-set classification, open-set rejection, clustering and continual learning.

Every function takes array-likes (lists, numpy arrays or torch tensors on any device) and returns plain
Python numbers, numpy arrays or JSON-able dicts, so results can go straight into a report or a log.

Conventions
-----------
* Labels are integer class indices ``0 .. K-1``.
* Rejection scores are "normality" scores: **higher means more in-distribution**. In-distribution images
  are the positive class of the open-set metrics (:func:`auroc`, :func:`fpr_at_tpr`).
* An image is *accepted* at threshold ``t`` when ``score >= t`` (the convention of
  :func:`sklearn.metrics.roc_curve`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "AccuracyMatrix",
    "accuracy",
    "ari",
    "auroc",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "classification_summary",
    "confusion_matrix",
    "forgetting",
    "format_report",
    "fpr_at_tpr",
    "hungarian_accuracy",
    "nmi",
    "per_class_report",
    "rejection_summary",
    "threshold_at_tpr",
]


# --------------------------------------------------------------------------------------------------
# input helpers
# --------------------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    """Convert a list, numpy array or torch tensor (any device, with or without grad) to numpy."""
    # Duck-typed so that this module never imports torch: metrics stay usable in light tools.
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        # Float labels that are whole numbers (e.g. from a float tensor) are accepted; 0.5 is not.
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _label_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    return t, p


def _scores(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x).astype(np.float64, copy=False).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(arr).any():
        # A NaN score has no place in the ranking; silently dropping it would inflate the metric.
        raise ValueError(f"{name} contains NaN")
    return arr


def _mask(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x).reshape(-1)
    if arr.dtype != np.bool_:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be a boolean mask")
        arr = arr.astype(bool)
    return arr


# --------------------------------------------------------------------------------------------------
# closed-set classification
# --------------------------------------------------------------------------------------------------


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the true label.

    Parameters
    ----------
    y_true, y_pred
        Integer labels of shape ``(N,)``.

    Returns
    -------
    float
        Accuracy in ``[0, 1]``.

    Raises
    ------
    ValueError
        If the inputs are empty or differ in length.

    Examples
    --------
    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    t, p = _label_pair(y_true, y_pred)
    if t.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Count matrix ``C[i, j]`` = number of images of true class ``i`` predicted as class ``j``.

    Parameters
    ----------
    y_true, y_pred
        Integer labels in ``0 .. num_classes-1`` of shape ``(N,)``.
    num_classes
        Number of classes ``K``; classes absent from the data still get a row and a column.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``(K, K)``; rows are true classes, columns predictions.

    Raises
    ------
    ValueError
        If a label lies outside ``0 .. K-1`` (e.g. ``-1`` for "rejected"; filter those out first, or use
        :func:`per_class_report`, which counts them as misses).

    Examples
    --------
    >>> confusion_matrix([0, 1, 1], [0, 0, 1], num_classes=2).tolist()
    [[1, 0], [1, 1]]
    """
    t, p = _label_pair(y_true, y_pred)
    k = int(num_classes)
    if k <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = (arr < 0) | (arr >= k)
        if bad.any():
            raise ValueError(f"{name} has labels outside 0..{k - 1}: {np.unique(arr[bad])[:10].tolist()}")
    # One bincount over the flattened (true, pred) index is far faster than a Python loop.
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _per_class_counts(t: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, number of predictions and support per class; out-of-range predictions are misses."""
    bad = (t < 0) | (t >= k)
    if bad.any():
        raise ValueError(f"y_true has labels outside 0..{k - 1}: {np.unique(t[bad])[:10].tolist()}")
    support = np.bincount(t, minlength=k)[:k]
    in_range = (p >= 0) & (p < k)
    predicted = np.bincount(p[in_range], minlength=k)[:k]
    tp = np.bincount(t[t == p], minlength=k)[:k]
    return tp, predicted, support


def per_class_report(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class.

    Predictions outside ``0 .. K-1`` (for example ``-1`` for an image the model rejected) are allowed:
    they count as a miss for the true class and as a prediction of no class. A ratio whose denominator is
    zero (a class never predicted, or absent from ``y_true``) is reported as ``0.0``, as scikit-learn does.

    Parameters
    ----------
    y_true, y_pred
        Integer labels of shape ``(N,)``.
    class_names
        Name of each class; its length fixes ``K``.

    Returns
    -------
    list of dict
        One dict per class, in class order, with keys ``class`` (index), ``name``, ``precision``,
        ``recall``, ``f1`` (floats) and ``support`` (int, number of true images).

    Examples
    --------
    >>> rows = per_class_report([0, 0, 1, 1], [0, 1, 1, 1], ["cat", "dog"])
    >>> rows[1]["name"], rows[1]["precision"], rows[1]["recall"], rows[1]["support"]
    ('dog', 0.6666666666666666, 1.0, 2)
    """
    t, p = _label_pair(y_true, y_pred)
    names = [str(n) for n in class_names]
    tp, predicted, support = _per_class_counts(t, p, len(names))
    rows = []
    for c, name in enumerate(names):
        precision = tp[c] / predicted[c] if predicted[c] else 0.0
        recall = tp[c] / support[c] if support[c] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "class": c,
                "name": name,
                "precision": float(precision),
                "recall": float(recall),
                "f1": float(f1),
                "support": int(support[c]),
            }
        )
    return rows


def _macro_f1(rows: list[dict[str, Any]], t: np.ndarray, p: np.ndarray) -> float:
    # Average over classes that occur in y_true or y_pred (scikit-learn's default): a class absent from a
    # test subset and never predicted says nothing about the model and must not pull the mean down.
    present = set(np.unique(t).tolist()) | set(np.unique(p).tolist())
    f1s = [r["f1"] for r in rows if r["class"] in present]
    return float(np.mean(f1s)) if f1s else 0.0


def format_report(y_true: Any, y_pred: Any, class_names: Sequence[str], digits: int = 3) -> str:
    """A plain-text table of :func:`per_class_report` with accuracy and macro/weighted averages.

    Parameters
    ----------
    y_true, y_pred
        Integer labels of shape ``(N,)``.
    class_names
        Name of each class.
    digits
        Decimal places of the ratios.

    Returns
    -------
    str
        A table with one line per class, ready to print (no trailing newline).

    Examples
    --------
    >>> print(format_report([0, 0, 1, 1], [0, 1, 1, 1], ["cat", "dog"], digits=2))
    class         precision    recall        f1  support
    cat                1.00      0.50      0.67        2
    dog                0.67      1.00      0.80        2
    <BLANKLINE>
    accuracy                               0.75        4
    macro avg          0.83      0.75      0.73        4
    weighted avg       0.83      0.75      0.73        4
    """
    t, p = _label_pair(y_true, y_pred)
    rows = per_class_report(t, p, class_names)
    total = int(sum(r["support"] for r in rows))
    labels = [r["name"] for r in rows] + ["weighted avg"]
    w = max(12, *(len(s) for s in labels)) + 1
    cw = max(digits + 3, 9)
    header = f"{'class':<{w}} {'precision':>{cw}} {'recall':>{cw}} {'f1':>{cw}} {'support':>8}"

    def line(name: str, prec: float | None, rec: float | None, f1: float, support: int) -> str:
        ps = f"{prec:.{digits}f}" if prec is not None else ""
        rs = f"{rec:.{digits}f}" if rec is not None else ""
        return f"{name:<{w}} {ps:>{cw}} {rs:>{cw}} {f1:>{cw}.{digits}f} {support:>8d}"

    out = [header]
    out += [line(r["name"], r["precision"], r["recall"], r["f1"], r["support"]) for r in rows]
    out.append("")
    out.append(line("accuracy", None, None, float(np.mean(t == p)) if t.size else 0.0, total))
    present = [r for r in rows if r["class"] in set(np.unique(t).tolist()) | set(np.unique(p).tolist())]
    if present:
        mean = {k: float(np.mean([r[k] for r in present])) for k in ("precision", "recall", "f1")}
        out.append(line("macro avg", mean["precision"], mean["recall"], mean["f1"], total))
    if total:
        wavg = {k: sum(r[k] * r["support"] for r in rows) / total for k in ("precision", "recall", "f1")}
        out.append(line("weighted avg", wavg["precision"], wavg["recall"], wavg["f1"], total))
    return "\n".join(s.rstrip() for s in out)


def classification_summary(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Everything about a closed-set evaluation in one JSON-able dict.

    Parameters
    ----------
    y_true, y_pred
        Integer labels of shape ``(N,)``. Predictions outside ``0 .. K-1`` (such as ``-1`` for
        "rejected") count as errors and are left out of the confusion matrix; ``num_unassigned`` says how
        many there were.
    class_names
        Name of each class.

    Returns
    -------
    dict
        ``num_images``, ``accuracy``, ``macro_f1`` (over classes present in ``y_true`` or ``y_pred``),
        ``per_class`` (:func:`per_class_report`), ``class_names``, ``confusion_matrix`` (nested lists,
        rows = true class) and ``num_unassigned``.

    Examples
    --------
    >>> s = classification_summary([0, 1, 1], [0, 1, 0], ["a", "b"])
    >>> round(s["accuracy"], 3), s["confusion_matrix"]
    (0.667, [[1, 0], [1, 1]])
    """
    t, p = _label_pair(y_true, y_pred)
    names = [str(n) for n in class_names]
    k = len(names)
    rows = per_class_report(t, p, names)
    in_range = (p >= 0) & (p < k)
    cm = confusion_matrix(t[in_range], p[in_range], k)
    return {
        "num_images": int(t.size),
        "accuracy": accuracy(t, p) if t.size else None,
        "macro_f1": _macro_f1(rows, t, p),
        "per_class": rows,
        "class_names": names,
        "confusion_matrix": cm.tolist(),
        "num_unassigned": int((~in_range).sum()),
    }


# --------------------------------------------------------------------------------------------------
# open-set rejection
# --------------------------------------------------------------------------------------------------


def auroc(in_scores: Any, out_scores: Any) -> float:
    """Area under the ROC curve of separating in-distribution from out-of-distribution images.

    In-distribution images are the positives and a higher score means "more normal". The value is the
    probability that a random in-distribution image scores higher than a random out-of-distribution one,
    ties counting one half (the Mann-Whitney U statistic), and equals
    :func:`sklearn.metrics.roc_auc_score` on the concatenated scores.

    Parameters
    ----------
    in_scores
        Scores of in-distribution images, shape ``(N,)``.
    out_scores
        Scores of out-of-distribution images, shape ``(M,)``.

    Returns
    -------
    float
        AUROC in ``[0, 1]``; 0.5 is chance, 1.0 a perfect separation.

    Examples
    --------
    >>> auroc([0.9, 0.8, 0.4], [0.5, 0.1])
    0.8333333333333334
    """
    pos = _scores(in_scores, "in_scores")
    neg = _scores(out_scores, "out_scores")
    # Rank-sum formula: O((N+M) log(N+M)) and exact with ties (average ranks give the 1/2 credit).
    from scipy.stats import rankdata  # imported here: scipy.stats costs ~1.5 s and ~40 MB to import

    ranks = rankdata(np.concatenate([pos, neg]))
    n, m = pos.size, neg.size
    u = ranks[:n].sum() - n * (n + 1) / 2.0
    return float(u / (n * m))


def threshold_at_tpr(in_scores: Any, tpr: float = 0.95) -> float:
    """The highest threshold that accepts at least a fraction ``tpr`` of the in-distribution images.

    An image is accepted when ``score >= threshold``. The threshold is the ``ceil(tpr * N)``-th largest
    in-distribution score, so when several images share that score all of them are accepted and the
    realised true-positive rate can exceed ``tpr`` (the same point :func:`sklearn.metrics.roc_curve`
    reports first at or above ``tpr``).

    Parameters
    ----------
    in_scores
        Scores of in-distribution images (for calibration, use held-out images).
    tpr
        Target share of in-distribution images to accept, in ``(0, 1]``.

    Returns
    -------
    float
        The threshold.

    Examples
    --------
    >>> threshold_at_tpr([0.1, 0.2, 0.3, 0.4, 0.5], tpr=0.8)
    0.2
    """
    pos = _scores(in_scores, "in_scores")
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    # The tiny slack keeps 0.95 * 20 = 19.000000000000004 from becoming 20 through floating-point noise.
    k = max(1, math.ceil(tpr * pos.size - 1e-9))
    return float(np.sort(pos)[::-1][k - 1])


def fpr_at_tpr(in_scores: Any, out_scores: Any, tpr: float = 0.95) -> float:
    """Share of out-of-distribution images accepted when a share ``tpr`` of in-distribution ones is.

    Definition: with ``t = threshold_at_tpr(in_scores, tpr)`` (the highest threshold at which the
    fraction of in-distribution scores ``>= t`` is at least ``tpr``), the result is the fraction of
    out-of-distribution scores ``>= t``. Tied scores are never split: every image with score ``t`` is
    accepted. This is ``fpr[np.searchsorted(tpr_curve, tpr)]`` on the curve of
    :func:`sklearn.metrics.roc_curve`; "FPR95" in the OOD literature is ``fpr_at_tpr(..., 0.95)``.

    Parameters
    ----------
    in_scores
        Scores of in-distribution images (positives, higher = more normal).
    out_scores
        Scores of out-of-distribution images.
    tpr
        Target true-positive rate in ``(0, 1]``.

    Returns
    -------
    float
        False-positive rate in ``[0, 1]``; lower is better.

    Examples
    --------
    >>> fpr_at_tpr([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1.5, 2.5, 9.5, 11], tpr=0.8)
    0.5
    """
    neg = _scores(out_scores, "out_scores")
    t = threshold_at_tpr(in_scores, tpr)
    return float(np.mean(neg >= t))


def rejection_summary(in_accept_mask: Any, out_accept_mask: Any, in_correct: Any = None) -> dict[str, Any]:
    """How well a rejection rule keeps known images and turns away unknown ones.

    Parameters
    ----------
    in_accept_mask
        Boolean ``(N,)``: which in-distribution images were accepted.
    out_accept_mask
        Boolean ``(M,)``: which out-of-distribution images were accepted (wrongly). May be empty.
    in_correct
        Optional boolean ``(N,)``: whether the classifier's label for each in-distribution image is right.

    Returns
    -------
    dict
        JSON-able; ``None`` marks a value that is undefined (e.g. no image accepted):

        * ``num_in``, ``num_out``: counts;
        * ``in_accepted``: share of in-distribution images accepted (true-positive rate);
        * ``out_rejected``: share of out-of-distribution images rejected (true-negative rate);
        * ``accepted_accuracy``: accuracy on the accepted in-distribution images (with ``in_correct``);
        * ``closed_set_accuracy``: accuracy on all in-distribution images, ignoring rejection;
        * ``accepted_correct``: share of all in-distribution images that are accepted *and* correct.

    Examples
    --------
    >>> s = rejection_summary([True, True, False, True], [False, True], in_correct=[True, False, True, True])
    >>> s["in_accepted"], s["out_rejected"], round(s["accepted_accuracy"], 3)
    (0.75, 0.5, 0.667)
    """
    acc_in = _mask(in_accept_mask, "in_accept_mask")
    acc_out = _mask(out_accept_mask, "out_accept_mask")
    n, m = int(acc_in.size), int(acc_out.size)
    summary: dict[str, Any] = {
        "num_in": n,
        "num_out": m,
        "in_accepted": float(acc_in.mean()) if n else None,
        "out_rejected": float(1.0 - acc_out.mean()) if m else None,
        "accepted_accuracy": None,
        "closed_set_accuracy": None,
        "accepted_correct": None,
    }
    if in_correct is not None:
        correct = _mask(in_correct, "in_correct")
        if correct.shape != acc_in.shape:
            raise ValueError(f"in_correct has {correct.size} entries but in_accept_mask has {n}")
        if n:
            summary["closed_set_accuracy"] = float(correct.mean())
            summary["accepted_correct"] = float((correct & acc_in).mean())
        if acc_in.any():
            summary["accepted_accuracy"] = float(correct[acc_in].mean())
    return summary


# --------------------------------------------------------------------------------------------------
# clustering
# --------------------------------------------------------------------------------------------------


def hungarian_accuracy(y_true: Any, clusters: Any, *, many_to_one: bool = False) -> tuple[float, dict[int, int]]:
    """Clustering accuracy under the best matching of clusters to classes.

    Builds the contingency table ``W[c, k]`` = number of images of cluster ``c`` with class ``k`` and
    finds the mapping that maximises the number of matches with
    :func:`scipy.optimize.linear_sum_assignment`. The mapping is one-to-one: with more clusters than
    classes the surplus clusters map to ``-1`` and their images count as errors (the usual convention of
    DEC and generalized category discovery, so that splitting data into many small clusters is not
    rewarded); with fewer clusters than classes some classes are left without a cluster.
    ``many_to_one=True`` instead maps every cluster to its majority class (the "over-clustering"
    evaluation), which can only raise the accuracy.

    Parameters
    ----------
    y_true
        True class labels, shape ``(N,)`` (any integers).
    clusters
        Cluster ids, shape ``(N,)`` (any integers, e.g. ``-1`` for a noise cluster is just another id).
    many_to_one
        Map each cluster to its majority class instead of a one-to-one assignment.

    Returns
    -------
    accuracy : float
        Share of images whose cluster maps to their class.
    mapping : dict of int to int
        Cluster id -> class label, ``-1`` for a cluster left unmatched.

    Examples
    --------
    >>> acc, mapping = hungarian_accuracy([0, 0, 1, 1, 2], [5, 5, 3, 3, 4])
    >>> acc, mapping
    (1.0, {3: 1, 4: 2, 5: 0})
    """
    t, c = _label_pair(y_true, clusters)
    if t.size == 0:
        raise ValueError("hungarian_accuracy of an empty set is undefined")
    classes, t_idx = np.unique(t, return_inverse=True)
    cluster_ids, c_idx = np.unique(c, return_inverse=True)
    w = np.zeros((cluster_ids.size, classes.size), dtype=np.int64)
    np.add.at(w, (c_idx, t_idx), 1)
    if many_to_one:
        best = w.argmax(axis=1)
        mapping = {int(cid): int(classes[k]) for cid, k in zip(cluster_ids, best, strict=True)}
        matched = int(w[np.arange(cluster_ids.size), best].sum())
    else:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(w, maximize=True)
        mapping = {int(cid): -1 for cid in cluster_ids}
        mapping.update({int(cluster_ids[r]): int(classes[k]) for r, k in zip(rows, cols, strict=True)})
        matched = int(w[rows, cols].sum())
    return matched / t.size, mapping


def nmi(y_true: Any, clusters: Any) -> float:
    """Normalized mutual information between classes and clusters (arithmetic normalisation).

    A thin wrapper of :func:`sklearn.metrics.normalized_mutual_info_score`; invariant to relabelling.

    Examples
    --------
    >>> nmi([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    from sklearn.metrics import normalized_mutual_info_score

    t, c = _label_pair(y_true, clusters)
    return float(normalized_mutual_info_score(t, c))


def ari(y_true: Any, clusters: Any) -> float:
    """Adjusted Rand index between classes and clusters (0 = chance, 1 = identical partitions).

    A thin wrapper of :func:`sklearn.metrics.adjusted_rand_score`; invariant to relabelling.

    Examples
    --------
    >>> ari([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    from sklearn.metrics import adjusted_rand_score

    t, c = _label_pair(y_true, clusters)
    return float(adjusted_rand_score(t, c))


# --------------------------------------------------------------------------------------------------
# continual learning
# --------------------------------------------------------------------------------------------------
#
# R[i, j] is the accuracy on the test set of experience j measured after training on experiences
# 0..i. Only the lower triangle (j <= i) is used; entries above the diagonal (experiences not trained
# yet) may hold anything, including NaN.


def _acc_matrix(r: Any) -> np.ndarray:
    arr = _to_numpy(r).astype(np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square T x T with T >= 1, got shape {arr.shape}")
    if not np.isfinite(arr[np.tril_indices(arr.shape[0])]).all():
        raise ValueError("accuracy matrix has missing (non-finite) entries on or below the diagonal")
    return arr


def average_accuracy(r: Any) -> float:
    """Mean accuracy over all experiences after training on the last one.

    ``ACC = (1/T) * sum_{j=0}^{T-1} R[T-1, j]``.

    Examples
    --------
    >>> average_accuracy([[0.9, 0.0], [0.7, 0.8]])
    0.75
    """
    a = _acc_matrix(r)
    return float(a[-1].mean())


def average_incremental_accuracy(r: Any) -> float:
    """Mean over training steps of the average accuracy on the experiences seen so far (Rebuffi et al.).

    ``AIA = (1/T) * sum_{i=0}^{T-1} (1/(i+1)) * sum_{j=0}^{i} R[i, j]``.

    Examples
    --------
    >>> average_incremental_accuracy([[0.9, 0.0], [0.7, 0.8]])
    0.825
    """
    a = _acc_matrix(r)
    return float(np.mean([a[i, : i + 1].mean() for i in range(a.shape[0])]))


def forgetting(r: Any) -> float:
    """Average forgetting (Chaudhry et al. 2018): how far each old experience fell from its best.

    ``F = (1/(T-1)) * sum_{j=0}^{T-2} ( max_{i=j}^{T-2} R[i, j] - R[T-1, j] )``: the best is taken from the
    training of experience ``j`` on, never before it (the entries above the diagonal are not read; in a
    domain-incremental stream they can be high, a later domain being solved already in part).
    Positive means forgetting. Returns NaN when ``T == 1`` (there is no old experience).

    Examples
    --------
    >>> round(forgetting([[0.9, 0.0], [0.7, 0.8]]), 3)
    0.2
    >>> round(forgetting([[0.9, 0.95, 0.1], [0.8, 0.7, 0.2], [0.8, 0.6, 0.9]]), 3)  # 0.95 is not read
    0.1
    """
    a = _acc_matrix(r)
    t = a.shape[0]
    if t < 2:
        return float("nan")
    trained = np.where(np.tril(np.ones((t - 1, t - 1), dtype=bool)), a[: t - 1, : t - 1], np.nan)
    best = np.nanmax(trained, axis=0)  # every column has its diagonal entry, so no column is all NaN
    return float(np.mean(best - a[t - 1, : t - 1]))


def backward_transfer(r: Any) -> float:
    """Backward transfer (Lopez-Paz & Ranzato 2017): effect of later training on earlier experiences.

    ``BWT = (1/(T-1)) * sum_{j=0}^{T-2} ( R[T-1, j] - R[j, j] )``.

    Negative means forgetting; positive means later experiences helped earlier ones.
    Returns NaN when ``T == 1``.

    Examples
    --------
    >>> round(backward_transfer([[0.9, 0.0], [0.7, 0.8]]), 3)
    -0.2
    """
    a = _acc_matrix(r)
    t = a.shape[0]
    if t < 2:
        return float("nan")
    return float(np.mean(a[t - 1, : t - 1] - np.diag(a)[: t - 1]))


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


@dataclass
class AccuracyMatrix:
    """Collects ``R[i, j]`` during a continual-learning run and summarises it.

    Parameters
    ----------
    num_experiences
        Number of experiences ``T``; the matrix starts as all-NaN ``T x T``.

    Examples
    --------
    >>> m = AccuracyMatrix(2)
    >>> m.record(0, [0.9])            # after experience 0, evaluated on experience 0
    >>> m.record(1, [0.7, 0.8])       # after experience 1, evaluated on experiences 0 and 1
    >>> s = m.summary()
    >>> s["average_accuracy"], round(s["backward_transfer"], 3)
    (0.75, -0.2)
    """

    num_experiences: int
    values: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.num_experiences < 1:
            raise ValueError(f"num_experiences must be >= 1, got {self.num_experiences}")
        self.values = np.full((self.num_experiences, self.num_experiences), np.nan)

    def record(self, trained_on: int, accuracies: Sequence[float]) -> None:
        """Store the accuracies on experiences ``0 .. len(accuracies)-1`` after training on ``trained_on``.

        ``accuracies`` needs at least ``trained_on + 1`` values (all experiences seen so far); more are
        allowed (evaluation on future experiences, for forward transfer).
        """
        if not 0 <= trained_on < self.num_experiences:
            raise IndexError(f"trained_on={trained_on} outside 0..{self.num_experiences - 1}")
        acc = np.asarray(accuracies, dtype=np.float64).reshape(-1)
        if not trained_on + 1 <= acc.size <= self.num_experiences:
            raise ValueError(
                f"after experience {trained_on} expected {trained_on + 1}..{self.num_experiences} "
                f"accuracies, got {acc.size}"
            )
        self.values[trained_on, : acc.size] = acc

    @property
    def num_recorded(self) -> int:
        """Number of leading training steps with a complete row (the prefix that summaries use)."""
        n = 0
        while n < self.num_experiences and np.isfinite(self.values[n, : n + 1]).all():
            n += 1
        return n

    def summary(self) -> dict[str, Any]:
        """JSON-able metrics over the rows recorded so far (``None`` where undefined).

        Keys: ``num_experiences`` (recorded so far), ``matrix`` (nested lists, ``None`` for missing
        entries), ``average_accuracy``, ``average_incremental_accuracy``, ``forgetting`` and
        ``backward_transfer``.
        """
        n = self.num_recorded
        sub = self.values[:n, :n]
        out: dict[str, Any] = {
            "num_experiences": n,
            "matrix": [[_nan_to_none(float(v)) for v in row] for row in self.values[:n]],
            "average_accuracy": None,
            "average_incremental_accuracy": None,
            "forgetting": None,
            "backward_transfer": None,
        }
        if n:
            out["average_accuracy"] = average_accuracy(sub)
            out["average_incremental_accuracy"] = average_incremental_accuracy(sub)
            out["forgetting"] = _nan_to_none(forgetting(sub))
            out["backward_transfer"] = _nan_to_none(backward_transfer(sub))
        return out
