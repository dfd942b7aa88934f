"""The command line end to end on tiny data."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from _cli import quick_cluster
from _cli import said as _said
from owlearn.cli import app, parse_classes

runner = CliRunner()


def _folder(root, per_class=24, size=16):
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
                                 "--batch-size", "12", "--no-progress", "--checkpoint-dir", str(tmp / "ckpt"),
                                 "--detector", "knn", "--calibration-share", "0.25", "--accept-rate", "0.95"])
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
    assert metrics["accuracy"] > 0.9 and metrics["num_images"] == 72
    for png in ["confusion_matrix.png", "feature_map.png", "training_curves.png"]:
        assert (out / png).stat().st_size > 1000


def test_predict_files_and_folders(trained):
    _, data, model = trained
    result = runner.invoke(app, ["predict", str(model), str(data / "vert"), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 24 and sum(line["class"] == "vert" for line in lines) >= 20
    assert all("novelty_score" in line for line in lines)
    table = runner.invoke(app, ["predict", str(model), str(data / "horiz" / "0.png")])
    assert table.exit_code == 0 and "horiz" in table.output


def test_resume_continues_a_finished_run_without_training(trained):
    tmp, data, model = trained
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp / "again.owl"), "--epochs", "6",
                                 "--batch-size", "12", "--no-progress", "--checkpoint-dir", str(tmp / "ckpt"),
                                 "--detector", "knn", "--calibration-share", "0.25", "--accept-rate", "0.95",
                                 "--resume"])
    assert result.exit_code == 0, result.output


def _unlike_bars(root, n=20, size=16):
    """Images no bar model has seen: checkerboards and blobs, in one 'class' folder."""
    rng = np.random.default_rng(1)
    (root / "other").mkdir(parents=True)
    for i in range(n):
        if i % 2:
            img = (np.indices((size, size)).sum(0) % 2 * 255).astype(np.uint8)
        else:
            img = np.zeros((size, size), np.uint8)
            cy, cx = rng.integers(4, 12, 2)
            img[max(cy - 3, 0):cy + 3, max(cx - 3, 0):cx + 3] = 255
        Image.fromarray(img).save(root / "other" / f"{i}.png")
    return root


def test_unknown_images_are_refused_and_evaluated(trained):
    tmp, data, model = trained
    ood = _unlike_bars(tmp / "ood")
    result = runner.invoke(app, ["predict", str(model), str(ood), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert sum(line["class"] == "unknown" for line in lines) >= 15
    out = tmp / "eval-ood"
    result = runner.invoke(app, ["evaluate", str(model), "--data", str(data), "--split", "train", "--out-dir",
                                 str(out), "--feature-map", "pca", "--ood", str(ood), "--ood-split", "train"])
    assert result.exit_code == 0, result.output
    ood_metrics = json.loads((out / "ood_metrics.json").read_text())
    (name, r), = ood_metrics["ood"].items()
    assert r["auroc"] > 0.9 and r["out_rejected"] >= 0.75
    assert (out / "roc_curves.png").exists() and (out / "score_histograms.png").exists()


def test_default_detector_reads_the_layers_and_grows_with_add_class(tmp_path):
    from owlearn.model import OwlModel

    data = _folder(tmp_path / "bars")
    model = tmp_path / "bars.owl"
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(model), "--epochs", "6",
                                 "--batch-size", "12", "--no-progress", "--gaussian", "--calibration-share", "0.25",
                                 "--accept-rate", "0.95"])
    assert result.exit_code == 0, result.output
    assert OwlModel.load(model).detector.reads == "layers"
    ood = _unlike_bars(tmp_path / "ood")
    result = runner.invoke(app, ["predict", str(model), str(ood), "--json"])
    assert result.exit_code == 0, result.output
    assert sum(json.loads(line)["class"] == "unknown" for line in result.output.splitlines()) >= 15
    result = runner.invoke(app, ["add-class", str(model), str(ood / "other"), "--name", "other"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(model), str(ood), "--json"])
    answers = [json.loads(line)["class"] for line in result.output.splitlines()]
    assert answers.count("other") >= 15  # the detector learned the new class with the classifier


def test_bad_model_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.owl"
    bad.write_bytes(b"nonsense")
    proc = subprocess.run([sys.executable, "-m", "owlearn", "info", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "not a readable owlearn model file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_under_torchrun_an_error_names_its_process(tmp_path):
    bad = tmp_path / "bad.owl"
    bad.write_bytes(b"nonsense")
    env = {**__import__("os").environ, "WORLD_SIZE": "2", "RANK": "1"}
    proc = subprocess.run([sys.executable, "-m", "owlearn", "info", str(bad)], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("error (process 1 of 2): ")


def test_every_command_has_help():
    for command in [[], ["train"], ["evaluate"], ["predict"], ["info"], ["demo"], ["data"], ["data", "list"]]:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command
        # an on/off flag shows no value to type: `--json <bool>` read as "--json true" fails (typer 0.29)
        assert "<bool>" not in result.output, command


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


def test_train_semi_supervised_with_vat(tmp_path):
    from owlearn.model import OwlModel

    out = tmp_path / "semi.owl"
    result = runner.invoke(app, ["train", "--data", "digits", "--epochs", "1", "--batch-size", "64",
                                 "--labels-per-class", "5", "--vat", "1.0", "--detector", "knn", "--neighbors", "3",
                                 "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "5 labels per class" in result.output
    model = OwlModel.load(out)
    assert model.info["training"]["images"] > 50  # the unlabeled images took part in training


def test_train_warns_that_label_smoothing_weakens_the_detector(tmp_path):
    common = ["train", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--widths", "8,16,24,32",
              "--label-smoothing", "0.1", "--out", str(tmp_path / "m.owl"), "--no-progress"]
    with_detector = runner.invoke(app, [*common, "--detector", "knn", "--neighbors", "3"])
    assert with_detector.exit_code == 0, with_detector.output
    assert "Label smoothing weakens the knn detector" in with_detector.output
    without = runner.invoke(app, [*common, "--detector", "none"])
    assert without.exit_code == 0, without.output
    assert "Label smoothing weakens" not in without.output


def test_train_with_narrower_convnet_widths(tmp_path):
    from owlearn.model import OwlModel

    out = tmp_path / "narrow.owl"
    result = runner.invoke(app, ["train", "--data", "digits", "--epochs", "1", "--batch-size", "64",
                                 "--widths", "8,16,24,32", "--detector", "none", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    net = OwlModel.load(out).network
    assert list(net.spec.backbone_args["widths"]) == [8, 16, 24, 32]
    assert net.backbone.feature_dim == 32
    bad = runner.invoke(app, ["train", "--data", "digits", "--widths", "8,x", "--out", str(out)])
    assert bad.exit_code != 0 and "whole numbers" in bad.output
    other = runner.invoke(app, ["train", "--data", "digits", "--backbone", "simplenet", "--widths", "8",
                                "--out", str(out)])
    assert other.exit_code != 0 and "convnet" in other.output


def test_help_and_dataset_listing_answer_without_importing_torch():
    # PyTorch takes seconds to import; help text and the dataset registry need none of it (owlearn/_lazy.py)
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from owlearn.cli import app\n"
            "helps = [[], ['train'], ['continual'], ['cluster'], ['data']]\n"
            "for args in [[*a, '--help'] for a in helps] + [['data', 'list'], ['data', 'info', 'mnist']]:\n"
            "    result = CliRunner().invoke(app, args)\n"
            "    assert result.exit_code == 0, (args, result.output)\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_package_exports_behave_like_imports():
    import owlearn.continual
    import owlearn.data
    from owlearn.continual.rehearsal import ICaRL
    from owlearn.data import ImageDataset
    from owlearn.data.dataset import ImageDataset as direct

    assert ImageDataset is direct and owlearn.continual.ICaRL is ICaRL
    assert {"ICaRL", "make_strategy", "run_continual"} <= set(owlearn.continual.__all__) <= set(dir(owlearn.continual))
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        owlearn.data.nothing_here  # noqa: B018


def test_continual_command_reports_every_strategy(tmp_path):
    import json

    out = tmp_path / "continual"
    result = runner.invoke(app, ["continual", "--scenario", "class-incremental", "--data", "digits", "--experiences",
                                 "2", "--strategy", "naive", "--strategy", "icarl", "--epochs", "1", "--backbone",
                                 "convnet", "--train-limit", "600", "--precision", "bf16", "--out", str(out),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "continual.json").read_text())
    assert set(report) == {"naive", "icarl"}
    assert report["icarl"]["strategy_config"]["selection"] == "kernel-herding"
    # a memory of old digits keeps them; fine-tuning alone forgets the first experience
    assert report["icarl"]["final_accuracy"] > report["naive"]["final_accuracy"]
    assert (out / "continual-accuracy.png").exists() and (out / "continual-icarl-confusion.png").exists()


def test_continual_refuses_an_unknown_exemplar_rule_before_loading_data(tmp_path):
    result = runner.invoke(app, ["continual", "--strategy", "icarl", "--icarl-selection", "farthest",
                                 "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--icarl-selection" in result.output and "kernel-herding" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["train", "--data", "digits"], ["cluster", "digits"],
                                     ["continual", "--data", "digits"]])
def test_an_unknown_precision_is_refused_when_the_command_line_is_parsed(command, tmp_path):
    result = CliRunner().invoke(app, [*command, "--precision", "fp16", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "auto, fp32, bf16" in result.output and "fp16" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [["--schedule", "cosin"], ["--optimizer", "adamm"], ["--detector", "knnn"],
                                    ["--device", "gpu0"]])
def test_train_refuses_a_typo_before_loading_data(option, tmp_path):
    # the folder does not exist: had the data been loaded first, the error would be about it
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.owl"),
                                 *option])
    assert result.exit_code == 2, result.output
    assert option[0] in _said(result) and option[1] in _said(result)
    assert not (tmp_path / "m.owl").exists()


@pytest.mark.parametrize("command", [["cluster", "digits"], ["continual", "--data", "digits"]])
def test_an_unknown_device_is_refused_by_name(command, tmp_path):
    result = runner.invoke(app, [*command, "--device", "cude", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--device" in _said(result) and "unknown device 'cude'" in _said(result)
    assert not (tmp_path / "out").exists()


def test_resolve_device_and_train_config_name_what_is_wrong():
    import torch

    from owlearn.train.loop import TrainConfig, resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        resolve_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="schedule must be one of onecycle, cosine, constant, got 'foo'"):
        TrainConfig(schedule="foo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        TrainConfig(batch_size=0)


def test_the_cli_option_lists_match_the_library():
    from owlearn import _options
    from owlearn.space import DETECTORS
    from owlearn.train import loop

    assert _options.PRECISIONS == loop.PRECISIONS
    assert _options.OPTIMIZERS == loop.OPTIMIZERS and _options.SCHEDULES == loop.SCHEDULES
    assert set(_options.DETECTORS) == {*DETECTORS, "layers", "none"}


def test_train_refuses_an_output_it_could_not_write_before_training(tmp_path):
    data = tmp_path / "nowhere"  # never read: the output is checked first
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in _said(result)
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "no" / "m.owl")])
    assert result.exit_code == 2 and "does not exist" in _said(result)


def test_train_refuses_one_class_and_reversed_ranges(tmp_path):
    data = _folder(tmp_path / "bars", per_class=4)
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "m.owl"), "--classes", "1"])
    assert result.exit_code == 2 and "at least 2 classes" in _said(result)
    with pytest.raises(Exception, match="empty"):
        parse_classes("3-1", 10)
    # two images per class: the calibration share leaves one of them a single training image
    small = _folder(tmp_path / "tiny", per_class=2)
    result = runner.invoke(app, ["train", "--data", str(small), "--out", str(tmp_path / "m.owl"),
                                 "--calibration-share", "0.5"])
    assert result.exit_code == 2 and "fewer than 2 training images" in _said(result)
    assert not (tmp_path / "m.owl").exists()


def test_evaluate_checks_its_options_before_writing(trained, tmp_path):
    _, data, model = trained
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(model), "--data", str(data), "--split", "train",
                                 "--out-dir", str(out), "--feature-map", "umap"])
    assert result.exit_code == 2 and "tsne, pca, none" in _said(result)
    result = runner.invoke(app, ["evaluate", str(model), "--data", str(data), "--split", "train",
                                 "--out-dir", str(out), "--max-points", "0"])
    assert result.exit_code == 2
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    result = runner.invoke(app, ["evaluate", str(model), "--data", str(data), "--out-dir", str(a_file)])
    assert result.exit_code == 2 and "is a file" in _said(result)
    assert not out.exists()


def test_class_names_are_checked_and_shown_as_written(tmp_path):
    data = _folder(tmp_path / "bars", per_class=12)
    model = tmp_path / "bars.owl"
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(model), "--epochs", "1",
                                 "--batch-size", "12", "--no-progress", "--gaussian", "--detector", "none",
                                 "--widths", "4,4,4,4"])
    assert result.exit_code == 0, result.output
    before = model.read_bytes()
    for bad in ["  ", "Unknown"]:
        result = runner.invoke(app, ["add-class", str(model), str(data / "diag"), "--name", bad])
        assert result.exit_code == 2, (bad, result.output)
    assert model.read_bytes() == before
    # square brackets are text, not formatting codes, wherever a name is printed
    result = runner.invoke(app, ["add-class", str(model), str(data / "diag"), "--name", "[/]shirt [large]"])
    assert result.exit_code == 0, result.output
    assert "[/]shirt [large]" in _said(result)
    result = runner.invoke(app, ["info", str(model)])
    assert result.exit_code == 0 and "[/]shirt [large]" in _said(result), result.output
    result = runner.invoke(app, ["predict", str(model), str(data / "diag" / "0.png")])
    assert result.exit_code == 0, result.output


def test_discover_without_k_explains_too_few_refused_images():
    from owlearn.discover import _choose_k

    with pytest.raises(ValueError, match="only 2 images were refused"):
        _choose_k(np.eye(2), 10, 0)
    k, scores = _choose_k(np.eye(3), 10, 0)
    assert k == 2 and list(scores) == [2]


def test_bench_refuses_a_checkout_that_is_not_one(tmp_path):
    result = runner.invoke(app, ["bench", "--dry-run", "--checkout", str(tmp_path), "B1"])
    assert result.exit_code == 2 and "not an owlearn source checkout" in _said(result)


def test_serve_refuses_a_port_in_use_before_announcing_it(trained):
    import socket

    _, _, model = trained
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", str(model), "--port", str(port)])
    assert result.exit_code == 2 and "cannot listen on 127.0.0.1" in _said(result)
    assert "Serving" not in _said(result)


def test_errors_are_one_line_and_brackets_stay_text(tmp_path):
    bad = tmp_path / "[bold]bad.owl"
    bad.write_bytes(b"nonsense")
    proc = subprocess.run([sys.executable, "-m", "owlearn", "info", str(bad)], capture_output=True, text=True,
                          env={**__import__("os").environ, "COLUMNS": "40"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "[bold]bad.owl" in proc.stderr


def test_cluster_reads_a_folder_of_unlabeled_images(tmp_path):
    labelled = _folder(tmp_path / "bars", per_class=8)
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in labelled.glob("*/*.png"):  # the same images, without their class folders
        path.rename(flat / f"{path.parent.name}-{path.name}")
    out = tmp_path / "clusters"
    result = runner.invoke(app, quick_cluster(flat, out, clusters=3))
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(metrics["cluster_sizes"]) == 24 and "accuracy" not in metrics


def test_version_flag_and_command():
    from owlearn import __version__

    for args in (["--version"], ["version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and result.output.strip() == f"owlearn {__version__}"


@pytest.mark.parametrize("options,said", [
    (["--neighbors", "5"], "--neighbors is the k of the knn and lof detectors, not of layers"),
    (["--head", "linear", "--alpha", "8"], "--alpha set the radius of the l2softmax head, not of linear"),
])
def test_train_refuses_settings_it_would_ignore(options, said, tmp_path):
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.owl"),
                                 *options])
    assert result.exit_code == 2 and said in _said(result), result.output
