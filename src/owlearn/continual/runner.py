"""Run a strategy along a scenario and measure it: the accuracy matrix and what follows from it.

``R[i, j]`` is the accuracy on experience ``j``'s test set after training on experiences ``0..i``
(:class:`owlearn.metrics.AccuracyMatrix`). The test sets of all experiences are predicted in one pass
per step and split afterwards. Seconds are split into training (including the strategy's own work:
memory, Fisher, teacher logits, class statistics) and evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from owlearn.continual.base import Context, Strategy
from owlearn.continual.scenarios import Scenario
from owlearn.data.augment import AugmentConfig
from owlearn.metrics import AccuracyMatrix, confusion_matrix
from owlearn.nets.network import Network, NetworkSpec
from owlearn.train.loop import TrainConfig, resolve_device


def b4_config(seed: int = 0, device: str = "auto", epochs: int = 5) -> TrainConfig:
    """Benchmark B4's recipe: SGD lr 0.01 momentum 0.9, batch 64, 5 epochs per experience, constant rate.

    No weight decay (as in the Avalanche baselines). owlearn's loop uses Nesterov momentum.

    Feature and evaluation passes also go 64 images at a time: at SimpleNet's size a pass costs the same
    per image at 64 as at 256, and blocks of the training step's sizes are what the heap already holds.
    With 256, the Gaussian strategy's peak memory varied from 434 to 454 MB between identical runs, as
    glibc's heap fragmented differently; with 64 it was 429-431 MB each time.
    """
    return TrainConfig(epochs=epochs, batch_size=64, eval_batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9,
                       weight_decay=0.0, schedule="constant", seed=seed, device=device)


def build_network(scenario: Scenario, backbone: str = "simplenet", head: str = "linear", seed: int = 0,
                  backbone_args: dict | None = None) -> Network:
    """A fresh network with one output per class of the scenario, normalised with the first experience's
    pixel statistics (later experiences are not known yet when it is built)."""
    from owlearn.api import channel_stats

    first = scenario.experiences[0].train
    mean, std = channel_stats(first.images)
    torch.manual_seed(seed)
    return Network(NetworkSpec(backbone, head, scenario.num_classes, first.shape, mean, std, backbone_args or {}))


@dataclass
class ContinualResult:
    """Everything a run measured; :meth:`to_json` is what the results files hold."""

    strategy: str
    strategy_config: dict
    scenario: str
    kind: str
    experiences: list[str]
    class_names: list[str]
    matrix: AccuracyMatrix
    seen_accuracy: list[float | None]  # after step i: accuracy on the test images of experiences 0..i
    final_confusion: np.ndarray
    train_seconds: list[float]
    eval_seconds: list[float]
    logs: list[dict] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        """Accuracy on all test images of all experiences after the last one (B4's 'final accuracy')."""
        cm = self.final_confusion
        return float(np.trace(cm) / cm.sum())

    @property
    def per_class_accuracy(self) -> list[float]:
        rows = self.final_confusion.sum(1)
        return [float(self.final_confusion[k, k] / rows[k]) if rows[k] else float("nan")
                for k in range(len(rows))]

    def to_json(self) -> dict[str, Any]:
        summary = self.matrix.summary()
        return {
            "strategy": self.strategy, "strategy_config": self.strategy_config, "scenario": self.scenario,
            "kind": self.kind, "experiences": self.experiences, "class_names": self.class_names,
            "final_accuracy": self.final_accuracy, "seen_accuracy": self.seen_accuracy,
            "accuracy_matrix": [[None if np.isnan(v) else float(v) for v in row] for row in self.matrix.values],
            "final_row": [float(v) for v in self.matrix.values[-1]],
            **{k: summary[k] for k in ("average_accuracy", "average_incremental_accuracy", "forgetting",
                                       "backward_transfer")},
            # null, not NaN, for a class with no test image: JSON has no NaN, and strict parsers refuse it
            "per_class_accuracy": [None if np.isnan(v) else v for v in self.per_class_accuracy],
            "final_confusion": self.final_confusion.tolist(),
            "train_seconds": float(sum(self.train_seconds)), "eval_seconds": float(sum(self.eval_seconds)),
            "train_seconds_per_experience": self.train_seconds, "logs": self.logs,
        }


def run_continual(scenario: Scenario, strategy: Strategy, network: nn.Module | None = None, *,
                  config: TrainConfig | None = None, augment: AugmentConfig | None = None, progress: bool = False,
                  log: Callable[[str], None] | None = None) -> ContinualResult:
    """Train ``strategy`` on each experience of ``scenario`` in turn and fill the accuracy matrix.

    Parameters
    ----------
    network
        The network to train (default: :func:`build_network`, SimpleNet with a linear head).
    config
        Training recipe per experience (default: :func:`b4_config`); each experience shuffles with its
        own seed derived from ``config.seed``.
    progress
        Show the training loop's progress bar.
    log
        Called with one line per experience (e.g. ``print``).

    Examples
    --------
    >>> from owlearn.continual.scenarios import class_incremental
    >>> from owlearn.data import ImageDataset
    >>> g = torch.Generator().manual_seed(0)
    >>> ds = ImageDataset(torch.randint(0, 255, (64, 1, 16, 16), dtype=torch.uint8, generator=g),
    ...                   torch.arange(64) % 4, list("abcd"))
    >>> result = run_continual(class_incremental(ds, ds, 2), Strategy(), config=b4_config(epochs=1))
    >>> np.array(result.matrix.values).shape
    (2, 2)
    """
    config = config or b4_config()
    network = network if network is not None else build_network(scenario, seed=config.seed)
    network = network.to(resolve_device(config.device))
    ctx = Context(network, scenario, config, augment or AugmentConfig(), progress)
    final_only = getattr(strategy, "final_only", False)
    test = scenario.test_upto(len(scenario) - 1)
    owner = torch.cat([torch.full((len(e.test),), e.index) for e in scenario.experiences])  # experience of each
    matrix = AccuracyMatrix(len(scenario))
    seen_acc: list[float | None] = []
    train_s, eval_s, logs = [], [], []
    pred = torch.empty(0, dtype=torch.long)
    for exp in scenario.experiences:
        ctx.experience = exp.index
        ctx.config = dataclasses.replace(config, seed=config.seed * 1000 + exp.index)
        t0 = time.perf_counter()
        info = strategy.train_experience(ctx, exp)
        train_s.append(time.perf_counter() - t0)
        last = exp.index == len(scenario) - 1
        t0 = time.perf_counter()
        if final_only and not last:
            eval_s.append(0.0)
            seen_acc.append(None)
        else:
            pred = strategy.predict(ctx, test.images)
            correct = (pred == test.labels).float()
            row = [float(correct[owner == j].mean()) for j in range(len(scenario))]
            if not final_only:
                matrix.record(exp.index, row)
            else:
                matrix.values[-1] = row
            seen_acc.append(float(correct[owner <= exp.index].mean()))
            eval_s.append(time.perf_counter() - t0)
        logs.append({"experience": exp.index, "name": exp.name, "classes": exp.classes, **info,
                     "seen_accuracy": seen_acc[-1], "train_seconds": train_s[-1]})
        if log is not None:
            acc = f"accuracy on experiences seen {seen_acc[-1]:.4f}" if seen_acc[-1] is not None else "not evaluated"
            log(f"{strategy.name}: experience {exp.index + 1}/{len(scenario)} ({exp.name}): {acc} "
                f"({train_s[-1]:.1f} s training)")
    cm = confusion_matrix(test.labels.numpy(), pred.numpy(), scenario.num_classes)
    return ContinualResult(strategy.name, strategy.config(), scenario.name, scenario.kind,
                           [e.name for e in scenario.experiences], list(scenario.class_names), matrix, seen_acc,
                           cm, train_s, eval_s, logs)
