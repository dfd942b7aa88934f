"""Tests of owlearn.viz: every function writes one valid PNG, atomically."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from threadpoolctl import threadpool_limits

from owlearn import viz


def _assert_png(path: Path, expected: Path) -> tuple[int, int]:
    assert path == expected and path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
        size = im.size
    # Nothing but the PNG itself is left in the folder (no temporary ".part" files).
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    return size


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """200 points in 16-D around four well-separated centres."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, (4, 16))
    y = np.repeat(np.arange(4), 50)
    return (centres[y] + rng.normal(0, 1, (200, 16))).astype(np.float32), y


# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_small(tmp_path, normalize):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    out = viz.plot_confusion_matrix(cm, ["cat", "dog", "bird"], tmp_path / "cm.png", normalize=normalize)
    _assert_png(out, tmp_path / "cm.png")


def test_confusion_matrix_many_classes_grows_and_accepts_str_path(tmp_path):
    rng = np.random.default_rng(0)
    k = 30  # above the 20 classes where cell values are written
    cm = rng.integers(0, 5, (k, k)) + np.diag(rng.integers(20, 50, k))
    cm[3] = 0  # a class without images must not divide by zero
    out = viz.plot_confusion_matrix(torch.tensor(cm), [f"class {i}" for i in range(k)], str(tmp_path / "cm.png"))
    w, h = _assert_png(out, tmp_path / "cm.png")
    assert w > 1000 and h > 1000


def test_confusion_matrix_rejects_mismatched_names(tmp_path):
    with pytest.raises(ValueError, match="class names"):
        viz.plot_confusion_matrix(np.eye(3), ["a", "b"], tmp_path / "cm.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------


def test_feature_map_tsne_with_extra_points_is_fast(tmp_path, blobs):
    x, y = blobs
    ood = np.random.default_rng(1).normal(0, 6, (40, 16))
    start = time.perf_counter()
    # One OpenMP thread: on a busy machine, t-SNE's spinning worker threads can be 5x slower than one.
    with threadpool_limits(limits=1):
        out = viz.plot_feature_map(
            torch.from_numpy(x), torch.from_numpy(y), list("abcd"), tmp_path / "tsne.png", extra={"ood": ood}
        )
    elapsed = time.perf_counter() - start
    _assert_png(out, tmp_path / "tsne.png")
    # Generous bound for two shared CPU cores; typically one to two seconds.
    assert elapsed < 10


def test_feature_map_pca_subsamples_and_draws_unlabeled_points(tmp_path, blobs):
    x, y = blobs
    y = y.copy()
    y[:10] = -1  # unlabeled
    out = viz.plot_feature_map(
        x,
        y,
        list("abcd"),
        tmp_path / "pca.png",
        method="pca",
        max_points=50,
        extra={"a": x[:5], "b": x[5:70]},
    )
    _assert_png(out, tmp_path / "pca.png")


def test_feature_map_many_classes_writes_names_instead_of_legend(tmp_path):
    rng = np.random.default_rng(2)
    y = np.arange(120) % 40
    x = rng.normal(0, 5, (40, 8))[y] + rng.normal(0, 0.5, (120, 8))
    out = viz.plot_feature_map(x, y, [f"c{i}" for i in range(40)], tmp_path / "m.png", method="pca")
    _assert_png(out, tmp_path / "m.png")


def test_feature_map_rejects_bad_input(tmp_path, blobs):
    x, y = blobs
    with pytest.raises(ValueError, match="method"):
        viz.plot_feature_map(x, y, list("abcd"), tmp_path / "m.png", method="umap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extra"):
        viz.plot_feature_map(x, y, list("abcd"), tmp_path / "m.png", extra={"ood": np.zeros((3, 5))})
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        viz.plot_feature_map(bad, y, list("abcd"), tmp_path / "m.png", method="pca")
    assert list(tmp_path.iterdir()) == []


def test_stratified_subsample_keeps_class_shares():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [700, 200, 100])
    idx = viz._stratified_indices(labels, 100, rng)
    assert idx.size == 100 and np.unique(idx).size == 100
    assert np.bincount(labels[idx]).tolist() == [70, 20, 10]
    idx = viz._stratified_indices(np.repeat([0, 1, 2], [5, 5, 1]), 4, rng)
    assert idx.size == 4  # rounding still gives exactly max_points
    assert viz._stratified_indices(labels, 5000, rng).size == 1000  # below the cap: everything


# --------------------------------------------------------------------------------------------------


def test_training_curves_with_missing_values(tmp_path):
    history = [
        {"epoch": e, "loss": 1 / e, "acc": 1 - 0.5 / e, "images_per_s": 5000.0, "lr": 0.1 / e, "note": "x"}
        for e in range(1, 6)
    ]
    for rec in history[::2]:
        rec["val_acc"] = rec["acc"] - 0.05  # validation only every other epoch
    out = viz.plot_training_curves(history, tmp_path / "curves.png")
    _assert_png(out, tmp_path / "curves.png")


def test_training_curves_without_epoch_key_and_bad_history(tmp_path):
    out = viz.plot_training_curves([{"loss": 2.0}, {"loss": 1.0}], tmp_path / "c.png")
    _assert_png(out, tmp_path / "c.png")
    with pytest.raises(ValueError):
        viz.plot_training_curves([], tmp_path / "d.png")
    with pytest.raises(ValueError):
        viz.plot_training_curves([{"epoch": 1, "note": "nothing to plot"}], tmp_path / "d.png")


# --------------------------------------------------------------------------------------------------


def test_score_histograms_and_roc_curves(tmp_path):
    rng = np.random.default_rng(0)
    ins = rng.normal(2, 1, 500)
    outs = {"noise": rng.normal(0, 1, 300), "near": torch.tensor(rng.normal(1, 1, 200))}
    (tmp_path / "h").mkdir()
    (tmp_path / "r").mkdir()
    out = viz.plot_score_histograms(ins, outs, tmp_path / "h" / "hist.png", threshold=0.4)
    _assert_png(out, tmp_path / "h" / "hist.png")
    out = viz.plot_roc_curves(ins, outs, tmp_path / "r" / "roc.png")
    _assert_png(out, tmp_path / "r" / "roc.png")


def test_score_histograms_survive_outliers_and_a_bare_array(tmp_path):
    rng = np.random.default_rng(0)
    ins = np.r_[rng.normal(0, 1, 300), 1e6]
    out = viz.plot_score_histograms(ins, rng.normal(-1, 1, 100), tmp_path / "h.png")
    _assert_png(out, tmp_path / "h.png")
    with pytest.raises(ValueError):
        viz.plot_roc_curves(ins, {}, tmp_path / "r.png")


# --------------------------------------------------------------------------------------------------


def test_contact_sheet_grayscale_with_labels(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (10, 1, 28, 28), dtype=np.uint8)
    labels = [f"label {i} with a rather long caption" for i in range(10)]
    out = viz.contact_sheet(torch.from_numpy(imgs), tmp_path / "g.png", ncols=4, labels=labels)
    w, h = _assert_png(out, tmp_path / "g.png")
    assert w >= 4 * 28 * 3 and h >= 3 * 28 * 3  # 4 columns x 3 rows, enlarged


def test_contact_sheet_rgb_and_three_dimensional_input(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    with Image.open(viz.contact_sheet(rgb, tmp_path / "a" / "rgb.png")) as im:
        assert im.mode == "RGB"
    out = viz.contact_sheet(rgb[:, 0], tmp_path / "b" / "hw.png")  # (N, H, W) grayscale
    _assert_png(out, tmp_path / "b" / "hw.png")


def test_contact_sheet_rejects_bad_images(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        viz.contact_sheet(np.zeros((2, 1, 8, 8), dtype=np.float32), tmp_path / "s.png")
    with pytest.raises(ValueError):
        viz.contact_sheet(np.zeros((2, 2, 8, 8), dtype=np.uint8), tmp_path / "s.png")
    with pytest.raises(ValueError, match="labels"):
        viz.contact_sheet(np.zeros((2, 1, 8, 8), dtype=np.uint8), tmp_path / "s.png", labels=["a"])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------


def test_accuracy_over_experiences(tmp_path):
    results = {"finetune": [0.99, 0.5, 0.33], "replay": np.array([0.99, 0.9]), "ncm": [98.0, 95.0, 93.0]}
    out = viz.plot_accuracy_over_experiences(results, tmp_path / "cl.png")
    _assert_png(out, tmp_path / "cl.png")
    with pytest.raises(ValueError):
        viz.plot_accuracy_over_experiences({}, tmp_path / "x.png")


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------


def test_path_inside_a_file_fails_and_leaves_nothing_behind(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("I am a file")
    with pytest.raises(OSError):
        viz.plot_confusion_matrix(np.eye(2), ["a", "b"], blocker / "cm.png")
    with pytest.raises(OSError):
        viz.contact_sheet(np.zeros((1, 1, 4, 4), dtype=np.uint8), blocker / "s.png")
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-folder"]


def test_failure_while_drawing_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "cm.png"
    viz.plot_confusion_matrix(np.eye(2), ["a", "b"], target)
    before = target.read_bytes()

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a PNG")  # a partial write, then the crash
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        viz.plot_confusion_matrix(np.eye(2) * 3, ["a", "b"], target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]
