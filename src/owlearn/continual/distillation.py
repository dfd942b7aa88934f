"""Knowledge distillation from the model as it was before the current experience (LwF).

The teacher is frozen, so when images are not augmented its logits are the same at every epoch: they
are computed once per experience in one inference pass over the training set, and each step looks up
its batch's rows by ``step.index`` — a table lookup instead of a second forward pass per step. With
augmentation the teacher sees the augmented batch instead (exact, one extra forward pass).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from owlearn.continual.base import Context, Strategy, frozen_copy
from owlearn.continual.scenarios import Experience
from owlearn.data.dataset import ImageDataset
from owlearn.train.loop import CrossEntropy, Objective, Step, predict_logits


class TeacherLogits:
    """The teacher's logits for a batch: a row lookup in a precomputed table, or a forward pass."""

    def __init__(self, teacher: nn.Module, train: ImageDataset, augmented: bool, batch_size: int = 1024):
        self.teacher = teacher
        self.table = None if augmented else predict_logits(teacher, train, batch_size)  # (N, K) on the CPU
        self._on_device: torch.Tensor | None = None

    def __call__(self, step: Step) -> torch.Tensor:
        if self.table is None:
            with torch.no_grad():
                return self.teacher(step.x)
        if self._on_device is None or self._on_device.device != step.x.device:
            self._on_device = self.table.to(step.x.device)
        return self._on_device[step.index]


class Distillation:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))`` over the old classes' logits (Hinton et al.)."""

    name = "kd"

    def __init__(self, teacher: TeacherLogits, classes: list[int], temperature: float = 2.0, weight: float = 1.0):
        self.teacher, self.temperature, self.weight = teacher, temperature, weight
        self.classes = torch.as_tensor(classes, dtype=torch.long)

    def __call__(self, step: Step) -> torch.Tensor:
        cls = self.classes.to(step.x.device)
        t = self.temperature
        student = F.log_softmax(step.logits[:, cls] / t, dim=1)
        teacher = F.log_softmax(self.teacher(step)[:, cls] / t, dim=1)
        return self.weight * t * t * F.kl_div(student, teacher, log_target=True, reduction="batchmean")


class LwF(Strategy):
    """Learning without Forgetting (Li & Hoiem 2016): cross-entropy on the new data plus distillation of
    the old classes' outputs from the previous model, on the new images.

    Parameters
    ----------
    temperature
        Softmax temperature of the distillation (2 in the paper).
    weight
        Weight of the distillation term relative to the cross-entropy.
    """

    name = "lwf"

    def __init__(self, temperature: float = 2.0, weight: float = 1.0):
        self.temperature, self.weight = temperature, weight
        self._teacher: nn.Module | None = None

    def objectives(self, ctx: Context, exp: Experience, train: ImageDataset) -> list[Objective]:
        objectives: list[Objective] = [CrossEntropy(ctx.config.label_smoothing)]
        if self._teacher is not None and ctx.old_classes:
            teacher = TeacherLogits(self._teacher, train, not ctx.augment.is_identity, ctx.config.eval_batch_size)
            objectives.append(Distillation(teacher, ctx.old_classes, self.temperature, self.weight))
        return objectives

    def after_training(self, ctx: Context, exp: Experience, train: ImageDataset) -> None:
        self._teacher = frozen_copy(ctx.network)
