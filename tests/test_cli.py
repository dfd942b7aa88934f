"""The command line end to end on tiny data."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from owlearn.cli import app, parse_classes

runner = CliRunner()


def _folder(root, per_class=12, size=16):
    """An image folder of three easy classes: a bright bar that is horizontal, vertical or diagonal."""
    rng = np.random.default_rng(0)
    for name in ["diag", "horiz", "vert"]:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 40, (size, size)).astype(np.uint8)
            if name == "horiz":
                img[7:9, 2:14] = 255
            elif name == "vert":
                img[2:14, 7:9] = 255
            else:
                np.fill_diagonal(img, 255)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = _folder(tmp / "bars")
    model = tmp / "bars.owl"
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(model), "--epochs", "6",
                                 "--batch-size", "12", "--no-progress", "--checkpoint-dir", str(tmp / "ckpt")])
    assert result.exit_code == 0, result.output
    return tmp, data, model


def test_train_writes_a_model_and_a_checkpoint(trained):
    tmp, _, model = trained
    assert model.exists() and (tmp / "ckpt" / "last.ckpt").exists()
    result = runner.invoke(app, ["info", str(model)])
    assert result.exit_code == 0 and "diag, horiz, vert" in result.output


def test_evaluate_writes_report_and_plots(trained):
    tmp, data, model = trained
    out = tmp / "eval"
    result = runner.invoke(app, ["evaluate", str(model), "--data", str(data), "--split", "train",
                                 "--out-dir", str(out), "--feature-map", "pca"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.9 and metrics["num_images"] == 36
    for png in ["confusion_matrix.png", "feature_map.png", "training_curves.png"]:
        assert (out / png).stat().st_size > 1000


def test_predict_files_and_folders(trained):
    _, data, model = trained
    result = runner.invoke(app, ["predict", str(model), str(data / "vert"), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 12 and sum(line["class"] == "vert" for line in lines) >= 11
    table = runner.invoke(app, ["predict", str(model), str(data / "horiz" / "0.png")])
    assert table.exit_code == 0 and "horiz" in table.output


def test_resume_continues_a_finished_run_without_training(trained):
    tmp, data, model = trained
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp / "again.owl"), "--epochs", "6",
                                 "--batch-size", "12", "--no-progress", "--checkpoint-dir", str(tmp / "ckpt"),
                                 "--resume"])
    assert result.exit_code == 0, result.output


def test_bad_model_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.owl"
    bad.write_bytes(b"nonsense")
    proc = subprocess.run([sys.executable, "-m", "owlearn", "info", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "not a readable owlearn model file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_command_has_help():
    for command in [[], ["train"], ["evaluate"], ["predict"], ["info"], ["demo"], ["data"], ["data", "list"]]:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command


def test_parse_classes():
    assert parse_classes("0-2,5", 10) == [0, 1, 2, 5]
    assert parse_classes(None, 10) is None
    with pytest.raises(Exception, match="outside 0-9"):
        parse_classes("3,12", 10)


def test_demo_runs_end_to_end(tmp_path):
    result = runner.invoke(app, ["demo", "--out-dir", str(tmp_path), "--epochs", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["known_classes"] == [str(d) for d in range(7)]
    assert 0 <= summary["rejection"]["out_rejected"] <= 1 and 0.5 <= summary["rejection"]["auroc"] <= 1
    assert [step.get("added") for step in summary["added_classes"]["steps"]] == [None, "7", "8", "9"]
    assert summary["added_classes"]["steps"][-1]["classes"] == 10
    assert (tmp_path / "digits.owl").exists() and (tmp_path / "feature_map.png").exists()
    assert "Next:" in result.output
