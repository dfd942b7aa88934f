"""B6 — semi-supervised learning with VAT: Fashion-MNIST with 100 labels per class, the rest unlabeled.

ConvNet, CE on the labelled images only vs CE + VAT on all images. Hyper-parameters of VAT (ε, the
entropy-minimisation weight) are chosen on 1,000 images held out from the training set — never on the
test set — with seed 0; the chosen setting then runs seeds 0-2. Also full supervision with and
without VAT.

    python benchmarks/b6_semisup.py --stage select   # grid on the held-out images, seed 0
    python benchmarks/b6_semisup.py --stage final    # chosen setting, seeds 0-2, + full supervision
    python benchmarks/b6_semisup.py --quick          # smoke run
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from owlearn.api import build_model, train_model
from owlearn.data.augment import AugmentConfig, preset
from owlearn.data.sources import load_dataset
from owlearn.evaluate import evaluate_model, held_out_accuracy
from owlearn.train.loop import CrossEntropy, Hook, TrainConfig
from owlearn.train.semisup import keep_labels_per_class, semi_supervised_set
from owlearn.train.vat import VAT

from common import RESULTS, base_parser, mean_std, write_results

# ε 8 and 12 extend the first grid (1-5), whose best setting (5.0) sat at its edge; the order of the first six
# settings is kept, so --grid-index numbers of earlier runs still name the same settings
GRID = [{"eps": eps, "entropy_weight": ent} for eps in (1.0, 2.5, 5.0, 8.0, 12.0) for ent in (0.0, 1.0)]


DEFAULT_SHARE = 0.25  # the labelled images' share of every CE + VAT epoch unless a setting names another
SETTING_KEYS = {"eps", "entropy_weight", "weight", "iterations", "labelled_share", "augment", "ramp", "eps_ramp"}


class _ScheduledVAT(VAT, Hook):
    """VAT (+ EntMin) that knows how far the run has come: :meth:`progress` is the share of ``span`` done."""

    def __init__(self, **vat_args):
        super().__init__(**vat_args)
        self.trainer = None

    def on_fit_start(self, trainer) -> None:
        self.trainer = trainer

    def progress(self, span: float) -> float:
        return min(self.trainer.global_step / max(span * self.trainer.total_steps, 1), 1.0)


class RampedVAT(_ScheduledVAT):
    """VAT (+ EntMin) whose weight rises as exp(-5 (1 - t)²) over the first ``ramp`` share of the run (the
    ramp-up of Laine & Aila's Π-model), so early guesses on unlabeled images are not sharpened into habits."""

    def __init__(self, ramp: float, **vat_args):
        super().__init__(**vat_args)
        self.ramp = ramp

    def __call__(self, step) -> torch.Tensor:
        return math.exp(-5 * (1 - self.progress(self.ramp)) ** 2) * super().__call__(step)


class EpsRampedVAT(_ScheduledVAT):
    """VAT (+ EntMin) whose radius ε grows linearly from 0 to its full value over the first ``eps_ramp`` share
    of the run: a small ball while the classifier's boundaries are still wrong, a wider one once they settle
    (the "gradually increasing perturbation region" of Suzuki & Sato's RAT)."""

    def __init__(self, eps_ramp: float, **vat_args):
        super().__init__(**vat_args)
        self.eps_ramp, self.full_eps = eps_ramp, self.eps

    def __call__(self, step) -> torch.Tensor:
        self.eps = self.full_eps * self.progress(self.eps_ramp)
        return super().__call__(step)


def split(seed_for_labels: int, quick: bool):
    full = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    if quick:
        full, test = full.subset(torch.arange(6000)), test.subset(torch.arange(2000))
    held_out, train = full.random_split(1000, seed=12345)  # the validation images, never trained on
    return train, held_out, test


def augmentation(spec: str | dict) -> AugmentConfig:
    """A preset's name, or the fields of an :class:`AugmentConfig` as a dict."""
    return AugmentConfig.from_json(spec) if isinstance(spec, dict) else preset(spec)


def train_one(train, config: TrainConfig, vat: dict | None, quick: bool, widths: tuple[int, ...] | None = None,
              augment: str | dict = "fashion"):
    backbone_args = {"widths": tuple(widths)} if widths else None
    model = build_model(train, "convnet", "linear", seed=config.seed, backbone_args=backbone_args)
    objectives, hooks = [CrossEntropy()], []
    if vat is not None:
        vat_args = {"weight": vat.get("weight", 1.0), "eps": vat["eps"], "entropy_weight": vat["entropy_weight"],
                    "iterations": vat.get("iterations", 1)}
        if vat.get("ramp"):
            objectives.append(RampedVAT(vat["ramp"], **vat_args))
        elif vat.get("eps_ramp"):
            objectives.append(EpsRampedVAT(vat["eps_ramp"], **vat_args))
        else:
            objectives.append(VAT(**vat_args))
        hooks = [o for o in objectives if isinstance(o, Hook)]
    t0 = time.perf_counter()
    augment = augmentation((vat or {}).get("augment", augment))  # a VAT setting may name its own
    train_model(model, train, config=config, augment=augment, objectives=objectives, hooks=hooks,
                progress=False)
    return model, time.perf_counter() - t0


def semi_set(train, per_class: int, seed: int, vat: dict | None):
    """The training set of one run: CE only trains on the labelled images alone, CE + VAT on all of them, with
    the labelled images repeated to the setting's ``labelled_share`` of every epoch (default 0.25)."""
    partial = keep_labels_per_class(train, per_class, seed=seed)
    if vat is None:  # CE only: the labelled images alone, repeated to the same number of steps
        labelled = partial.subset(torch.nonzero(partial.labels >= 0).flatten())
        reps = max(1, len(train) // len(labelled))
        return labelled.subset(torch.arange(len(labelled)).repeat(reps))
    return semi_supervised_set(partial, vat.get("labelled_share", DEFAULT_SHARE))


def train_config(args, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, seed=seed,
                       device=args.device)


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--stage", choices=["select", "choose", "final"], default="final",
                   help="select: train grid settings, choose: merge select files and pick, final: seeds 0-2")
    p.add_argument("--settings", type=json.loads, default=None,
                   help="select these VAT settings instead of the grid: a JSON list of objects with eps, "
                        "entropy_weight and optionally weight (VAT's weight, default 1), iterations (power "
                        "iterations, default 1), augment (as --augment, for CE + VAT only; default --augment), "
                        "labelled_share (the labelled images' share of every epoch, default 0.25), ramp (the "
                        "share of the run over which VAT's and EntMin's weights ramp up, default none) and "
                        "eps_ramp (the share of the run over which ε grows linearly from 0, default none); "
                        "null for CE only")
    p.add_argument("--grid-index", type=int, nargs="+", default=None,
                   help="select only these settings (0 = CE only, i = GRID[i-1]); to run the grid in parallel")
    p.add_argument("--labels-per-class", type=int, default=100)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd",
                   help="for CE only and CE + VAT alike (the peak learning rate is --lr)")
    p.add_argument("--chosen", default=None, help="JSON of the VAT setting (default: from the select results)")
    p.add_argument("--full", action="store_true", help="also full supervision with and without VAT")
    p.add_argument("--methods", nargs="+", default=["ce", "vat"], choices=["ce", "vat"],
                   help="which of CE only / CE + VAT to run (to run them side by side)")
    p.add_argument("--widths", type=int, nargs="+", default=None,
                   help="the ConvNet's widths for CE only and CE + VAT alike (default 32 64 128 256)")
    p.add_argument("--augment", type=_augment_arg, default="fashion",
                   help="augmentation of CE only and CE + VAT alike: a preset's name or a JSON object of "
                        "AugmentConfig's fields, e.g. '{\"hflip\": true, \"crop_pad\": 2, \"erase\": 0.5}'")
    p.add_argument("--no-semi", action="store_true", help="skip the few-labels runs (with --full)")
    args = p.parse_args()
    started = time.time()
    epochs = 1 if args.quick else args.epochs
    train, held_out, test = split(0, args.quick)
    config_doc = {"stage": args.stage, "labels_per_class": args.labels_per_class, "epochs": epochs,
                  "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr, "backbone": "convnet",
                  "widths": args.widths or [32, 64, 128, 256], "augment": args.augment,
                  "held_out_images": len(held_out), "labelled_share_per_epoch": DEFAULT_SHARE, "quick": args.quick}
    results: dict = {}
    if args.stage == "select":
        seed = 0
        cfg = train_config(args, epochs, seed)
        settings = [None, *GRID[:1 if args.quick else None]]
        if args.grid_index is not None:
            settings = [settings[i] for i in args.grid_index]
        if args.settings is not None:
            settings = _checked_settings(args.settings)
        rows = []
        for vat in settings:
            data = semi_set(train, args.labels_per_class, seed, vat)
            model, secs = train_one(data, cfg, vat, args.quick, args.widths, args.augment)
            acc = held_out_accuracy(model, held_out)
            rows.append({"vat": vat, "held_out_accuracy": acc, "train_seconds": secs})
            print(f"select {vat}: held-out accuracy {acc:.4f} ({secs:.0f} s)", flush=True)
        # a part of the grid (--grid-index, to run it in parallel) chooses nothing: --stage choose merges the parts
        partial = args.grid_index is not None or args.settings is not None
        results = {"grid": rows} if partial else {"grid": rows, "chosen": _best(rows)["vat"]}
        config_doc["grid"] = GRID
        write_results("b6_semisup-select", config_doc, results, started, args.out)
        return
    if args.stage == "choose":
        _choose(args.out)
        return
    chosen = json.loads(args.chosen) if args.chosen else _chosen_from_select()
    config_doc["chosen_vat"] = chosen
    methods = [(m, v) for key, m, v in (("ce", "CE only", None), ("vat", "CE + VAT", chosen)) if key in args.methods]
    for method, vat in [] if args.no_semi else methods:
        runs = []
        for seed in args.seeds:
            cfg = train_config(args, epochs, seed)
            data = semi_set(train, args.labels_per_class, seed, vat)
            model, secs = train_one(data, cfg, vat, args.quick, args.widths, args.augment)
            run = _test_run(model, test, seed, secs)
            acc = run["test_accuracy"]
            runs.append(run)
            print(f"{args.labels_per_class}/class {method} seed {seed}: test accuracy {acc:.4f} ({secs:.0f} s)",
                  flush=True)
        results[f"{args.labels_per_class} labels/class, {method}"] = {
            "runs": runs, "test_accuracy": mean_std([r["test_accuracy"] for r in runs])}
    if args.full:
        for method, vat in methods:
            runs = []
            for seed in args.seeds:
                cfg = train_config(args, epochs, seed)
                model, secs = train_one(train, cfg, vat, args.quick, args.widths, args.augment)
                run = _test_run(model, test, seed, secs)
                acc = run["test_accuracy"]
                runs.append(run)
                print(f"full supervision {method} seed {seed}: test accuracy {acc:.4f} ({secs:.0f} s)", flush=True)
            results[f"full supervision, {method}"] = {
                "runs": runs, "test_accuracy": mean_std([r["test_accuracy"] for r in runs])}
    write_results("b6_semisup", config_doc, results, started, args.out)


def _test_run(model, test, seed: int, secs: float) -> dict:
    """One test run's record, per class too: where does VAT, or the unlabeled data, help?"""
    summary = evaluate_model(model, test)
    return {"seed": seed, "test_accuracy": summary["accuracy"], "train_seconds": secs,
            "per_class_recall": {r["name"]: r["recall"] for r in summary["per_class"]},
            "confusion_matrix": summary["confusion_matrix"]}


def _augment_arg(text: str) -> str | dict:
    spec = json.loads(text) if text.lstrip().startswith("{") else text
    augmentation(spec)  # a bad name or field fails here, before any training
    return spec


def _checked_settings(settings) -> list[dict | None]:
    """--settings, checked before any training starts."""
    if not isinstance(settings, list) or not settings:
        raise SystemExit("--settings must be a non-empty JSON list, e.g. '[{\"eps\": 5, \"entropy_weight\": 1}]'")
    for s in settings:
        if s is not None and (not isinstance(s, dict) or not {"eps", "entropy_weight"} <= set(s)
                              or not set(s) <= SETTING_KEYS):
            raise SystemExit(f"each --settings entry needs eps and entropy_weight (and optionally weight, iterations, "
                             f"augment, labelled_share, ramp and eps_ramp), got {s!r}")
        if s is not None and s.get("ramp") and s.get("eps_ramp"):
            raise SystemExit(f"a setting ramps up either the weights (ramp) or ε (eps_ramp), not both: {s!r}")
        if s is not None and "augment" in s:
            try:
                augmentation(s["augment"])
            except (TypeError, ValueError) as e:
                raise SystemExit(f"bad augment in {s!r}: {e}") from None
    return settings


def _choose(files_dir) -> None:
    """Merge the select runs (``b6_semisup-select*.json`` in a folder) and keep the best VAT setting."""
    folder = files_dir or RESULTS
    rows, doc = [], None
    def grid_order(path: Path) -> tuple[int, str]:  # b6_semisup-select-10.json after -9, not after -1
        suffix = path.stem.rsplit("-", 1)[-1]
        return (int(suffix), "") if suffix.isdigit() else (-1, path.name)

    for path in sorted(Path(folder).glob("b6_semisup-select*.json"), key=grid_order):
        doc = json.loads(path.read_text())
        rows += doc["results"]["grid"]
    if doc is None:
        raise SystemExit(f"no b6_semisup-select*.json in {folder}")
    best = _best(rows)
    doc["results"] = {"grid": rows, "chosen": best["vat"]}
    (RESULTS / "b6_semisup-select.json").write_text(json.dumps(doc, indent=2))
    print(f"chosen on the held-out images: {best['vat']} ({best['held_out_accuracy']:.4f})")


def _best(rows: list[dict]) -> dict:
    """The VAT setting of highest held-out accuracy (CE only, ``vat`` None, is the baseline, not a choice)."""
    return max((r for r in rows if r["vat"] is not None), key=lambda r: r["held_out_accuracy"])


def _chosen_from_select() -> dict:
    path = RESULTS / "b6_semisup-select.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: run --stage select first, or pass --chosen '{{\"eps\": 2.5, ...}}'")
    results = json.loads(path.read_text())["results"]
    return results["chosen"] if "chosen" in results else _best(results["grid"])["vat"]


if __name__ == "__main__":
    main()
