"""What every continual-learning strategy shares: the context it sees and the steps it may change.

A strategy never runs its own loop. For each experience the runner asks it for a training set (the
experience's images, perhaps with a replay memory), for objectives (loss terms) and hooks, trains with
:class:`owlearn.train.Trainer`, then lets the strategy update its state (memory, Fisher, teacher) and
predict. A strategy overrides only the steps it needs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from owlearn.continual.scenarios import Experience, Scenario
from owlearn.data.augment import AugmentConfig
from owlearn.data.dataset import ImageDataset
from owlearn.train.loop import CrossEntropy, Hook, Objective, TrainConfig, Trainer, predict_logits


@dataclass
class Context:
    """The run as a strategy sees it: the network being trained, the stream, and where we are in it."""

    network: nn.Module
    scenario: Scenario
    config: TrainConfig
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    progress: bool = False
    experience: int = 0

    @property
    def seen_classes(self) -> list[int]:
        return self.scenario.seen_classes(self.experience)

    @property
    def old_classes(self) -> list[int]:
        """Classes seen before the current experience."""
        return self.scenario.seen_classes(self.experience - 1) if self.experience else []

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


class Strategy:
    """Naive fine-tuning: train on each experience in turn, nothing kept. Subclasses add what they need.

    Steps, in the order the runner calls them for each experience: :meth:`training_set`,
    :meth:`objectives`, :meth:`hooks`, training (skipped when :meth:`trains_on` is false),
    :meth:`after_training`; then :meth:`predict` for evaluation.
    """

    name = "naive"

    def trains_on(self, ctx: Context, exp: Experience) -> bool:
        return True

    def training_set(self, ctx: Context, exp: Experience) -> ImageDataset:
        return exp.train

    def objectives(self, ctx: Context, exp: Experience, train: ImageDataset) -> list[Objective]:
        return [CrossEntropy(ctx.config.label_smoothing)]

    def hooks(self, ctx: Context, exp: Experience, train: ImageDataset) -> list[Hook]:
        return []

    def after_training(self, ctx: Context, exp: Experience, train: ImageDataset) -> None: ...

    @torch.inference_mode()
    def predict(self, ctx: Context, images: torch.Tensor) -> torch.Tensor:
        """Predicted labels of uint8 ``images`` ``(N, C, H, W)``; default: the head's argmax."""
        return predict_logits(ctx.network, images, ctx.config.eval_batch_size).argmax(1)

    def config(self) -> dict:
        """The strategy's parameters, for the results file."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and _jsonable(v)}

    # -- shared by the runner -------------------------------------------------------------------------
    def train_experience(self, ctx: Context, exp: Experience) -> dict:
        """Run one experience through the shared training loop; returns what the runner logs."""
        train = self.training_set(ctx, exp)
        history = None
        if self.trains_on(ctx, exp):
            trainer = Trainer(ctx.network, ctx.config, objectives=self.objectives(ctx, exp, train),
                              hooks=self.hooks(ctx, exp, train), augment=ctx.augment, progress=ctx.progress)
            history = trainer.fit(train)
        ctx.network.eval()
        self.after_training(ctx, exp, train)
        return {"train_images": len(train), "epochs": history.epochs if history else []}


def frozen_copy(network: nn.Module) -> nn.Module:
    """A copy of ``network`` in eval mode with gradients off: the teacher of distillation."""
    teacher = copy.deepcopy(network).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _jsonable(v) -> bool:
    return isinstance(v, int | float | str | bool | type(None)) or (
        isinstance(v, list | tuple) and all(isinstance(x, int | float | str) for x in v))
