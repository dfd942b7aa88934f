"""``owlearn continual``: run continual-learning strategies along a scenario and report them.

Registered on the top-level app by :mod:`owlearn.cli`; kept here so the command lives beside the
package it drives.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from owlearn._options import DATA_DIR_OPTION, PRECISION_OPTION, check_device, check_output_folder

_out = Console()
_err = Console(stderr=True)

SCENARIO_HELP = ("split-fashion (B4: Fashion-MNIST in class groups), fashion-to-mnist (domain-incremental: "
                 "Fashion-MNIST then the MNIST-10k split), or class-incremental (any --data, split into class groups).")


def continual(
    strategy: list[str] = typer.Option(
        ["replay"], "--strategy", "-s",
        help="naive, joint, ewc, online-ewc, lwf, icarl, replay, gaussian; repeat or separate by commas to compare, "
             "or 'all'."),
    scenario: str = typer.Option("split-fashion", help=SCENARIO_HELP),
    data: str = typer.Option("fashion-mnist",
                             help="Dataset of --scenario class-incremental (see `owlearn data list`)."),
    experiences: int = typer.Option(5, min=1, help="Number of experiences of a class-incremental scenario."),
    class_order: str | None = typer.Option(None, help="Order in which classes arrive, e.g. 9,8,7,6,5,4,3,2,1,0."),
    order_seed: int | None = typer.Option(None, help="Draw the class order at random with this seed."),
    backbone: str = typer.Option("simplenet", help="simplenet, convnet or resnet18."),
    epochs: int = typer.Option(5, min=1, help="Epochs per experience."),
    batch_size: int = typer.Option(64, min=1, help="Images per step."),
    lr: float = typer.Option(0.01, min=0.0, help="Learning rate (SGD, momentum 0.9, constant)."),
    memory_size: int = typer.Option(2000, min=1, help="Exemplars kept by replay and iCaRL."),
    ewc_strength: float = typer.Option(30.0, min=0.0, help="λ of EWC and online EWC."),
    temperature: float = typer.Option(2.0, min=0.01, help="Distillation temperature of LwF and iCaRL."),
    icarl_metric: str = typer.Option(
        "mahalanobis", help="iCaRL's nearest-mean-of-exemplars rule: mahalanobis (the exemplars' shared "
                            "covariance) or cosine (the paper's)."),
    icarl_selection: str = typer.Option(
        "kernel-herding", help="How iCaRL picks its exemplars: kernel-herding (matches each class's spread), "
                               "herding (the paper's: matches the class mean) or random."),
    train_limit: int | None = typer.Option(None, min=1, help="Use only the first N training images (quick runs)."),
    seed: int = typer.Option(0, help="Seed of initialisation, shuffling and memory selection."),
    device: str = typer.Option("auto", help="auto, cpu, cuda …"),
    precision: str = PRECISION_OPTION,
    out: Path = typer.Option(Path("continual-results"), "--out", "-o",
                             help="Folder for the results JSON and the plots."),
    data_dir: Path | None = DATA_DIR_OPTION,
    progress: bool = typer.Option(True, help="Show the training progress bar."),
) -> None:
    """Train strategies experience by experience and report accuracy matrix, forgetting and plots."""
    from owlearn.continual import STRATEGIES, b4_config, build_network, make_strategy, run_continual
    from owlearn.continual.plots import write_run_outputs
    from owlearn.continual.rehearsal import SELECTIONS

    names = [n.strip() for s in strategy for n in s.split(",") if n.strip()]
    if names == ["all"]:
        names = list(STRATEGIES)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise typer.BadParameter(f"unknown strategy {', '.join(unknown) or '(none)'}; choose from "
                                 f"{', '.join(STRATEGIES)} or all", param_hint="--strategy")
    if icarl_metric not in ("mahalanobis", "cosine"):
        raise typer.BadParameter(f"{icarl_metric!r}: choose mahalanobis or cosine", param_hint="--icarl-metric")
    if icarl_selection not in SELECTIONS:
        raise typer.BadParameter(f"{icarl_selection!r}: choose {', '.join(SELECTIONS)}",
                                 param_hint="--icarl-selection")
    if class_order and order_seed is not None:  # one of them would be silently ignored
        raise typer.BadParameter("give either a class order or a seed to draw one, not both",
                                 param_hint="--class-order/--order-seed")
    check_device(device)  # before any data is loaded or strategy trained
    check_output_folder(out, "--out")
    stream = _scenario(scenario, data, experiences, class_order, order_seed, train_limit, data_dir)
    rehearsing = [n for n in names if n in ("icarl", "replay")]
    blocks = sum(len(e.classes) for e in stream.experiences)  # a class that comes back in a new domain counts again
    if rehearsing and memory_size < blocks:
        verb = "needs" if len(rehearsing) == 1 else "need"
        raise typer.BadParameter(f"{' and '.join(rehearsing)} {verb} at least one exemplar of each class from each "
                                 f"experience: a memory of {memory_size} cannot hold the {blocks} of {stream.name}",
                                 param_hint="--memory-size")
    _out.print(f"[bold]{escape(stream.name)}[/bold]: {len(stream)} experiences "
               f"({escape(', '.join(e.name for e in stream.experiences))}); {backbone}, {epochs} epochs each")
    params = {"icarl": {"memory_size": memory_size, "temperature": temperature, "metric": icarl_metric,
                        "selection": icarl_selection},
              "replay": {"memory_size": memory_size},
              "ewc": {"strength": ewc_strength}, "online-ewc": {"strength": ewc_strength},
              "lwf": {"temperature": temperature}}
    results = {}
    for name in names:
        config = b4_config(seed=seed, device=device, epochs=epochs)
        config.batch_size, config.lr, config.precision = batch_size, lr, precision  # type: ignore[assignment]
        network = build_network(stream, backbone, seed=seed)
        results[name] = run_continual(stream, make_strategy(name, **params.get(name, {})), network, config=config,
                                      progress=progress, log=lambda line: _err.print(line))
    table = Table(title=escape(stream.name))
    for col in ("strategy", "final accuracy", "avg incremental", "forgetting", "BWT", "train s"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for name, r in results.items():
        s = r.to_json()
        fmt = (lambda v: "—" if v is None else f"{v:.3f}")  # noqa: E731
        table.add_row(name, f"{s['final_accuracy']:.4f}", fmt(s["average_incremental_accuracy"]),
                      fmt(s["forgetting"]), fmt(s["backward_transfer"]), f"{s['train_seconds']:.1f}")
    _out.print(table)
    paths = write_run_outputs(results, out)
    _out.print(escape(f"Results: {paths['results']}; plots: {paths['accuracy_over_experiences']} and per strategy "
                      f"in {out}/"))


def _scenario(kind: str, data: str, experiences: int, class_order: str | None, order_seed: int | None,
              train_limit: int | None, data_dir: Path | None):
    from owlearn.continual.scenarios import _first, class_incremental, fashion_to_mnist, split_fashion_mnist

    order = None
    if class_order:
        try:
            order = [int(c) for c in class_order.split(",")]
        except ValueError:
            raise typer.BadParameter(f"cannot read {class_order!r}: give class indices like 4,3,2,1,0",
                                     param_hint="--class-order") from None
    if kind == "split-fashion":
        return split_fashion_mnist(experiences, class_order=order, seed=order_seed, data_dir=data_dir,
                                   train_limit=train_limit)
    if kind == "fashion-to-mnist":
        return fashion_to_mnist(data_dir=data_dir, train_limit=train_limit)
    if kind == "class-incremental":
        from owlearn.data.sources import load_dataset

        train, test = load_dataset(data, "train", data_dir=data_dir), load_dataset(data, "test", data_dir=data_dir)
        return class_incremental(_first(train, train_limit), test, experiences, class_order=order, seed=order_seed,
                                 name=f"split {data} ({experiences} experiences)")
    raise typer.BadParameter(f"unknown scenario {kind!r}; choose split-fashion, fashion-to-mnist or "
                             "class-incremental", param_hint="--scenario")
