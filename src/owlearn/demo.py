"""``owlearn demo``: the open-world story in miniature on scikit-learn's digits (embedded, offline).

1. Train on the digits 0-6 only; 7, 8 and 9 stay unknown.
2. Evaluate on the known digits: accuracy, confusion matrix, a map of the feature space on which the
   unknown digits are drawn too.
3. Refuse the unknown: a k-nearest-neighbour detector in feature space, its threshold calibrated on
   held-out known digits for 95% acceptance (no example of the unknown is needed).
4. Add 7, 8 and 9 without retraining: a Gaussian per class in feature space, new classes from their
   feature statistics alone.
5. Save the model file and say what to try next.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from owlearn import metrics, viz
from owlearn._atomic import atomic_open
from owlearn.api import build_model, train_model
from owlearn.data.augment import preset
from owlearn.data.dataset import ImageDataset
from owlearn.data.sources import load_dataset
from owlearn.evaluate import evaluate_model
from owlearn.model import OwlModel
from owlearn.train.loop import TrainConfig

KNOWN = list(range(7))
ACCEPT_RATE = 0.95


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
    # 15% of the known training digits are held out to calibrate the rejection threshold
    known_all = train_all.select_classes(KNOWN).relabel(known_names)
    calib_size = len(known_all) * 15 // 100
    calib, train = known_all.random_split(calib_size, seed=seed)

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

    console.rule("[bold]3. Refuse what it has never seen")
    rejection = _reject_unknown(model, train, calib, test_all, out, console)

    console.rule("[bold]4. Add 7, 8 and 9 without retraining")
    growth = _add_classes(model, train, train_all, test_all, unknown_names, console)

    model_path = model.save(out / "digits.owl")
    summary = {
        "known_classes": known_names, "unknown_classes": unknown_names,
        "closed_set_accuracy": report["accuracy"], "rejection": rejection, "added_classes": growth,
        "seconds": time.perf_counter() - start,
        "files": {**report["files"], "score_histogram": rejection.pop("file"), "model": str(model_path)},
    }
    with atomic_open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)

    console.rule("[bold]Done")
    for kind, path in summary["files"].items():
        console.print(f"  {kind.replace('_', ' ')}: {path}")
    console.print(f"Finished in {summary['seconds']:.0f} s. Next:\n"
                  f"  owlearn predict {model_path} some_digit.png\n"
                  f"  owlearn serve {model_path}              # draw digits in the browser, teach new ones\n"
                  f"  owlearn cluster digits --size 0 --batch-size 128  # the digits without labels (IIC, 2 min)\n"
                  f"  owlearn data list                       # other datasets\n"
                  f"  owlearn train --data fashion-mnist --epochs 10 --gaussian --out fashion.owl\n"
                  f"  owlearn evaluate fashion.owl --ood mnist")
    return summary


def _reject_unknown(model: OwlModel, train: ImageDataset, calib: ImageDataset, test: ImageDataset, out: Path,
                    console: Console) -> dict:
    """Give the model a kNN detector calibrated on held-out known digits; see what it refuses in the test set."""
    model.fit_detector(train, calib, "knn", accept_rate=ACCEPT_RATE, n_neighbors=10)
    aligned = test.relabel(model.class_names)
    known = (aligned.labels >= 0).numpy()
    pred = model.predict(test)
    summary = metrics.rejection_summary(pred.accepted[known], pred.accepted[~known],
                                        pred.nearest[known] == aligned.labels.numpy()[known])
    summary["auroc"] = metrics.auroc(pred.scores[known], pred.scores[~known])
    summary["file"] = str(viz.plot_score_histograms(
        pred.scores[known], {"unknown digits 7-9": pred.scores[~known]}, out / "score_histogram.png",
        threshold=model.detector.offset_, title="kNN novelty score: known vs unknown digits"))
    console.print(f"Threshold set for {ACCEPT_RATE:.0%} acceptance on held-out known digits. On the test set: "
                  f"known digits accepted [bold]{summary['in_accepted']:.1%}[/bold], unknown digits refused "
                  f"[bold]{summary['out_rejected']:.1%}[/bold] (AUROC {summary['auroc']:.3f}); accuracy on the "
                  f"accepted known digits {summary['accepted_accuracy']:.1%}.")
    return summary


def _add_classes(model: OwlModel, train: ImageDataset, train_all: ImageDataset, test_all: ImageDataset,
                 new_names: list[str], console: Console) -> dict:
    """Switch the model to Gaussians in feature space and grow it by the unknown classes, one at a time."""
    model.fit_gaussian(train)

    def accuracy_on_known_classes() -> float:
        aligned = test_all.relabel(model.classes)
        known = aligned.labels >= 0
        return float((model.predict(aligned.subset(known)).nearest == aligned.labels[known].numpy()).mean())

    steps = [{"classes": len(model.classes), "accuracy": accuracy_on_known_classes(), "seconds": 0.0}]
    console.print(f"  Gaussian classifier on the {len(model.classes)} trained classes: "
                  f"accuracy {steps[0]['accuracy']:.1%}")
    for name in new_names:
        images = train_all.subset(train_all.labels == train_all.class_names.index(name))
        t0 = time.perf_counter()
        model.add_class(name, images)  # feature statistics of the new class only: no gradient step
        seconds = time.perf_counter() - t0
        steps.append({"added": name, "images": len(images), "classes": len(model.classes),
                      "accuracy": accuracy_on_known_classes(), "seconds": seconds})
        console.print(f"  added '{name}' from {len(images)} images in {seconds * 1000:.0f} ms: accuracy on the "
                      f"{len(model.classes)} classes known now [bold]{steps[-1]['accuracy']:.1%}[/bold]")
    pred = model.predict(test_all)
    accepted = float(pred.accepted.mean())
    console.print(f"  The detector grew too: it now accepts {accepted:.1%} of all ten test digits.")
    return {"steps": steps, "final_accuracy": steps[-1]["accuracy"], "accepted_after": accepted}
