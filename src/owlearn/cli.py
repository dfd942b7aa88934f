"""The ``owlearn`` command line."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from owlearn import __version__
from owlearn._options import (
    DATA_DIR_OPTION,
    DETECTORS,
    FEATURE_MAPS,
    OPTIMIZERS,
    PRECISION_OPTION,
    SCHEDULES,
    check_class_name,
    check_device,
    check_output_file,
    check_output_folder,
    one_of,
)

app = typer.Typer(
    name="owlearn", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Open-world image recognition: classify what you know, refuse what you don't, grow without retraining.",
)
console = Console()
err_console = Console(stderr=True)

def _print_version(value: bool) -> None:
    if value:
        console.print(f"owlearn {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the owlearn version and exit."),
) -> None:
    """Open-world image recognition: classify what you know, refuse what you don't, grow without retraining."""




def _register_data_app() -> None:
    from owlearn.data.cli import app as data_app

    app.add_typer(data_app, name="data", help="List, download and inspect datasets.")


def parse_widths(text: str, backbone: str) -> tuple[int, ...]:
    """``"24,48,96,192"`` → ``(24, 48, 96, 192)``, for the ConvNet only."""
    if backbone != "convnet":
        raise typer.BadParameter(f"--widths applies to the convnet backbone, not {backbone}")
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--widths takes whole numbers separated by commas, e.g. 24,48,96,192; got "
                                 f"{text!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"--widths must be positive channel counts, got {text!r}")
    return values


def parse_classes(text: str | None, num_classes: int) -> list[int] | None:
    """``"0-4,7"`` → ``[0, 1, 2, 3, 4, 7]``; ``None`` → all classes."""
    if not text:
        return None
    chosen: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if lo > hi:
                    raise typer.BadParameter(f"the range {part!r} is empty: write it low-high, e.g. {hi}-{lo}")
                chosen += range(lo, hi + 1)
            else:
                chosen.append(int(part))
        except ValueError:
            raise typer.BadParameter(f"cannot read {part!r}: use class indices like 0-4,7") from None
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if bad:
        raise typer.BadParameter(f"class indices {bad} are outside 0-{num_classes - 1}")
    return sorted(set(chosen))


def _load(name: str, split: str, data_dir: Path | None, download: bool, *,
          image_shape: tuple[int, ...] | None = None):
    """A dataset split; a folder of images is read at ``image_shape`` (channels, height, width) when given."""
    from owlearn.data.sources import is_image_folder, load_dataset

    options: dict = {}
    if image_shape is not None and is_image_folder(name):
        channels, height, width = image_shape
        options["size"] = (height, width)
        if channels:  # 0: whatever the folder holds
            options["mode"] = "L" if channels == 1 else "RGB"
    return load_dataset(name, split, data_dir=data_dir, download=download, **options)


# measured, not assumed: benchmarks/RESULTS.md, B2 "Label smoothing costs the detectors much of their rejection"
LABEL_SMOOTHING_B2 = "the layers detector on an L2-softmax ConvNet refused 75% of MNIST instead of 98%"


@app.command()
def train(
    ctx: typer.Context,
    data: str = typer.Option(
        "digits", help="Dataset name (see `owlearn data list`) or a folder of images, one sub-folder per class."),
    out: Path = typer.Option(Path("model.owl"), "--out", "-o", help="Where to write the model file."),
    image_size: int | None = typer.Option(
        None, min=8, max=1024, help="Resize the images of a --data folder to this side in pixels (default: keep "
                                    "their size, which must then be the same for all)."),
    classes: str | None = typer.Option(None, help="Train on these classes only, e.g. 0-4 (the rest stay unknown)."),
    backbone: str = typer.Option("convnet", help="simplenet, convnet or resnet18."),
    widths: str | None = typer.Option(
        None, help="Channels of the ConvNet's blocks, e.g. 24,48,96,192 (default 32,64,128,256). Narrower "
                   "networks predict and add classes faster, at some accuracy (benchmark B3)."),
    head: str = typer.Option("l2softmax", help="linear (softmax), l2softmax or cosine."),
    alpha: float = typer.Option(16.0, help="Radius α of the L2-softmax hypersphere."),
    learn_alpha: bool = typer.Option(False, help="Learn α instead of fixing it."),
    epochs: int = typer.Option(10, min=1, help="Passes over the training set (the most, with --time-budget)."),
    time_budget: float | None = typer.Option(
        None, min=1.0, help="Train for at most this many seconds, the learning-rate schedule fitted to the time "
                            "(e.g. 600 for the best model in ten minutes on this machine)."),
    batch_size: int = typer.Option(128, min=1, help="Images per step."),
    lr: float = typer.Option(0.05, min=0.0, help="Peak learning rate."),
    optimizer: str = typer.Option("sgd", callback=one_of(OPTIMIZERS), help="sgd (Nesterov momentum), adam or adamw."),
    weight_decay: float = typer.Option(5e-4, min=0.0, help="Weight decay of conv/linear weights."),
    schedule: str = typer.Option("onecycle", callback=one_of(SCHEDULES), help="onecycle, cosine or constant."),
    label_smoothing: float = typer.Option(
        0.0, min=0.0, max=0.5, help="Share of each target spread over the other classes (0: plain cross-entropy). "
                                    "Weakens the outlier detector (benchmark B2)."),
    augment: str = typer.Option("auto", help="Augmentation preset: auto, none, digits, fashion, cifar, iic."),
    detector: str = typer.Option(
        "layers", callback=one_of(DETECTORS),
        help="Outlier detector that lets the model answer 'unknown': layers (Mahalanobis on the last "
                       "two blocks + ViM + nearest-neighbour distance: the best in benchmark B2), knn, lof, "
                       "mahalanobis, vim, msp, energy, or none."),
    accept_rate: float = typer.Option(
        0.99, min=0.5, max=1.0, help="Share of known-class images the detector must accept (calibrated on "
                                     "held-out training images)."),
    neighbors: int | None = typer.Option(
        None, min=1, help="k of the knn and lof detectors (default: 50 and 20, less for small classes). A model "
                          "that will be taught classes from few examples needs a k below that number."),
    calibration_share: float = typer.Option(
        0.05, min=0.0, max=0.5, help="Share of the training set held out to calibrate the detector."),
    gaussian: bool = typer.Option(
        False, help="Classify with one Gaussian per class in feature space instead of the softmax head; "
                    "lets `owlearn add-class` grow the model without retraining."),
    gaussian_features: str = typer.Option(
        "layers", help="What the Gaussian classifier reads: layers (pooled statistics of the network's stages, "
                       "better on classes added later), embedding (the head's input, a little faster) or "
                       "layers+embedding (both)."),
    vat: float = typer.Option(
        0.0, min=0.0, help="Weight of Virtual Adversarial Training (0 = off); a smoothness penalty on every image, "
                           "labelled or not."),
    vat_eps: float = typer.Option(
        8.0, min=0.0, help="VAT's perturbation size ε (L2 norm on [0, 1] pixels; 8 won B6's selection on "
                           "held-out images)."),
    entropy_min: float = typer.Option(0.0, min=0.0, help="Weight of entropy minimisation of the predictions."),
    labels_per_class: int | None = typer.Option(
        None, min=1, help="Keep only N labels per class and use the other images unlabeled (semi-supervised; "
                          "combine with --vat)."),
    seed: int = typer.Option(0, help="Seed of initialisation, shuffling and augmentation."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 …"),
    precision: str = PRECISION_OPTION,
    compile_steps: bool = typer.Option(
        False, "--compile", help="Compile the network's training steps with torch.compile: pays off on GPUs, "
                                 "not on small CPUs (docs/performance.md)."),
    checkpoint_dir: Path | None = typer.Option(None, help="Write a checkpoint here after every epoch."),
    resume: bool = typer.Option(False, help="Continue from the checkpoint in --checkpoint-dir."),
    data_dir: Path | None = DATA_DIR_OPTION,
    download: bool = typer.Option(False, help="Download the dataset if it is not found."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train a classifier and save it as one model file.

    Under `torchrun --nproc-per-node N -m owlearn train …` the same options train with N processes
    (docs/distributed.md): --batch-size is the global batch, rank 0 prints and writes the files.
    """
    from owlearn.api import build_model, train_model
    from owlearn.data.augment import preset
    from owlearn.evaluate import held_out_accuracy
    from owlearn.train import distributed
    from owlearn.train.loop import TrainConfig

    # everything that can be checked without the data is checked before it is loaded and trained on
    check_output_file(out, "--out")
    check_device(device)
    if resume and checkpoint_dir is None:
        raise typer.BadParameter("--resume needs --checkpoint-dir")
    if checkpoint_dir is not None:
        check_output_folder(checkpoint_dir, "--checkpoint-dir")
    from owlearn.model import GAUSSIAN_FEATURES

    if gaussian_features not in GAUSSIAN_FEATURES:
        raise typer.BadParameter(f"--gaussian-features must be one of {', '.join(GAUSSIAN_FEATURES)}, "
                                 f"got {gaussian_features!r}")
    if detector != "none" and calibration_share <= 0:
        raise typer.BadParameter("a detector needs held-out images: set --calibration-share above 0")
    if neighbors is not None and detector not in ("knn", "lof"):
        raise typer.BadParameter(f"--neighbors is the k of the knn and lof detectors, not of {detector}",
                                 param_hint="--neighbors")
    # by the enum's name: typer ships its own copy of click, whose ParameterSource is not click's
    given = [f"--{n.replace('_', '-')}" for n in ("alpha", "learn_alpha")
             if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"]
    if given and head != "l2softmax":  # a setting that would be silently ignored
        raise typer.BadParameter(f"{' and '.join(given)} set the radius of the l2softmax head, not of {head}",
                                 param_hint="--head")
    ctx.with_resource(distributed.session())  # joins torchrun's process group; a no-op otherwise
    if time_budget is not None and distributed.is_distributed():
        # the processes would have to agree on the step to stop at (owlearn.train.TrainConfig.time_budget_s)
        raise typer.BadParameter("is not supported under torchrun yet; set --epochs instead",
                                 param_hint="--time-budget")
    if not distributed.is_main():
        console.quiet = True  # one process speaks for all

    shape = None
    if image_size is not None:
        from owlearn.data.sources import is_image_folder

        if not is_image_folder(data):
            raise typer.BadParameter(f"resizes the images of a folder; {data} is a registered dataset",
                                     param_hint="--image-size")
        shape = (0, image_size, image_size)  # channels 0: the folder's own (gray or colour)
    train_set = _load(data, "train", data_dir, download, image_shape=shape)
    test_set = _try_load_test(data, data_dir, download, train_set.shape)
    chosen = parse_classes(classes, train_set.num_classes)
    if chosen is not None:
        names = [train_set.class_names[c] for c in chosen]
        train_set = train_set.select_classes(chosen).relabel(names)
    if train_set.num_classes == 0:  # a folder of images without class sub-folders
        raise typer.BadParameter(f"{train_set.name} holds unlabeled images (no class sub-folders); a classifier "
                                 f"needs one sub-folder of images per class (`owlearn cluster` groups unlabeled "
                                 f"images)", param_hint="--data")
    if train_set.num_classes < 2:
        raise typer.BadParameter(f"a classifier needs at least 2 classes; {train_set.name} has "
                                 f"{train_set.num_classes}", param_hint="--data/--classes")
    calibration = None
    if detector != "none":
        # images the network never trains on, so that the threshold is not set on memorised data
        calibration, train_set = train_set.random_split(max(1, int(len(train_set) * calibration_share)), seed=seed)
    _check_images_per_class(train_set, calibration is not None)
    head_args = {"alpha": alpha, "learn_alpha": learn_alpha} if head == "l2softmax" else {}
    backbone_args = {"widths": parse_widths(widths, backbone)} if widths else {}
    model = build_model(train_set, backbone, head, head_args=head_args, backbone_args=backbone_args, seed=seed)
    model.check_readable(detector=detector, gaussian_features=gaussian_features if gaussian else None)
    aug = preset(_auto_augment(data) if augment == "auto" else augment)
    config = TrainConfig(epochs=epochs, time_budget_s=time_budget, batch_size=batch_size, lr=lr,
                         optimizer=optimizer, weight_decay=weight_decay, schedule=schedule,  # type: ignore[arg-type]
                         label_smoothing=label_smoothing, seed=seed, device=device, compile=compile_steps,
                         precision=precision)  # type: ignore[arg-type]
    objectives = None
    fit_set = train_set
    if labels_per_class is not None:
        import torch

        from owlearn.train.semisup import keep_labels_per_class, semi_supervised_set

        partial = keep_labels_per_class(train_set, labels_per_class, seed=seed)
        fit_set = semi_supervised_set(partial)
        train_set = partial.subset(torch.nonzero(partial.labels >= 0).flatten())  # detector & Gaussian: labels only
        console.print(f"Semi-supervised: {labels_per_class} labels per class, {len(partial):,} images in all")
    if vat or entropy_min:
        from owlearn.train.loop import CrossEntropy
        from owlearn.train.vat import VAT

        objectives = [CrossEntropy(label_smoothing), VAT(weight=vat, eps=vat_eps, entropy_weight=entropy_min)]
    if label_smoothing > 0 and detector != "none":
        console.print(f"[yellow]Label smoothing weakens the {detector} detector: the model refuses less of the "
                      f"unknown (benchmark B2: {LABEL_SMOOTHING_B2}). Leave --label-smoothing at 0 when the model "
                      f"must refuse what it does not know.[/yellow]")
    console.print(f"Training {backbone} + {head} on {escape(train_set.name)} ({len(train_set):,} images, "
                  f"{train_set.num_classes} classes) for {epochs} epochs")
    train_model(model, fit_set, config=config, augment=aug, objectives=objectives, checkpoint_dir=checkpoint_dir,
                resume=resume, progress=progress)
    if calibration is not None:
        console.print(f"Fitting the {detector} detector; threshold for {accept_rate:.1%} acceptance on "
                      f"{len(calibration):,} held-out images")
        params = {"n_neighbors": neighbors} if neighbors and detector in ("knn", "lof") else {}
        model.fit_detector(train_set, calibration, detector, accept_rate=accept_rate, **params)
    if gaussian:
        model.fit_gaussian(train_set, features=gaussian_features)
    if test_set is not None:
        acc = held_out_accuracy(model, test_set)
        model.info["test_accuracy"] = acc
        console.print(f"Test accuracy on {escape(test_set.name)}: [bold]{acc:.4f}[/bold]")
    if distributed.is_main():
        model.save(out)
    distributed.barrier()
    # a folder without a test split has nothing held out to evaluate on
    hint = f"owlearn evaluate {out} --data {data}" if test_set is not None else f"owlearn predict {out} IMAGES"
    console.print(f"Model written to [bold]{escape(str(out))}[/bold]. Next: `{escape(hint)}`")


def _check_images_per_class(train_set, calibrated: bool) -> None:
    """Refuse, before training, a class with fewer than two training images: its statistics and the
    detector's need a spread, and its single image would be all the network learns of it."""
    import torch

    counts = torch.bincount(train_set.labels[train_set.labels >= 0], minlength=train_set.num_classes)
    few = [f"{train_set.class_names[c]} ({int(n)})" for c, n in enumerate(counts) if n < 2]
    if few:
        held = " after holding out calibration images (--calibration-share)" if calibrated else ""
        raise typer.BadParameter(f"these classes have fewer than 2 training images{held}: {', '.join(few)}",
                                 param_hint="--data")


def _try_load_test(name: str, data_dir: Path | None, download: bool, shape: tuple[int, ...]):
    try:  # a folder's test images are read as its training images were
        return _load(name, "test", data_dir, download, image_shape=shape)
    except (ValueError, FileNotFoundError, KeyError):
        return None  # folders and some datasets have no test split


def _auto_augment(data: str) -> str:
    name = data.lower()
    if "fashion" in name:
        return "fashion"
    if name.startswith("cifar"):
        return "cifar"
    if name in {"mnist", "kmnist", "usps", "digits"}:
        return "digits"
    return "none"


@app.command()
def evaluate(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model file written by `owlearn train`."),
    data: str | None = typer.Option(None, help="Dataset (default: the one the model was trained on)."),
    split: str = typer.Option("test", help="Which split to evaluate on."),
    out_dir: Path = typer.Option(Path("owlearn-eval"), help="Where to write metrics.json and the plots."),
    feature_map: str = typer.Option("tsne", callback=one_of(FEATURE_MAPS),
                                    help="2-D map of the feature space: tsne, pca or none."),
    ood: list[str] = typer.Option(
        [], "--ood", help="Out-of-distribution dataset(s) the model should refuse (repeat the option); "
                          "needs a model with a detector."),
    ood_split: str = typer.Option("test", help="Split of the --ood datasets."),
    max_points: int = typer.Option(2000, min=1, help="Points drawn on the feature map."),
    data_dir: Path | None = DATA_DIR_OPTION,
    download: bool = typer.Option(False, help="Download the dataset if it is not found."),
) -> None:
    """Accuracy, per-class report, confusion matrix and feature-space map of a model."""
    from owlearn.evaluate import evaluate_model
    from owlearn.model import OwlModel

    check_output_folder(out_dir, "--out-dir")
    model = OwlModel.load(model_path)
    if ood and model.detector is None:
        raise typer.BadParameter("the model has no outlier detector to refuse them with; train it with "
                                 "--detector (the default is layers)", param_hint="--ood")
    name = data or _dataset_of(model)
    shape = tuple(model.network.spec.in_shape)  # folders of other sizes are resized to what the model reads
    dataset = _load(name, split, data_dir, download, image_shape=shape)
    ood_sets = {o: _load(o, ood_split, data_dir, download, image_shape=shape) for o in ood}
    for label, images in {name: dataset, **ood_sets}.items():
        if tuple(images.shape) != tuple(model.network.spec.in_shape):
            raise typer.BadParameter(f"{label} has images of shape {tuple(images.shape)}, the model takes "
                                     f"{tuple(model.network.spec.in_shape)}")
    summary = evaluate_model(model, dataset, out_dir, feature_map=feature_map,  # type: ignore[arg-type]
                             max_points=max_points, extra=ood_sets or None)
    console.print(escape(summary["report"]))
    console.print(f"accuracy [bold]{summary['accuracy']:.4f}[/bold] on {summary['num_images']:,} images")
    if summary["unknown_images"]:
        console.print(f"{summary['unknown_images']:,} images of classes the model does not know were left out")
    files = dict(summary["files"])
    if ood_sets:
        from owlearn.evaluate import evaluate_rejection

        rejection = evaluate_rejection(model, dataset, ood_sets, out_dir)
        table = Table(title=f"Refusing the unknown ({rejection['detector'].get('detector')}, threshold for "
                            f"{rejection['detector'].get('accept_rate', 0):.1%} acceptance)")
        for col in ["OOD dataset", "AUROC", "FPR@95%TPR", "in-dist accepted", "OOD rejected", "acc. on accepted"]:
            table.add_column(col, justify="right" if col != "OOD dataset" else "left")
        for name, r in rejection["ood"].items():
            table.add_row(escape(name), f"{r['auroc']:.4f}", f"{r['fpr_at_95_tpr']:.2%}", f"{r['in_accepted']:.2%}",
                          f"{r['out_rejected']:.2%}", f"{r['accepted_accuracy']:.2%}")
        console.print(table)
        files.update(rejection["files"])
        files["ood_metrics"] = str(Path(out_dir) / "ood_metrics.json")
    for kind, path in files.items():
        console.print(escape(f"{kind.replace('_', ' ')}: {path}"))
    console.print(escape(f"metrics: {Path(out_dir) / 'metrics.json'}"))


def _dataset_of(model) -> str:
    from owlearn.data.sources import get_dataset_spec

    name = model.info.get("training", {}).get("dataset") or model.info.get("dataset") or ""
    base = name.split("/")[0]
    if not base:
        raise typer.BadParameter("the model does not say which dataset it was trained on; pass --data")
    try:
        get_dataset_spec(base)
    except ValueError:
        raise typer.BadParameter(f"the model was trained on {base!r}, not a dataset of `owlearn data list` "
                                 "(a folder?); pass --data PATH, with --split all for a folder without "
                                 "train/test sub-folders") from None
    return base


@app.command()
def predict(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model file."),
    images: list[Path] = typer.Argument(..., metavar="IMAGES...", help="PNG/JPEG files or folders of them."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
    top_k: int = typer.Option(3, min=1, help="Classes listed per image."),
) -> None:
    """Classify image files; with a detector in the model, answer 'unknown' for what it has never seen."""
    from owlearn.model import OwlModel
    from owlearn.preprocess import find_images

    model = OwlModel.load(model_path)
    files = find_images(images)
    if not files:
        raise typer.BadParameter("no image files found in the given paths")
    pred = model.predict(files)
    classes = model.classes
    k = min(top_k, len(classes))
    has_detector = pred.scores is not None
    if as_json:
        for i, (f, probs) in enumerate(zip(files, pred.probabilities)):
            order = probs.argsort()[::-1][:k]
            line = {"file": str(f), "class": pred.names[i],
                    "top": [{"class": classes[j], "p": round(float(probs[j]), 5)} for j in order]}
            if has_detector:
                line |= {"known": bool(pred.accepted[i]), "novelty_score": round(float(pred.scores[i]), 5)}
            print(json.dumps(line))
        return
    table = Table(title=escape(f"{model_path.name}: {len(files)} image(s)"))
    table.add_column("image")
    table.add_column("answer", style="bold")
    table.add_column("confidence", justify="right")
    if has_detector:
        table.add_column("score", justify="right")
    table.add_column(f"top {k}")
    for i, (f, probs) in enumerate(zip(files, pred.probabilities)):
        order = probs.argsort()[::-1][:k]
        answer = escape(pred.names[i]) if pred.labels[i] >= 0 else f"[red]{escape(pred.names[i])}[/red]"
        # a refused image has no class to be confident in; the top-k column still shows the classifier's view
        row = [escape(str(f)), answer, f"{probs[order[0]]:.3f}" if pred.labels[i] >= 0 else "—"]
        if has_detector:
            row.append(f"{pred.scores[i]:.3f}")
        row.append(escape(", ".join(f"{classes[j]} {probs[j]:.2f}" for j in order)))
        table.add_row(*row)
    console.print(table)
    if has_detector:
        console.print(escape(_threshold_note(model)))


def _threshold_note(model) -> str:
    """How the score column decides 'unknown', with the threshold of every class that has its own."""
    detector = model.info.get("rejection", {}).get("detector", "detector")
    thresholds = model.thresholds()
    note = (f"score ({detector} detector): higher = more like the known classes; an image is 'unknown' when its "
            f"score is below the threshold {model.detector.offset_:.3f}")
    own = [f"{c} {t:.3f}" for c, t in zip(model.classes, thresholds) if t != model.detector.offset_]
    if own:  # classes added later are calibrated on their own examples
        note += f" (for an image the classifier puts in one of these classes, that class's own: {', '.join(own)})"
    return note


@app.command("add-class")
def add_class(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model file trained with --gaussian."),
    images: list[Path] = typer.Argument(..., metavar="IMAGES...",
                                        help="Example images of the new class (files or folders)."),
    name: str = typer.Option(..., "--name", help="Name of the new class."),
) -> None:
    """Teach a saved model a new class from example images, without retraining (the file is updated atomically)."""
    import time

    from owlearn.model import OwlModel
    from owlearn.preprocess import find_images

    name = check_class_name(name)  # before the model is loaded: a typo costs nothing
    model = OwlModel.load(model_path)
    name = check_class_name(name, existing=model.classes)
    files = find_images(images)
    start = time.perf_counter()
    model.add_class(name, files)
    model.save(model_path)
    console.print(f"Added [bold]{escape(name)}[/bold] from {len(files)} images in {time.perf_counter() - start:.2f} "
                  f"s; {escape(str(model_path))} now knows {len(model.classes)} classes.")


@app.command()
def discover(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model file with a detector (and --gaussian "
                                                                 "to add classes)."),
    images: list[Path] = typer.Argument(..., metavar="IMAGES...", help="Images to look through (files or folders)."),
    k: int | None = typer.Option(None, "--groups", "-k", min=2, help="Number of groups (default: chosen by "
                                                                       "silhouette, 2 to --max-groups)."),
    max_groups: int = typer.Option(10, min=2, help="Largest number of groups tried when --groups is not given."),
    method: str = typer.Option("kmeans", help="kmeans (on the model's features) or iic (a fresh IIC network "
                                              "on the refused pixels)."),
    name: list[str] = typer.Option([], "--name", help="GROUP=NAME: add that group as a class (repeat the option)."),
    out: Path = typer.Option(Path("owlearn-discover"), "--out", "-o", help="Where groups.json and the contact "
                                                                          "sheets go."),
    seed: int = typer.Option(0, help="Seed of the grouping (the same seed gives the same groups)."),
) -> None:
    """Find new classes among images: refuse the unknown, group it, show each group, add named groups.

    First run without --name and look at OUT/group-NN.png; then run again with the same options plus
    --name 3=bag --name 5=shoe to add those groups as classes (the model file is updated atomically).
    """
    import torch

    from owlearn._atomic import atomic_open
    from owlearn.discover import discover as find_groups
    from owlearn.discover import name_groups
    from owlearn.model import OwlModel
    from owlearn.preprocess import find_images
    from owlearn.viz import contact_sheet

    names = {}
    for item in name:
        group, sep, label = item.partition("=")
        if not sep or not group.strip().isdigit() or not label.strip():
            raise typer.BadParameter(f"--name takes GROUP=NAME, e.g. 3=bag; got {item!r}")
        if int(group) in names:
            raise typer.BadParameter(f"group {int(group)} is named twice ({names[int(group)]!r} and {label.strip()!r})",
                                     param_hint="--name")
        names[int(group)] = check_class_name(label)
    check_output_folder(out, "--out")
    model = OwlModel.load(model_path)
    if names and model.gaussian is None:  # before the grouping work, not after it
        raise typer.BadParameter(f"{model_path} has no Gaussian classifier to add classes to; train it with "
                                 "--gaussian", param_hint="--name")
    for label in names.values():
        check_class_name(label, existing=model.classes)
    if len(set(names.values())) < len(names):
        raise typer.BadParameter(f"two groups are given the same name: {sorted(names.values())}",
                                 param_hint="--name")
    files = find_images(images)
    if not files:
        raise typer.BadParameter("no images found in the given paths")
    batch = model.as_batch(files)
    found = find_groups(model, batch, k=k, method=method, max_k=max_groups, seed=seed)
    console.print(f"The model refused {len(found.rejected):,} of {len(files):,} images; {found.k} groups "
                  f"({found.method}): sizes {found.sizes()}")
    out.mkdir(parents=True, exist_ok=True)
    empty = []
    for g in range(found.k):
        members = found.members(g)
        if len(members) == 0:  # IIC may leave a group empty: nothing to show, nothing to name
            empty.append(g)
            (out / f"group-{g:02d}.png").unlink(missing_ok=True)  # a sheet from an earlier run is not this group
            continue
        contact_sheet(batch[torch.as_tensor(members[:64])].numpy(), out / f"group-{g:02d}.png")
    if empty:
        console.print(f"Empty groups (no sheet): {', '.join(map(str, empty))}")
    if set(names) & set(empty):
        raise typer.BadParameter(f"group(s) {sorted(set(names) & set(empty))} are empty: nothing to add",
                                 param_hint="--name")
    doc = {"model": str(model_path), "images": len(files), "refused": len(found.rejected), "method": found.method,
           "groups": {g: [str(files[i]) for i in found.members(g)] for g in range(found.k)},
           "silhouettes": found.silhouettes}
    with atomic_open(out / "groups.json", "w") as fh:
        json.dump(doc, fh, indent=2)
    console.print(escape(f"Contact sheets: {out}/group-NN.png; members: {out}/groups.json"))
    if names:
        added = name_groups(model, batch, found, names)
        model.save(model_path)
        console.print(escape(f"Added {', '.join(added)}; {model_path} now knows {len(model.classes)} classes."))
    else:
        # the same grouping options give the same groups: the ones whose contact sheets were just written
        grouping = [f"--method {method}"] if method != "kmeans" else []
        grouping += [f"--groups {k}"] if k is not None else [f"--max-groups {max_groups}"] * (max_groups != 10)
        grouping += [f"--seed {seed}"] * (seed != 0)
        grouping += [f"--out {shlex.quote(str(out))}"] * (out != Path("owlearn-discover"))
        paths = " ".join(shlex.quote(str(p)) for p in [model_path, *images])  # safe to paste: spaces quoted
        console.print(escape(f"Next: owlearn discover {paths} {' '.join(grouping + ['--name GROUP=NAME'])}"))


@app.command()
def info(model_path: Path = typer.Argument(..., metavar="MODEL", help="A model file.")) -> None:
    """Show what a model file contains."""
    from owlearn.model import OwlModel

    model = OwlModel.load(model_path)
    spec = model.network.spec
    console.print(f"[bold]{escape(str(model_path))}[/bold]: {spec.backbone} + {spec.head}, input {spec.in_shape}, "
                  f"{sum(p.numel() for p in model.network.parameters()):,} parameters")
    console.print(escape(f"classes ({len(model.classes)}): {', '.join(model.classes)}"))
    if model.gaussian is not None:
        console.print("classifier: Gaussians in feature space (classes can be added with `owlearn add-class`)")
    rejection = model.info.get("rejection")
    if rejection:
        console.print(f"refuses the unknown: {rejection['detector']} detector, threshold for "
                      f"{rejection['accept_rate']:.1%} acceptance on {rejection['calibration_images']:,} "
                      "held-out images")
    training = model.info.get("training", {})
    if training:
        console.print(escape(f"trained on {training.get('dataset')} ({training.get('images', 0):,} images), "
                             f"{len(training.get('history', []))} epochs"))
    if "test_accuracy" in model.info:
        console.print(f"test accuracy {model.info['test_accuracy']:.4f}")
    if model.components:
        console.print(f"components: {', '.join(f'{k} ({type(v).__name__})' for k, v in model.components.items())}")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("owlearn-demo"), help="Where to write the model, plots and metrics."),
    epochs: int = typer.Option(30, min=1, help="Training epochs."),
    seed: int = typer.Option(0, help="Seed of the whole run."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """The open-world story in miniature, on scikit-learn's digits (offline, under a minute)."""
    from owlearn.demo import run_demo

    run_demo(out_dir, epochs=epochs, seed=seed, progress=progress, console=console)


@app.command()
def serve(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="The model file to serve (updated when taught)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port."),
    token: str | None = typer.Option(
        None, envvar="OWLEARN_TOKEN", help="Token needed to change the model, at least 8 characters (default: a "
                                            "random one, printed). A client that sends 10 wrong ones in a minute "
                                            "is refused for the rest of it."),
    max_upload_mb: float = typer.Option(4.0, min=0.01, help="Largest accepted upload, in MB."),
    max_batch: int = typer.Option(64, min=1, help="Most concurrent predictions answered by one forward pass."),
    batch_wait_ms: float = typer.Option(
        1.0, min=0.0, help="How long a batch waits for more requests before its forward pass (0: take only what "
                           "is waiting; batches still grow with the load)."),
    threads: int = typer.Option(1, min=0, help="PyTorch threads for predictions (0: PyTorch's default)."),
) -> None:
    """Serve the web page and API: draw, recognise, refuse, teach."""
    import secrets

    try:
        import uvicorn

        from owlearn.serve import ServeSettings, check_token, create_app
    except ImportError as exc:
        raise typer.BadParameter(f"the web service needs its extras: pip install 'owlearn[serve]' ({exc})") from None
    from owlearn.model import OwlModel

    if token is not None:  # an empty --token "" is a mistake, not a request for a random one
        try:
            check_token(token)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--token") from None
    OwlModel.load(model_path)  # fail here, with a clear message, rather than inside the server
    _check_can_listen(host, port)
    token = token or secrets.token_urlsafe(16)
    settings = ServeSettings(model_path=model_path, token=token, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                             max_batch=max_batch, batch_wait_ms=batch_wait_ms, torch_threads=threads or None)
    console.print(f"Serving {escape(str(model_path))} on http://{host}:{port}/  "
                  f"(token to change the model: [bold]{escape(token)}[/bold])")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def _check_can_listen(host: str, port: int) -> None:
    """Refuse an address that cannot be listened on before announcing it (uvicorn would print the
    address and token first, then fail)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise typer.BadParameter(f"cannot resolve {host!r}: {exc.strerror}", param_hint="--host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}",
                                     param_hint="--host/--port") from None


@app.command()
def bench(
    protocols: list[str] = typer.Argument(None, metavar="[PROTOCOL]...",
                                          help="Protocols to run, e.g. B1 B7 (default: all)."),
    only: list[str] = typer.Option([], "--only", help="Same as the PROTOCOL arguments: --only B1 B7."),
    quick: bool = typer.Option(False, help="Minutes-long smoke runs (results/*-quick.json) instead of the full ones."),
    report_only: bool = typer.Option(False, help="Run nothing: regenerate RESULTS.md, compare the results there are."),
    dry_run: bool = typer.Option(False, help="Print the commands without running them."),
    device: str | None = typer.Option(None, help="Passed to every script: auto, cpu or cuda."),
    seeds: str | None = typer.Option(None, help="Passed to every script, e.g. '0 1 2'."),
    checkout: Path | None = typer.Option(
        None, help="Source checkout holding benchmarks/ (default: the one owlearn runs from, or $OWLEARN_CHECKOUT)."),
) -> None:
    """Run the benchmark protocols, regenerate benchmarks/RESULTS.md and compare with the recorded anchors."""
    from owlearn import bench as b

    try:
        root = b.find_checkout(checkout)
    except b.NoCheckout as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    asked = {p.upper() for text in [*(protocols or []), *only] for p in text.replace(",", " ").split()}
    unknown = sorted(asked - set(b.PROTOCOLS))
    if unknown:
        raise typer.BadParameter(f"unknown protocol(s) {unknown}; choose from {', '.join(b.PROTOCOLS)}")
    chosen = [p for p in b.PROTOCOLS if p in asked or not asked]
    extra = [*(["--device", device] if device else []), *(["--seeds", *seeds.split()] if seeds else [])]
    failed = []
    if dry_run:
        console.print(escape(f"checkout: {root}"))
        for proto in chosen:
            for script in b.PROTOCOLS[proto]:
                cmd = b.command(root, script, quick, extra)
                shown = ' '.join(cmd[1:]) if cmd else f"(no {b.missing(root, script)} here)"
                console.print(escape(f"{proto}: {shown}"))
        return
    if not report_only:
        status = b.run(root, chosen, quick, extra, console.print)
        failed = [f for f, s in status.items() if s.startswith("failed")]
    if b.regenerate_report(root) != 0:
        failed.append("report.py")
    values, problems = b.measures(b.load_results(root, quick))
    rows = b.compare(b.load_anchors(root), values, chosen)
    kind = "quick runs: smoke numbers; the targets are about full runs" if quick else "full runs"
    table = Table(title=f"owlearn bench — {kind} (anchors: benchmarks/anchors.json)")
    for col in ["", "what", "measured", "anchor", "verdict", "source"]:
        table.add_column(col, justify="right" if col in ("measured", "anchor") else "left", overflow="fold",
                         ratio=4 if col == "what" else None)
    style = {"met": "green", "missed": "red", "not measured": "dim"}
    for r in rows:
        measured = "—" if r["measured"] is None else f"{r['measured']:.4g}"
        anchor = f"{r.get('op', '')} {r['value']:g}".strip() if r["kind"] == "target" else f"ref. {r['value']:g}"
        verdict = f"[{style.get(r['verdict'], '')}]{r['verdict']}[/]" if r["verdict"] else ""
        table.add_row(r["protocol"], r["what"], measured, anchor, verdict, r["source"].split(",")[0].split(" (")[0])
    console.print(table)
    for problem in problems:
        console.print(f"[yellow]{problem}[/yellow]")
    console.print(escape(f"RESULTS.md: {root / 'benchmarks' / 'RESULTS.md'}"))
    if failed:
        err_console.print(f"[red]failed:[/red] {', '.join(failed)}")
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the owlearn version."""
    console.print(f"owlearn {__version__}")


_register_data_app()


def _register_continual() -> None:
    from owlearn.continual.cli import continual

    app.command("continual")(continual)


_register_continual()


def _register_cluster() -> None:
    from owlearn.cluster.cli import cluster

    app.command("cluster")(cluster)


_register_cluster()


def main() -> None:
    """Entry point: user errors are printed as one clear line, not a traceback (OWLEARN_DEBUG=1 shows it)."""
    # ValueError covers owlearn.bundle.ModelFileError, which is not imported here: it would import PyTorch
    # before `owlearn --help` could answer
    from owlearn.errors import OwlearnError

    user_errors: tuple[type[BaseException], ...] = (ValueError, OSError, OwlearnError)
    try:
        app()
    except user_errors as exc:
        if os.environ.get("OWLEARN_DEBUG"):
            raise
        # one line whatever the terminal's width (messages quoting PyTorch can span several); under torchrun
        # every process meets the same bad input, so each line says which process wrote it
        world = os.environ.get("WORLD_SIZE", "1")
        who = f" (process {os.environ.get('RANK', '?')} of {world})" if world.isdigit() and int(world) > 1 else ""
        err_console.print(f"[red]error{who}:[/red] {escape(' '.join(str(exc).split()))}", highlight=False,
                          soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
