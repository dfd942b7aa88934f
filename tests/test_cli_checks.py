"""The command line refuses mistakes with a message that names the option, before the work they would spoil."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from _cli import quick_cluster
from _cli import said as _said
from owlearn.cli import app

runner = CliRunner()


def _bars(root, per_class=12, sizes=(16,)):
    """Three classes of bright bars (horizontal, vertical, diagonal), each image of one of ``sizes``."""
    rng = np.random.default_rng(0)
    for name in ["diag", "horiz", "vert"]:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = sizes[i % len(sizes)]
            img = rng.integers(0, 40, (size, size)).astype(np.uint8)
            mid, lo, hi = size // 2, size // 8, size - size // 8
            if name == "horiz":
                img[mid - 1:mid + 1, lo:hi] = 255
            elif name == "vert":
                img[lo:hi, mid - 1:mid + 1] = 255
            else:
                np.fill_diagonal(img, 255)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _train(data, out, *options):
    return runner.invoke(app, ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "12",
                               "--no-progress", *options])


@pytest.mark.parametrize("options,said", [
    (["--widths", "8"], "the layers detector reads the network's last two stages, and this network has 1"),
    (["--widths", "8", "--detector", "knn", "--gaussian"], "Gaussian features 'layers' read the stages after"),
    (["--alpha", "0"], "radius alpha must be a positive number, got 0.0"),
    (["--lr", "inf"], "lr must be a finite number ≥ 0, got inf"),
    (["--batch-size", "1", "--detector", "none"], "a training step of 1 image(s) is too small for this network's"),
])
def test_train_refuses_what_would_fail_only_after_training(options, said, tmp_path):
    out = tmp_path / "m.owl"
    result = runner.invoke(app, ["train", "--out", str(out), "--epochs", "1", "--no-progress", *options])
    assert result.exit_code == 1 and said in _said(result), result.output
    assert "epoch 1/1" not in result.output and not out.exists()  # refused before any training


def test_a_diverging_run_is_one_line_not_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "owlearn", "train", "--lr", "1e6", "--head", "linear", "--epochs", "1",
                           "--detector", "none", "--no-progress", "--out", str(tmp_path / "m.owl")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "try a lower learning rate" in proc.stderr


def test_folders_of_mixed_sizes_are_resized_by_image_size(tmp_path):
    data = _bars(tmp_path / "bars", sizes=(16, 20))
    result = _train(data, tmp_path / "m.owl", "--detector", "none")
    assert result.exit_code == 1 and "--image-size on the command line" in _said(result)
    result = _train(data, tmp_path / "m.owl", "--detector", "none", "--image-size", "16")
    assert result.exit_code == 0, result.output
    # evaluate reads a folder at the size the model takes, whatever the images' own
    result = runner.invoke(app, ["evaluate", str(tmp_path / "m.owl"), "--data", str(data), "--split", "all",
                                 "--out-dir", str(tmp_path / "eval"), "--feature-map", "none"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["num_images"] == 36
    result = runner.invoke(app, ["cluster", str(data), "--clusters", "3", "--epochs", "1", "--restart-epochs", "0",
                                 "--batch-size", "36", "--sub-heads", "1", "--out", str(tmp_path / "cl"),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--image-size", "16", "--out", str(tmp_path / "d.owl")])
    assert result.exit_code == 2 and "digits is a registered dataset" in _said(result)


def test_a_file_where_a_folder_is_expected_is_named(tmp_path):
    a_file = tmp_path / "a.owl"
    a_file.write_text("x")
    for args in (["data", "list"], ["train"], ["cluster", "digits"], ["continual"]):
        result = runner.invoke(app, [*args, "--data-dir", str(a_file)])
        assert result.exit_code == 2 and f"{a_file} is a file, not a folder" in _said(result), (args, result.output)
    result = runner.invoke(app, ["train", "--checkpoint-dir", str(a_file), "--out", str(tmp_path / "m.owl")])
    assert result.exit_code == 2 and "--checkpoint-dir" in _said(result) and "is a file" in _said(result)


@pytest.mark.parametrize("options,said", [
    (["--class-order", "1,0", "--order-seed", "3"], "give either a class order or a seed to draw one, not both"),
    (["--strategy", "icarl", "--memory-size", "5"],
     "icarl needs at least one exemplar of each class from each experience: a memory of 5"),
    (["--class-order", "0,1,2", "--experiences", "4"], "cannot split 3 classes into 4 experiences"),
])
def test_continual_refuses_impossible_settings_before_training(options, said, tmp_path):
    result = runner.invoke(app, ["continual", "--scenario", "class-incremental", "--data", "digits", "--backbone",
                                 "convnet", "--epochs", "1", "--out", str(tmp_path / "cl"), "--no-progress", *options])
    assert result.exit_code in (1, 2) and said in _said(result), result.output
    assert not (tmp_path / "cl" / "continual.json").exists()


def test_simplenet_on_small_images_points_to_the_convnet(tmp_path):
    result = runner.invoke(app, ["continual", "--scenario", "class-incremental", "--data", "digits", "--out",
                                 str(tmp_path / "cl"), "--no-progress"])
    assert result.exit_code == 1 and "the convnet backbone takes smaller ones" in _said(result)


@pytest.fixture(scope="module")
def bars_model(tmp_path_factory):
    """A Gaussian model of the bars with a kNN detector, and a folder of images unlike any bar."""
    tmp = tmp_path_factory.mktemp("checks")
    data = _bars(tmp / "bars", per_class=24)
    model = tmp / "bars.owl"
    result = _train(data, model, "--epochs", "6", "--gaussian", "--detector", "knn", "--calibration-share", "0.25",
                    "--accept-rate", "0.95")
    assert result.exit_code == 0, result.output
    other = tmp / "other"
    other.mkdir()
    for i in range(12):
        img = (np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8) if i % 2 else np.full((16, 16), 255, np.uint8)
        img[i % 16] = 0
        Image.fromarray(img).save(other / f"{i}.png")
    return tmp, data, model, other


def test_discover_checks_its_names_before_grouping_and_repeats_the_grouping_options(bars_model, tmp_path):
    _, data, model, other = bars_model
    for names, said in [(["0=x", "0=y"], "group 0 is named twice ('x' and 'y')"),
                        (["0=vert"], "already knows a class named 'vert'"),
                        (["0=x", "1=x"], "two groups are given the same name")]:
        result = runner.invoke(app, ["discover", str(model), str(other), "--out", str(tmp_path / "never"),
                                     *[f"--name={n}" for n in names]])
        assert result.exit_code == 2 and said in _said(result), (names, result.output)
        assert not (tmp_path / "never").exists()  # refused before any grouping
    result = runner.invoke(app, ["discover", str(model), str(other), "--groups", "2", "--seed", "3",
                                 "--out", str(tmp_path / "found")])
    assert result.exit_code == 0, result.output
    assert f"--groups 2 --seed 3 --out {tmp_path / 'found'} --name GROUP=NAME" in _said(result)
    spaced = tmp_path / "new photos"
    spaced.mkdir()
    for f in other.iterdir():
        (spaced / f.name).write_bytes(f.read_bytes())
    result = runner.invoke(app, ["discover", str(model), str(spaced), "--groups", "2", "--out", str(tmp_path / "f2")])
    assert result.exit_code == 0 and f"'{spaced}'" in _said(result)  # quoted: safe to paste


def test_add_class_refuses_a_taken_name_and_counts_each_image_once(bars_model, tmp_path):
    _, data, model, other = bars_model
    copy = tmp_path / "m.owl"
    copy.write_bytes(model.read_bytes())
    result = runner.invoke(app, ["add-class", str(copy), str(other), "--name", " vert "])
    assert result.exit_code == 2 and "already knows a class named 'vert'" in _said(result)
    result = runner.invoke(app, ["add-class", str(copy), str(other), str(other), str(other / "0.png"),
                                 "--name", "check/board"])  # a slash is fine outside URLs
    assert result.exit_code == 0, result.output
    assert "from 12 images" in _said(result)


def test_predict_explains_the_score_and_each_added_class_threshold(bars_model, tmp_path):
    _, data, model, other = bars_model
    copy = tmp_path / "m.owl"
    copy.write_bytes(model.read_bytes())
    assert runner.invoke(app, ["add-class", str(copy), str(other), "--name", "board"]).exit_code == 0
    result = runner.invoke(app, ["predict", str(copy), str(other / "1.png"), str(data / "vert" / "0.png")])
    assert result.exit_code == 0, result.output
    said = _said(result)
    assert "higher = more like the known classes" in said and "that class's own: board" in said


def test_discover_skips_an_empty_group_and_refuses_to_name_it(bars_model, tmp_path, monkeypatch):
    import owlearn.discover as discover

    _, _, model, other = bars_model
    n = len(list(other.iterdir()))

    def one_group_of_two(model, batch, **_):  # as IIC may leave: every image in group 0, group 1 empty
        return discover.Discovery(np.arange(n), np.zeros(n, dtype=np.int64), 2, "iic", None, {})

    monkeypatch.setattr(discover, "discover", one_group_of_two)
    result = runner.invoke(app, ["discover", str(model), str(other), "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    assert "Empty groups (no sheet): 1" in _said(result)
    assert (tmp_path / "g" / "group-00.png").exists() and not (tmp_path / "g" / "group-01.png").exists()
    copy = tmp_path / "m.owl"
    copy.write_bytes(model.read_bytes())
    result = runner.invoke(app, ["discover", str(copy), str(other), "--out", str(tmp_path / "g"), "--name", "1=x"])
    assert result.exit_code == 2 and "group(s) [1] are empty" in _said(result)


def test_clusters_left_without_a_class_are_reported_as_unmatched(tmp_path):
    data = _bars(tmp_path / "bars", per_class=8)
    out = tmp_path / "clusters"
    result = runner.invoke(app, quick_cluster(data, out, clusters=6, epochs=2))
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    named = [v for v in metrics["mapping"].values() if v is not None]
    assert len(named) <= 3 and set(named) <= {"diag", "horiz", "vert"}  # no surplus cluster named after a class
    unmatched = [c for c, v in metrics["mapping"].items() if v is None]
    sizes = metrics["cluster_sizes"]
    assert metrics["unmatched_images"] == sum(sizes[int(c)] for c in unmatched)
