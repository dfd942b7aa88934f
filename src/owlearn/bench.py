"""``owlearn bench``: run the benchmark protocols (``../shared/BENCHMARKS.md``), regenerate RESULTS.md and compare.

The protocol scripts live in ``benchmarks/`` of a source checkout, outside the package (they are not shipped in
the wheel): this module finds them, runs each as its own process (exactly the command RESULTS.md names), calls
``benchmarks/report.py``, and reads the results files back to compare them with ``benchmarks/anchors.json`` —
targets and reference figures copied from the project's issues.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import owlearn


@dataclass(frozen=True)
class Script:
    file: str  # under benchmarks/
    results: str  # results/<results>.json (or -quick.json)
    python: str | None = None  # another interpreter, relative to the checkout (Avalanche's own environment)
    # further results files of the published figures, from runs split by data set or machine (not explorations)
    more_results: tuple[str, ...] = ()


PROTOCOLS: dict[str, list[Script]] = {
    "B1": [Script("b1_supervised.py", "b1_supervised")],
    "B2": [Script("b2_open_set.py", "b2_open_set")],
    "B3": [Script("b3_add_classes.py", "b3_add_classes")],
    "B4": [Script("b4_continual.py", "b4_continual"),
           Script("b4_avalanche.py", "b4_avalanche", python=".venv-avalanche/bin/python"),
           Script("b4_floor.py", "b4_floor")],
    "B5": [Script("b5_cluster.py", "b5_cluster", more_results=("b5_cluster-fashion", "b5_cluster-selflabel",
                                                                     "b5_cluster-size20-selflabel"))],
    "B6": [Script("b6_semisup.py", "b6_semisup", more_results=("b6_semisup-gpu",))],
    "B7": [Script("b7_throughput.py", "b7_throughput"), Script("b7_serve_load.py", "b7_serve_load")],
}


class NoCheckout(RuntimeError):
    """The benchmark scripts are not next to this owlearn (an installed wheel)."""


def find_checkout(explicit: Path | None = None) -> Path:
    """The source checkout whose ``benchmarks/`` holds the scripts: ``explicit``, ``$OWLEARN_CHECKOUT``, the
    checkout this package was imported from (``src/owlearn`` → two levels up), or the current directory."""
    if explicit is not None:  # asked for by name: that one or none, never another checkout's RESULTS.md
        if not _is_checkout(explicit):
            raise NoCheckout(f"{explicit} is not an owlearn source checkout (no benchmarks/report.py and "
                             "benchmarks/common.py there)")
        return explicit.resolve()
    candidates = []
    if os.environ.get("OWLEARN_CHECKOUT"):
        candidates.append(Path(os.environ["OWLEARN_CHECKOUT"]))
    candidates += [Path(owlearn.__file__).resolve().parents[2], Path.cwd()]
    for root in candidates:
        if _is_checkout(root):
            return root.resolve()
    raise NoCheckout(
        "owlearn bench runs the scripts in benchmarks/ of a source checkout, and this owlearn "
        f"({Path(owlearn.__file__).parent}) was installed without them (a wheel ships the package only). Clone "
        "the repository and run `owlearn bench` inside it, or pass --checkout PATH / set OWLEARN_CHECKOUT.")


def _is_checkout(root: Path) -> bool:
    return (root / "benchmarks" / "report.py").is_file() and (root / "benchmarks" / "common.py").is_file()


def command(root: Path, script: Script, quick: bool, extra: list[str]) -> list[str] | None:
    """The command that runs ``script``, or ``None`` when it (or its interpreter) is not in this checkout."""
    path = root / "benchmarks" / script.file
    python = str(root / script.python) if script.python else sys.executable
    if not path.is_file() or (script.python and not Path(python).is_file()):
        return None
    return [python, str(Path("benchmarks") / script.file), *(["--quick"] if quick else []), *extra]


def missing(root: Path, script: Script) -> str:
    """What keeps ``script`` from running here: the script itself, or the interpreter it names."""
    return script.python if script.python and (root / "benchmarks" / script.file).is_file() else \
        f"benchmarks/{script.file}"


def run(root: Path, protocols: list[str], quick: bool, extra: list[str], echo: Callable[[str], None]) -> dict:
    """Run the scripts of ``protocols`` one after another; returns ``{script: status}``."""
    status: dict[str, str] = {}
    for proto in protocols:
        for script in PROTOCOLS[proto]:
            cmd = command(root, script, quick, extra)
            if cmd is None:
                status[script.file] = f"skipped: {missing(root, script)} not in this checkout"
                echo(f"[yellow]{proto}: {status[script.file]}[/yellow]")
                continue
            echo(f"[bold]{proto}[/bold]: {' '.join(cmd[1:])}")
            # PYTHONPATH: the scripts import owlearn; make them see this checkout's, not another install's
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "src"),
                                                                             os.environ.get("PYTHONPATH")]))}
            code = subprocess.run(cmd, cwd=root, env=env).returncode
            status[script.file] = "ok" if code == 0 else f"failed (exit {code})"
    return status


def regenerate_report(root: Path) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(Path("benchmarks") / "report.py")], cwd=root, env=env).returncode


# -- reading the results back -------------------------------------------------------------------------------

def load_results(root: Path, quick: bool) -> dict[str, dict]:
    """``{results name: document}`` of the quick or the full results files present."""
    folder = root / "benchmarks" / "results"
    docs = {}
    for scripts in PROTOCOLS.values():
        for s in scripts:
            for name in (s.results, *s.more_results):
                path = folder / f"{name}{'-quick' if quick else ''}.json"
                if path.is_file():
                    docs[name] = json.loads(path.read_text())
    return docs


def _mean(stat) -> float:
    return float(stat["mean"]) if isinstance(stat, dict) else float(stat)


def _b1(doc: dict) -> dict[str, float]:
    acc = {h: _mean(r["test_accuracy"]) for h, r in doc["results"].items()}
    out = {"b1.best_accuracy": max(acc.values()),
           "b1.max_train_seconds": max(run["train_seconds"] for r in doc["results"].values() for run in r["runs"])}
    ce = [v for h, v in acc.items() if "CE" in h]
    l2 = [v for h, v in acc.items() if "L2" in h]
    if ce and l2:
        out["b1.l2_minus_ce"] = l2[0] - ce[0]
    return out


def _b2(doc: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    rejected, slowest = [], 0.0
    for key, short in (("fashion-in_mnist-out", "fashion_in"), ("mnist-in_fashion-out", "mnist_in")):
        if key not in doc["results"]:
            continue
        rows = [r for h in doc["results"][key]["summary"].values() for r in h["detectors"].values()]
        best = max(rows, key=lambda r: _mean(r["auroc"]))
        out[f"b2.{short}.best_auroc"] = _mean(best["auroc"])
        out[f"b2.{short}.best_fpr95"] = _mean(best["fpr_at_95_tpr"])
        rejected.append(max(_mean(r["out_rejected"]) for r in rows))
        slowest = max(slowest, max(_mean(r["fit_s"]) + _mean(r["score_s"]) for r in rows))
    if rejected:
        out["b2.min_best_out_rejected"] = min(rejected)
        out["b2.slowest_fit_score_s"] = slowest
    return out


def _b3(doc: dict) -> dict[str, float]:
    # the first feature view the run measured: the library's default (layers) in the published run
    view = next(iter(doc["results"]["gaussian"].values()))
    return {"b3.final_accuracy": _mean(view["final"]), "b3.max_seconds_per_class": float(view["max_seconds_per_class"])}


def _b4(doc: dict, avalanche: dict | None) -> dict[str, float]:
    out: dict[str, float] = {}
    ours = doc["results"]["class_incremental"]
    for name, r in ours.items():
        if r.get("final_accuracy"):
            out[f"b4.{name}.final_accuracy"] = _mean(r["final_accuracy"])
    if avalanche:
        theirs = avalanche["results"]
        counterpart = {"gaussian": "streaming-lda"}  # Avalanche's nearest strategy where the names differ
        pairs = [(n, r, theirs[counterpart.get(n, n)]) for n, r in ours.items() if counterpart.get(n, n) in theirs]
        if pairs:
            out["b4.max_time_ratio"] = max(_mean(o["cpu_seconds"]) / _mean(t["cpu_seconds"]) for _, o, t in pairs)
            out["b4.max_memory_ratio"] = max(_mean(o["peak_memory_mb"]) / _mean(t["peak_memory_mb"])
                                             for _, o, t in pairs if o.get("peak_memory_mb"))
    return out


B5_ALPHA = 1.0
"""The α of the published B5 figures: IICConfig's default (α = 10, the write-up's, is B5's ablation)."""


def _b5(*docs: dict | None) -> dict[str, float]:
    """From the B5 files (MNIST-10k and Fashion-MNIST may come from separate runs)."""
    out: dict[str, float] = {}
    for doc in filter(None, docs):
        for r in doc["results"].values():
            if r.get("alpha") not in (None, B5_ALPHA):
                continue
            short = "mnist" if "mnist" in r["dataset"] and "fashion" not in r["dataset"] else "fashion"
            out[f"b5.{short}.mean_accuracy"] = _mean(r["accuracy"])
            # the best sub-head of any seed, as the IIC paper and the write-up report it
            out[f"b5.{short}.best_sub_head"] = max(float(run["best_sub_head_accuracy"]) for run in r["runs"])
    return out


def _b6(doc: dict | None) -> dict[str, float]:
    if doc is None:
        return {}
    acc = {k: _mean(r["test_accuracy"]) for k, r in doc["results"].items()}
    out = {}
    for key, labels in (("b6.vat_gain_100_labels", "100 labels/class"), ("b6.vat_gain_full", "full supervision")):
        ce, vat = acc.get(f"{labels}, CE only"), acc.get(f"{labels}, CE + VAT")
        if ce is not None and vat is not None:
            out[key] = vat - ce
    return out


def _b7(doc: dict) -> dict[str, float]:
    r = doc["results"]
    return {f"b7.{k}": float(r[k]) for k in ("owlearn_vs_plain_dataloader", "owlearn_vs_bare_tensors") if k in r}


def _b7serve(doc: dict) -> dict[str, float]:
    r = doc["results"]
    return {f"b7serve.{k}": float(r[k]) for k in ("errors", "p99_ms", "predictions_per_s") if k in r}


def measures(docs: dict[str, dict]) -> tuple[dict[str, float], list[str]]:
    """The values anchors.json's ``key`` fields name, from whatever results files exist; plus problems found."""
    readers: dict[str, Callable[[dict], dict[str, float]]] = {
        "b1_supervised": _b1, "b2_open_set": _b2, "b3_add_classes": _b3,
        "b4_continual": lambda d: _b4(d, docs.get("b4_avalanche")),
        "b5_cluster": lambda d: _b5(d, docs.get("b5_cluster-fashion")),
        "b5_cluster-fashion": lambda d: {} if "b5_cluster" in docs else _b5(d),
        # MNIST-10k with self-labelling after IIC, the best recipe measured: read last, so its figures count
        "b5_cluster-selflabel": _b5,
        # the same at 20×20 pixels, measured later and better: read after it, so its figures count
        "b5_cluster-size20-selflabel": _b5,
        # the CPU run when there is one, else the GPU run
        "b6_semisup": _b6, "b6_semisup-gpu": lambda d: {} if "b6_semisup" in docs else _b6(d),
        "b7_throughput": _b7, "b7_serve_load": _b7serve}
    values: dict[str, float] = {}
    problems = []
    for name, read in readers.items():
        if name in docs:
            try:
                values.update(read(docs[name]))
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                # a script changed its results layout: say so instead of guessing
                problems.append(f"{name}: results not understood ({type(exc).__name__}: {exc})")
    return values, problems


def compare(anchors: list[dict], values: dict[str, float], protocols: list[str]) -> list[dict]:
    """One row per anchor of ``protocols``: measured value, and for targets whether it is met."""
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">": lambda a, b: a > b}
    rows = []
    for a in anchors:
        if a["protocol"] not in protocols:
            continue
        measured = values.get(a["key"]) if a.get("key") else None
        verdict = ""
        if a["kind"] == "target":
            met = measured is not None and ops[a["op"]](measured, a["value"])
            verdict = "not measured" if measured is None else ("met" if met else "missed")
        rows.append({**a, "measured": measured, "verdict": verdict})
    return rows


def load_anchors(root: Path) -> list[dict]:
    return json.loads((root / "benchmarks" / "anchors.json").read_text())["anchors"]
