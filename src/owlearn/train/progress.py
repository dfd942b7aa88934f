"""Progress bar of the training loop: epoch, step, loss, accuracy and images/s (rich)."""

from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgress:
    """A rich progress bar that redraws at most ``refresh_per_s`` times a second.

    Reading a loss tensor's value forces the device to synchronise, so the values are read only
    when the bar is redrawn, not at every step.
    """

    def __init__(self, enabled: bool, epochs: int, steps: int, refresh_per_s: float = 4.0):
        self.enabled, self.epochs, self.steps = enabled, epochs, steps
        self.interval = 1.0 / refresh_per_s
        self._last = 0.0
        self._progress: Progress | None = None
        self._task = None
        self.console = Console(stderr=True)

    def __enter__(self) -> TrainingProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=self.console,
                transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        """Show a fresh bar for ``epoch`` (0-based)."""
        if self._progress is not None:
            self._task = self._progress.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.steps, stats="")

    def advance(self, done: int, loss_sum: torch.Tensor, n_steps: int, correct: torch.Tensor,
                counted: torch.Tensor | int, images_per_s: float) -> None:
        if self._progress is None:
            return
        now = time.perf_counter()
        if now - self._last < self.interval and done < self.steps:
            return
        self._last = now
        counted = int(counted)  # read back here, when the bar is drawn, not at every step
        acc = f" acc {float(correct) / counted:.3f}" if counted else ""
        self._progress.update(self._task, completed=done,
                              stats=f"loss {float(loss_sum) / n_steps:.4f}{acc} {images_per_s:,.0f} img/s")

    def end_epoch(self, logs: dict) -> None:
        if self._progress is None:
            return
        val = f" val_acc {logs['val_acc']:.4f}" if "val_acc" in logs else ""
        self._progress.console.print(
            f"epoch {logs['epoch']}/{self.epochs}: loss {logs['loss']:.4f} acc {logs['acc']:.4f}{val} "
            f"({logs['seconds']:.1f} s, {logs['images_per_s']:,.0f} img/s)")
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None

