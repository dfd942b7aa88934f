"""Tests of owlearn.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from owlearn import metrics as M

# --------------------------------------------------------------------------------------------------
# closed-set classification
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def labels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    pred = np.where(rng.random(400) < 0.7, y, rng.integers(0, 5, 400))
    return y, pred


def test_accuracy_matches_sklearn_and_accepts_tensors(labels):
    y, pred = labels
    assert M.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert M.accuracy(torch.from_numpy(y), torch.from_numpy(pred)) == pytest.approx(skm.accuracy_score(y, pred))
    assert M.accuracy([1.0, 2.0], [1, 3]) == 0.5  # whole-number floats are labels too


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [([], []), ([0, 1], [0]), ([[0, 1]], [[0, 1]]), ([0.5, 1.0], [0, 1])],
)
def test_accuracy_rejects_bad_input(y_true, y_pred):
    with pytest.raises(ValueError):
        M.accuracy(y_true, y_pred)


def test_confusion_matrix_matches_sklearn_and_keeps_absent_classes(labels):
    y, pred = labels
    cm = M.confusion_matrix(y, pred, num_classes=7)
    assert cm.shape == (7, 7) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=range(7)))
    assert cm[5:].sum() == 0 and cm[:, 5:].sum() == 0


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside 0..2"):
        M.confusion_matrix([0, 1], [0, -1], num_classes=3)
    with pytest.raises(ValueError, match="y_true"):
        M.confusion_matrix([0, 3], [0, 1], num_classes=3)


def test_per_class_report_matches_sklearn(labels):
    y, pred = labels
    rows = M.per_class_report(y, pred, [f"c{i}" for i in range(6)])
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(6), zero_division=0)
    assert [row["name"] for row in rows] == [f"c{i}" for i in range(6)]
    np.testing.assert_allclose([row["precision"] for row in rows], p)
    np.testing.assert_allclose([row["recall"] for row in rows], r)
    np.testing.assert_allclose([row["f1"] for row in rows], f)
    assert [row["support"] for row in rows] == s.tolist()
    assert rows[5] == {"class": 5, "name": "c5", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_rejected_predictions_count_as_misses_not_as_predictions():
    # Class 0: 2 images, one rejected (-1). Class 1: 2 images, both right.
    rows = M.per_class_report([0, 0, 1, 1], [0, -1, 1, 1], ["a", "b"])
    assert rows[0]["recall"] == 0.5 and rows[0]["precision"] == 1.0
    assert rows[1]["recall"] == 1.0 and rows[1]["precision"] == 1.0
    summary = M.classification_summary([0, 0, 1, 1], [0, -1, 1, 1], ["a", "b"])
    assert summary["accuracy"] == 0.75
    assert summary["num_unassigned"] == 1
    assert summary["confusion_matrix"] == [[1, 0], [0, 2]]


def test_classification_summary_is_json_and_matches_sklearn(labels):
    y, pred = labels
    names = ["zero", "one", "two", "three", "four"]
    summary = M.classification_summary(torch.from_numpy(y), pred, names)
    back = json.loads(json.dumps(summary))
    assert back["num_images"] == 400
    assert back["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert back["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert back["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert back["class_names"] == names and len(back["per_class"]) == 5


def test_macro_f1_ignores_classes_absent_from_both_truth_and_predictions():
    # Class 2 never occurs: like scikit-learn, it must not count as an F1 of zero.
    s = M.classification_summary([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b", "c"])
    assert s["macro_f1"] == pytest.approx(skm.f1_score([0, 0, 1, 1], [0, 1, 1, 1], average="macro"))


def test_format_report_lists_every_class_and_the_averages(labels):
    y, pred = labels
    names = ["t-shirt", "trouser", "pullover", "dress", "a-very-long-class-name"]
    text = M.format_report(y, pred, names)
    lines = text.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    for name in names:
        assert any(line.startswith(name) for line in lines)
    acc_line = next(line for line in lines if line.startswith("accuracy"))
    assert f"{skm.accuracy_score(y, pred):.3f}" in acc_line and acc_line.endswith("400")
    assert any(line.startswith("macro avg") for line in lines)
    # Columns line up: every data line has the same length as the header.
    assert {len(line) for line in lines if line and not line.startswith("accuracy")} == {len(lines[0])}


# --------------------------------------------------------------------------------------------------
# open-set rejection
# --------------------------------------------------------------------------------------------------


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    # Rounding creates many ties between and within the two sets.
    pos = np.round(rng.normal(1.0, 1.0, 300), 1)
    neg = np.round(rng.normal(0.0, 1.0, 200), 1)
    expected = skm.roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[pos, neg])
    assert M.auroc(pos, neg) == pytest.approx(expected, abs=1e-12)
    assert M.auroc(torch.tensor(pos), torch.tensor(neg)) == pytest.approx(expected, abs=1e-12)


def test_auroc_extremes_and_bad_input():
    assert M.auroc([2, 3], [0, 1]) == 1.0
    assert M.auroc([0, 1], [2, 3]) == 0.0
    assert M.auroc([1, 1], [1, 1]) == 0.5
    with pytest.raises(ValueError, match="NaN"):
        M.auroc([1.0, float("nan")], [0.0])
    with pytest.raises(ValueError, match="empty"):
        M.auroc([], [0.0])


def test_fpr_at_tpr_hand_example():
    ins = np.arange(1, 21, dtype=float)  # 20 in-distribution scores 1..20
    # 95% of 20 = 19 images: the threshold is the 19th largest score, 2.0 (accepting 2..20).
    assert M.threshold_at_tpr(ins, 0.95) == 2.0
    outs = np.array([0.5, 1.5, 2.0, 2.5, 30.0])  # 2.0 (a tie, accepted), 2.5 and 30 are >= 2
    assert M.fpr_at_tpr(ins, outs) == pytest.approx(3 / 5)
    assert M.fpr_at_tpr(ins, outs, tpr=1.0) == pytest.approx(4 / 5)
    # A tie at the threshold accepts every in-distribution image with that score.
    assert M.threshold_at_tpr([1, 1, 1, 1, 5], 0.5) == 1.0


def test_fpr_at_tpr_equals_first_roc_point_at_or_above_target():
    rng = np.random.default_rng(2)
    pos = np.round(rng.normal(1.5, 1.0, 257), 1)
    neg = np.round(rng.normal(0.0, 1.0, 131), 1)
    fpr, tpr, _ = skm.roc_curve(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos, neg])
    for target in (0.5, 0.8, 0.9, 0.95, 0.99, 1.0):
        idx = np.searchsorted(tpr, target - 1e-12, side="left")
        assert M.fpr_at_tpr(pos, neg, target) == pytest.approx(fpr[idx]), target


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.01])
def test_fpr_at_tpr_rejects_bad_target(tpr):
    with pytest.raises(ValueError, match="tpr"):
        M.fpr_at_tpr([1.0, 2.0], [0.0], tpr=tpr)


def test_rejection_summary_hand_example():
    s = M.rejection_summary(
        in_accept_mask=[True, True, False, True],
        out_accept_mask=torch.tensor([False, True, False, False]),
        in_correct=np.array([True, False, True, True]),
    )
    assert s["num_in"] == 4 and s["num_out"] == 4
    assert s["in_accepted"] == 0.75
    assert s["out_rejected"] == 0.75
    assert s["accepted_accuracy"] == pytest.approx(2 / 3)
    assert s["closed_set_accuracy"] == 0.75
    assert s["accepted_correct"] == 0.5
    json.dumps(s)


def test_rejection_summary_undefined_values_are_none():
    s = M.rejection_summary([False, False], [], in_correct=[1, 0])
    assert s["in_accepted"] == 0.0
    assert s["out_rejected"] is None  # no OOD images
    assert s["accepted_accuracy"] is None  # nothing accepted
    assert M.rejection_summary([True], [True])["accepted_accuracy"] is None  # no in_correct
    with pytest.raises(ValueError):
        M.rejection_summary([True, False], [False], in_correct=[True])
    with pytest.raises(ValueError, match="boolean"):
        M.rejection_summary([0.3], [1])


# --------------------------------------------------------------------------------------------------
# clustering
# --------------------------------------------------------------------------------------------------


def test_hungarian_accuracy_of_a_permuted_labelling_is_one():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 10, 500)
    perm = rng.permutation(10) + 100  # cluster ids need not be 0..K-1
    acc, mapping = M.hungarian_accuracy(y, perm[y])
    assert acc == 1.0
    assert mapping == {int(perm[k]): k for k in range(10)}


def test_hungarian_accuracy_hand_example():
    y = [0, 0, 0, 1, 1, 1, 2, 2]
    c = [1, 1, 0, 0, 0, 2, 2, 2]
    # Best one-to-one: 1->0 (2 hits), 0->1 (2 hits), 2->2 (2 hits) = 6/8.
    acc, mapping = M.hungarian_accuracy(y, c)
    assert acc == pytest.approx(6 / 8)
    assert mapping == {0: 1, 1: 0, 2: 2}


def test_hungarian_accuracy_with_more_clusters_than_classes():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    c = [0, 0, 1, 1, 2, 2, 2, 3]  # class 0 split in two clusters, class 1 mostly in cluster 2
    acc, mapping = M.hungarian_accuracy(y, c)
    assert acc == pytest.approx(5 / 8)  # 0->0 (2) + 2->1 (3); clusters 1 and 3 are left over
    assert mapping[2] == 1 and sorted(mapping.values()).count(-1) == 2
    acc_m2o, mapping_m2o = M.hungarian_accuracy(y, c, many_to_one=True)
    assert acc_m2o == 1.0 and mapping_m2o == {0: 0, 1: 0, 2: 1, 3: 1}


def test_hungarian_accuracy_with_fewer_clusters_than_classes():
    acc, mapping = M.hungarian_accuracy([0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1])
    assert acc == pytest.approx(4 / 6)
    assert mapping[1] == 2 and mapping[0] in (0, 1)


def test_nmi_and_ari_wrap_sklearn():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 300)
    c = np.where(rng.random(300) < 0.6, y, rng.integers(0, 6, 300))
    assert M.nmi(y, c) == pytest.approx(skm.normalized_mutual_info_score(y, c))
    assert M.ari(y, c) == pytest.approx(skm.adjusted_rand_score(y, c))
    assert M.nmi(y, (y + 1) % 4) == pytest.approx(1.0) and M.ari(torch.tensor(y), (y + 1) % 4) == 1.0


# --------------------------------------------------------------------------------------------------
# continual learning
# --------------------------------------------------------------------------------------------------

NAN = float("nan")
# R[i, j]: accuracy on experience j after training on experiences 0..i.
R3 = np.array(
    [
        [0.90, NAN, NAN],
        [0.95, 0.80, NAN],  # experience 1 helped experience 0 for a while
        [0.50, 0.70, 0.90],
    ]
)


def test_continual_metrics_on_a_hand_matrix():
    assert M.average_accuracy(R3) == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert M.average_incremental_accuracy(R3) == pytest.approx((0.9 + 0.875 + 0.7) / 3)
    # Forgetting: best earlier accuracy minus final, over experiences 0 and 1: (0.95-0.5 + 0.8-0.7) / 2.
    assert M.forgetting(R3) == pytest.approx(0.275)
    # BWT: final minus just-after-training, over experiences 0 and 1: (0.5-0.9 + 0.7-0.8) / 2.
    assert M.backward_transfer(R3) == pytest.approx(-0.25)


def test_continual_metrics_edge_cases():
    assert math.isnan(M.forgetting([[0.9]])) and math.isnan(M.backward_transfer([[0.9]]))
    assert M.average_accuracy([[0.9]]) == 0.9
    # Values above the diagonal (evaluated before training) do not change ACC or BWT.
    full = np.nan_to_num(R3, nan=0.1)
    assert M.backward_transfer(full) == M.backward_transfer(R3)
    assert M.average_accuracy(full) == M.average_accuracy(R3)
    with pytest.raises(ValueError, match="square"):
        M.average_accuracy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="missing"):
        M.forgetting([[0.9, NAN], [NAN, 0.8]])


def test_accuracy_matrix_collects_rows_and_summarises():
    m = M.AccuracyMatrix(3)
    assert m.summary()["num_experiences"] == 0
    m.record(0, [0.90])
    m.record(1, [0.95, 0.80])
    partial = m.summary()
    assert partial["num_experiences"] == 2
    assert partial["backward_transfer"] == pytest.approx(0.05)
    m.record(2, [0.50, 0.70, 0.90])
    s = json.loads(json.dumps(m.summary()))
    assert s["matrix"][0] == [0.9, None, None]
    assert s["forgetting"] == pytest.approx(M.forgetting(R3))
    assert s["average_incremental_accuracy"] == pytest.approx(M.average_incremental_accuracy(R3))
    with pytest.raises(ValueError):
        m.record(2, [0.5])  # after experience 2 all three must be given
    with pytest.raises(IndexError):
        m.record(3, [0.1, 0.2, 0.3])
