"""`owlearn bench`: finding the scripts, reading results back, comparing with the anchors."""

import json

import pytest
from typer.testing import CliRunner

import owlearn
from owlearn import bench
from owlearn.cli import app


def _checkout(root, b1_accuracy):
    """A fake checkout: report.py that only writes RESULTS.md, anchors, and one B1 results file."""
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "benchmarks" / "common.py").write_text("")
    (root / "benchmarks" / "report.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('RESULTS.md').write_text('# results')\n")
    anchors = json.loads((bench.find_checkout() / "benchmarks" / "anchors.json").read_text())
    (root / "benchmarks" / "anchors.json").write_text(json.dumps(anchors))
    run = {"seed": 0, "test_accuracy": b1_accuracy, "train_seconds": 100.0}
    doc = {"results": {h: {"runs": [run], "test_accuracy": {"mean": b1_accuracy, "std": 0, "n": 1},
                           "train_seconds": {"mean": 100.0, "std": 0, "n": 1}}
                       for h in ("softmax (CE)", "L2-softmax α=16")}}
    (root / "benchmarks" / "results" / "b1_supervised.json").write_text(json.dumps(doc))
    return root


def test_report_only_compares_results_with_the_anchors(tmp_path):
    root = _checkout(tmp_path, 0.93)
    result = CliRunner().invoke(app, ["bench", "--report-only", "--only", "B1", "--checkout", str(root)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (root / "benchmarks" / "RESULTS.md").read_text() == "# results"
    assert "0.93" in result.output and "met" in result.output and "B7" not in result.output


def test_every_target_gets_a_verdict():
    values = {"b1.best_accuracy": 0.92, "b7.owlearn_vs_bare_tensors": 0.6}
    anchors = bench.load_anchors(bench.find_checkout())
    rows = {(r["key"], r["kind"]): r["verdict"] for r in bench.compare(anchors, values, list(bench.PROTOCOLS))}
    assert rows[("b1.best_accuracy", "target")] == "missed"
    assert rows[("b7.owlearn_vs_bare_tensors", "target")] == "met"
    assert rows[("b3.final_accuracy", "target")] == "not measured"
    assert all(a["source"] for a in anchors)


def test_without_a_checkout_it_says_where_the_scripts_are(tmp_path, monkeypatch):
    monkeypatch.setattr(owlearn, "__file__", str(tmp_path / "site-packages" / "owlearn" / "__init__.py"))
    monkeypatch.delenv("OWLEARN_CHECKOUT", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(bench.NoCheckout, match="source checkout"):
        bench.find_checkout()
    result = CliRunner().invoke(app, ["bench", "--report-only"])
    assert result.exit_code == 2


def test_unknown_protocol_is_refused():
    result = CliRunner().invoke(app, ["bench", "--dry-run", "B9"])
    assert result.exit_code != 0


def test_measures_read_the_layouts_the_scripts_write():
    stat = lambda v: {"mean": v, "std": 0.0, "n": 1}  # noqa: E731
    b3 = {"results": {"gaussian": {"layers": {"final": stat(0.91), "max_seconds_per_class": 2.4},
                                   "embedding": {"final": stat(0.88), "max_seconds_per_class": 1.9}}}}
    b5 = lambda dataset, alpha, best: {"results": {f"{dataset} α={alpha}": {  # noqa: E731
        "dataset": dataset, "alpha": alpha, "accuracy": stat(best - 0.01),
        "runs": [{"best_sub_head_accuracy": best - 0.02}, {"best_sub_head_accuracy": best}]}}}
    mnist = b5("mnist-10k", 1.0, 0.97)
    mnist["results"].update(b5("mnist-10k", 10.0, 0.2)["results"])  # B5's α = 10 ablation is not the figure
    b6 = {"results": {name: {"test_accuracy": stat(acc)} for name, acc in [
        ("100 labels/class, CE only", 0.85), ("100 labels/class, CE + VAT", 0.88),
        ("full supervision, CE only", 0.92), ("full supervision, CE + VAT", 0.921)]}}
    values, problems = bench.measures({"b3_add_classes": b3, "b5_cluster": mnist,
                                       "b5_cluster-fashion": b5("fashion-mnist", 1.0, 0.7), "b6_semisup-gpu": b6})
    assert problems == []
    assert values["b3.final_accuracy"] == 0.91 and values["b3.max_seconds_per_class"] == 2.4  # the default view
    assert values["b5.mnist.best_sub_head"] == 0.97 and values["b5.mnist.mean_accuracy"] == pytest.approx(0.96)
    assert values["b5.fashion.mean_accuracy"] == pytest.approx(0.69)
    assert values["b6.vat_gain_100_labels"] == pytest.approx(0.03)
    assert values["b6.vat_gain_full"] == pytest.approx(0.001)
    # the self-labelled MNIST-10k run, when there is one, is the B5 figure
    values, _ = bench.measures({"b5_cluster": mnist, "b5_cluster-selflabel": b5("mnist-10k", 1.0, 0.973)})
    assert values["b5.mnist.best_sub_head"] == 0.973
