"""``owlearn demo``: the open-world story in miniature on scikit-learn's digits (embedded, offline).

1. Train on the digits 0-6 only; 7, 8 and 9 stay unknown.
2. Evaluate on the known digits: accuracy, confusion matrix, a map of the feature space on which the
   unknown digits are drawn too.
3. Save the model file and say what to try next.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from owlearn._atomic import atomic_open
from owlearn.api import build_model, train_model
from owlearn.data.augment import preset
from owlearn.data.sources import load_dataset
from owlearn.evaluate import evaluate_model
from owlearn.train.loop import TrainConfig

KNOWN = list(range(7))


def run_demo(out_dir: str | Path = "owlearn-demo", *, epochs: int = 30, seed: int = 0, progress: bool = True,
             console: Console | None = None) -> dict:
    """Run the demo, writing the model, plots and ``summary.json`` into ``out_dir``; returns the summary."""
    console = console or Console()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train_all = load_dataset("digits", "train")
    test_all = load_dataset("digits", "test")
    known_names = [train_all.class_names[c] for c in KNOWN]
    unknown_names = [n for n in train_all.class_names if n not in known_names]
    train = train_all.select_classes(KNOWN).relabel(known_names)

    console.rule("[bold]1. Train on the digits 0-6; 7, 8 and 9 stay unknown")
    model = build_model(train, "convnet", "l2softmax", head_args={"alpha": 16.0}, seed=seed)
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, seed=seed)
    train_model(model, train, config=config, augment=preset("digits"), progress=progress)

    console.rule("[bold]2. Evaluate on the known digits")
    report = evaluate_model(model, test_all, out, feature_map="tsne", seed=seed)
    console.print(report["report"])
    console.print(f"Closed-set accuracy on the known digits: [bold]{report['accuracy']:.4f}[/bold] "
                  f"({report['num_images']} test images); {report['unknown_images']} test images of "
                  f"{', '.join(unknown_names)} are unknown to the model.")

    model_path = model.save(out / "digits.owl")
    summary = {
        "known_classes": known_names, "unknown_classes": unknown_names,
        "closed_set_accuracy": report["accuracy"], "seconds": time.perf_counter() - start,
        "files": {**report["files"], "model": str(model_path)},
    }
    with atomic_open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)

    console.rule("[bold]Done")
    for kind, path in summary["files"].items():
        console.print(f"  {kind.replace('_', ' ')}: {path}")
    console.print(f"Finished in {summary['seconds']:.0f} s. Next:\n"
                  f"  owlearn predict {model_path} some_digit.png\n"
                  f"  owlearn data list                       # other datasets\n"
                  f"  owlearn train --data fashion-mnist --epochs 10 --out fashion.owl\n"
                  f"  owlearn evaluate fashion.owl")
    return summary
