"""The one training loop of owlearn.

Every training method plugs into :class:`Trainer` instead of writing its own loop: a method is a set
of *objectives* (loss terms computed from a :class:`Step`) and *hooks* (callbacks at named points).
Cross-entropy is the default objective; VAT, EWC, distillation and IIC are further objectives.

Reproducibility: shuffling, augmentation and dropout of epoch ``e`` draw from generators seeded with
``(seed, e)``, and the learning rate is a pure function of the step. A run resumed from the
checkpoint of epoch ``e`` therefore continues exactly like the uninterrupted run.

Under torchrun (see :mod:`owlearn.train.distributed`) every process draws the same permutation, takes its
slice of each global batch (``batch_size`` is the global batch), augments it from its own seeded stream, and
gradients are averaged after ``backward``; rank 0 alone shows progress and writes checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from owlearn.data.augment import AugmentConfig, augment_batch
from owlearn.data.dataset import UNLABELED, ImageDataset
from owlearn.errors import OwlearnError
from owlearn.nets.inference import for_inference
from owlearn.nets.network import to_float
from owlearn.train import checkpoint as ckpt
from owlearn.train import distributed
from owlearn.train.progress import TrainingProgress


class TrainingDiverged(RuntimeError, OwlearnError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")  # also in owlearn._options, which the CLI reads without importing torch
_NONFINITE_CHECK_STEPS = 32  # on accelerators, steps between reading the NaN/inf flag back


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (stored with checkpoints and model files)."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup: float = 0.15
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    eval_batch_size: int = 256
    time_budget_s: float | None = None
    """Stop after this many seconds of training, with the schedule stretched or squeezed to fit: the
    learning rate follows whichever is further along, the steps or the time (``epochs`` becomes the
    most that will run). Makes "the best model in 10 minutes on this machine" one setting; the
    result then depends on the machine's speed, so it is not reproducible step for step."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Arithmetic of the training steps' forward passes: ``auto`` runs them under bfloat16 autocast on CUDA
    GPUs that support it (Ampere and later) and in float32 elsewhere; ``bf16`` uses autocast on any device
    (CPUs without bf16 instructions run it slowly); ``fp32`` never does. Parameters, optimizer state,
    backward's accumulation and evaluation stay float32, and VAT's power iteration and IIC's joint
    distribution are computed in float32 whatever the setting."""
    compile: bool | str = False
    """Run the training steps' feature extractor through ``torch.compile``: ``True`` for its default
    backend (inductor), or a backend's name. The first steps pay the compilation (about 30 s for the
    ConvNet). Meant for GPUs: on the 2-core CPU of this project's benchmarks, compiled training ran at
    0.80× (SimpleNet) and 0.83× (ConvNet) the eager speed (B7 in benchmarks/RESULTS.md)."""

    def __post_init__(self) -> None:
        # a typo here would otherwise surface only in the middle of training, or never (an unknown schedule
        # used to fall back to one-cycle silently)
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(f"epochs, batch_size and eval_batch_size must be at least 1, got {self.epochs}, "
                             f"{self.batch_size} and {self.eval_batch_size}")
        # an infinite or negative rate would only show as a NaN loss some steps later
        for name in ("lr", "weight_decay"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a finite number ≥ 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        return cls(**data)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else is passed to ``torch.device``.

    A name torch does not know, or a CUDA device this machine does not have, is a ``ValueError`` that
    says so (torch's own errors name neither the option nor what would work).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: this machine (or this PyTorch build) has no CUDA GPU; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether training steps run under bfloat16 autocast (see ``TrainConfig.precision``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return precision == "bf16"


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, progress: float | None = None) -> float:
    """Learning-rate multiplier at ``step``: one-cycle (linear warm-up, cosine decay), cosine or constant.

    ``progress`` (a fraction of the run, e.g. of a time budget) replaces ``step / total_steps``."""
    t = min(step / max(total_steps, 1) if progress is None else progress, 1.0)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if t < cfg.warmup:
        return 0.04 + 0.96 * t / cfg.warmup
    return 0.5 * (1 + math.cos(math.pi * (t - cfg.warmup) / (1 - cfg.warmup)))


class Step:
    """What an objective sees of one training step.

    ``x`` is the augmented float batch, ``y`` its labels (``-1`` where unlabeled). ``features`` and
    ``logits`` are computed on first use and shared by all objectives of the step.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                 x_raw: torch.Tensor, generator: torch.Generator, epoch: int, step: int):
        self.model, self.x, self.y, self.index, self.x_raw = model, x, y, index, x_raw
        self.generator, self.epoch, self.step = generator, epoch, step
        self._features: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None

    @property
    def features(self) -> torch.Tensor:
        if self._features is None:
            self._features = self.model.features(self.x)
        return self._features

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            self._logits = self.model.head(self.features)
        return self._logits

    @property
    def labelled(self) -> torch.Tensor:
        return self.y != UNLABELED


class Objective(Protocol):
    """A loss term: returns a scalar tensor to add to the loss (and a name for the progress log)."""

    name: str

    def __call__(self, step: Step) -> torch.Tensor: ...


class CrossEntropy:
    """Cross-entropy on the labelled images of the batch."""

    name = "ce"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, step: Step) -> torch.Tensor:
        mask = step.labelled
        if step.y.device.type != "cpu":  # branching on the mask would make the host wait for the GPU every step
            return masked_cross_entropy(step.logits, step.y, self.label_smoothing)
        if bool(mask.all()):
            return F.cross_entropy(step.logits, step.y, label_smoothing=self.label_smoothing)
        if not bool(mask.any()):
            return step.logits.sum() * 0.0
        return F.cross_entropy(step.logits[mask], step.y[mask], label_smoothing=self.label_smoothing)


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the labelled rows (0 when there are none), without reading anything back from
    the device."""
    total = F.cross_entropy(logits, y, ignore_index=UNLABELED, reduction="sum", label_smoothing=label_smoothing)
    return total / (y != UNLABELED).sum().clamp(min=1)


class Hook:
    """Callbacks at named points of :meth:`Trainer.fit`; override the ones you need."""

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...
    def on_after_backward(self, trainer: Trainer, step: Step) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...


HOOK_NAMES = ("on_fit_start", "on_epoch_start", "on_after_backward", "on_epoch_end", "on_fit_end")


@dataclass
class History:
    """One dict of logs per finished epoch."""

    epochs: list[dict] = field(default_factory=list)

    @property
    def last(self) -> dict:
        return self.epochs[-1] if self.epochs else {}


class Trainer:
    """Trains a network (see :class:`owlearn.nets.Network`) on an :class:`ImageDataset`.

    Parameters
    ----------
    model
        A module with ``features(x)`` and ``head(features)``; ``forward`` = head(features).
    config
        Hyper-parameters; see :class:`TrainConfig`.
    objectives
        Loss terms summed each step; default ``[CrossEntropy(config.label_smoothing)]``.
    hooks
        Callbacks; see :class:`Hook`.
    augment
        Batched augmentation applied to every training batch.
    checkpoint_dir
        Where ``last.ckpt`` is written after every epoch (atomically); ``None`` disables checkpoints.
    progress
        Show a progress bar (loss, accuracy, images/s).

    Examples
    --------
    >>> from owlearn.nets import Network, NetworkSpec
    >>> ds = ImageDataset(torch.randint(0, 255, (64, 1, 8, 8), dtype=torch.uint8), torch.arange(64) % 2, ["a", "b"])
    >>> net = Network(NetworkSpec("convnet", "linear", 2, (1, 8, 8)))
    >>> history = Trainer(net, TrainConfig(epochs=1, batch_size=32), progress=False).fit(ds)
    >>> sorted(history.last)[:3]
    ['acc', 'epoch', 'images_per_s']
    """

    def __init__(self, model: nn.Module, config: TrainConfig | None = None, *,
                 objectives: list[Objective] | None = None, hooks: list[Hook] | None = None,
                 augment: AugmentConfig | None = None, checkpoint_dir: str | Path | None = None,
                 progress: bool = True, extra_state: Callable[[], dict] | None = None):
        self.config = config or TrainConfig()
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device)
        if self.config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.objectives = objectives if objectives is not None else [CrossEntropy(self.config.label_smoothing)]
        self.hooks = hooks or []
        self.augment = augment or AugmentConfig()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.progress = progress
        self.optimizer = self._make_optimizer()
        # what the training steps call; the parameters, checkpoints and hooks stay self.model's
        self.step_model = _CompiledSteps(self.model, self.config.compile) if self.config.compile else self.model
        self.autocast_bf16 = uses_bf16(self.config.precision, self.device)
        self.history = History()
        self.global_step = 0
        self.total_steps = 0
        self.budget_spent = False

    clock: Callable[[], float] = staticmethod(time.perf_counter)  # tests replace it with a fake clock

    # -- set-up ---------------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                # biases, norm scales and α of the L2 head are not weight-decayed
                (no_decay if p.dim() <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(groups, lr=cfg.lr)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr)
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd, adam or adamw")

    def _call_hooks(self, name: str, *args) -> None:
        for hook in self.hooks:
            getattr(hook, name)(self, *args)

    def _epoch_generator(self, epoch: int) -> torch.Generator:
        # one independent stream per (seed, epoch): resuming at any epoch replays the same numbers
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)

    # -- the loop -------------------------------------------------------------------------------------
    def fit(self, train: ImageDataset, val: ImageDataset | None = None, *, resume: bool = False) -> History:
        """Train for ``config.epochs`` epochs (continuing from the last checkpoint when ``resume``)."""
        cfg = self.config
        n = len(train)
        if n == 0:
            raise ValueError(f"{train.name or 'training set'} is empty")
        batch = min(cfg.batch_size, n)
        steps_per_epoch = n // batch  # drop the last partial batch: BatchNorm dislikes tiny batches
        self.total_steps = steps_per_epoch * cfg.epochs
        self._shard = self._rank_slice(batch)
        if cfg.time_budget_s is not None:
            if cfg.time_budget_s <= 0:
                raise ValueError(f"time_budget_s must be positive, got {cfg.time_budget_s}")
            if distributed.is_distributed():
                # every process would have to agree on the step to stop at: not supported yet
                raise ValueError("time_budget_s is not supported under torch.distributed; set epochs instead")
        start_epoch = 0
        if resume:
            start_epoch = self._resume()
        # seconds already trained (a resumed run continues its budget)
        self._trained_s = sum(e.get("seconds", 0.0) for e in self.history.epochs)
        distributed.broadcast_module(self.model)  # all processes start from rank 0's weights, as DDP does
        images = train.images.to(self.device)
        labels = train.labels.to(self.device)
        self._call_hooks("on_fit_start")
        with TrainingProgress(enabled=self.progress and distributed.is_main(), epochs=cfg.epochs,
                              steps=steps_per_epoch) as bar:
            for epoch in range(start_epoch, cfg.epochs):
                if self.budget_spent:
                    break
                bar.start_epoch(epoch)
                try:
                    logs = self._train_epoch(epoch, images, labels, batch, steps_per_epoch, bar)
                except (RuntimeError, ValueError) as exc:
                    # BatchNorm on a 1 x 1 map of a single image has no batch statistics: fails at the first
                    # step, with PyTorch naming a tensor size rather than the setting to change
                    if "Expected more than 1 value per channel" not in str(exc):
                        raise
                    raise ValueError(f"a training step of {self._shard[1] - self._shard[0]} image(s) is too small "
                                     f"for this network's BatchNorm layers ({exc}): raise batch_size") from exc
                distributed.average_buffers(self.model)  # one model on every process before eval and saving
                if val is not None and len(val):
                    logs["val_acc"] = evaluate_accuracy(self.model, val, cfg.eval_batch_size, self.device)
                self.history.epochs.append(logs)
                bar.end_epoch(logs)
                self._call_hooks("on_epoch_end", epoch, logs)
                if self.checkpoint_dir is not None:
                    self.save_checkpoint(epoch)
        self._call_hooks("on_fit_end")
        return self.history

    def _train_epoch(self, epoch: int, images: torch.Tensor, labels: torch.Tensor, batch: int,
                     steps: int, bar: TrainingProgress) -> dict:
        cfg = self.config
        g = self._epoch_generator(epoch)
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))  # dropout & friends
        order = torch.randperm(len(labels), generator=g).to(self.device)
        if distributed.is_distributed():
            # the permutation above is shared; augmentation and dropout of each slice get their own stream
            g = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) * 65_537 + distributed.rank())
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
        lo, hi = self._shard
        self.model.train()
        self._call_hooks("on_epoch_start", epoch)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        counted = torch.zeros((), dtype=torch.long, device=self.device)
        # Reading a GPU value back waits for every queued kernel; small networks are then bound by the host.
        # On accelerators the loss is checked for NaN/inf every few steps, from a flag kept on the device.
        check_every = self._nonfinite_check_steps()
        nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        start = self.clock()
        done = steps
        for i in range(steps):
            self.global_step = epoch * steps + i
            progress = None
            if cfg.time_budget_s is not None:
                spent = self._trained_s + self.clock() - start
                if spent >= cfg.time_budget_s:
                    self.budget_spent, done = True, i
                    break
                progress = max(self.global_step / max(self.total_steps, 1), spent / cfg.time_budget_s)
            lr = cfg.lr * lr_factor(cfg, self.global_step, self.total_steps, progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            index = order[i * batch + lo:i * batch + hi]
            x_raw = to_float(images[index])
            x = augment_batch(x_raw, self.augment, g)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            step = Step(self.step_model, x, labels[index], index, x_raw, g, epoch, self.global_step)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
                loss = sum(objective(step) for objective in self.objectives)
            nonfinite |= ~torch.isfinite(loss.detach())
            if (i + 1) % check_every == 0 or i + 1 == steps:
                self._raise_if_diverged(nonfinite, loss, epoch, i, check_every, lr)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(self.model.parameters())  # hooks see the global batch's gradient
            self._call_hooks("on_after_backward", step)
            self.optimizer.step()
            loss_sum += loss.detach()
            if step._logits is not None:
                mask = step.labelled
                correct += ((step._logits.detach().argmax(1) == step.y) & mask).sum()
                counted += mask.sum()
            bar.advance(i + 1, loss_sum, i + 1, correct, counted, batch * (i + 1) / max(self.clock() - start, 1e-9))
        if 0 < done < steps:  # the time budget stopped the epoch between two checks
            self._raise_if_diverged(nonfinite, loss, epoch, done - 1, check_every, lr)
        seconds = self.clock() - start
        self._trained_s += seconds
        counted = int(counted)
        if distributed.is_distributed():  # logs describe the global batches, the same on every process
            totals = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(counted), device=self.device)])
            distributed.all_reduce_sum(totals)
            loss_sum, correct, counted = totals[0] / distributed.world_size(), totals[1], int(totals[2])
        logs = {
            "epoch": epoch + 1,
            "loss": float(loss_sum) / max(done, 1),
            "acc": float(correct) / counted if counted else float("nan"),
            "lr": lr if done else cfg.lr,
            "seconds": seconds,
            "images_per_s": done * batch / seconds if seconds > 0 else float("nan"),
        }
        if done < steps:
            logs["steps"] = done  # the time budget ended this epoch early
        return logs

    def _nonfinite_check_steps(self) -> int:
        return 1 if self.device.type == "cpu" else _NONFINITE_CHECK_STEPS

    def _raise_if_diverged(self, nonfinite: torch.Tensor, loss: torch.Tensor, epoch: int, i: int, check_every: int,
                           lr: float) -> None:
        if not bool(nonfinite):
            return
        where = f" Last good checkpoint: {self.checkpoint_path}" if self.checkpoint_dir else ""
        if check_every == 1:
            what = f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {i + 1}"
        else:
            what = f"loss became NaN or infinite at epoch {epoch + 1}, by step {i + 1}"
        raise TrainingDiverged(f"{what}; try a lower learning rate (now {lr:.3g}).{where}")

    # -- checkpoints ----------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / "last.ckpt" if self.checkpoint_dir else None

    def save_checkpoint(self, epoch: int) -> Path:
        """Write model, optimizer, epoch and history to ``checkpoint_dir/last.ckpt`` atomically (rank 0 only;
        the others wait, so that every process may read it afterwards)."""
        assert self.checkpoint_path is not None
        if distributed.is_main():
            ckpt.save(self.checkpoint_path, model=self.model, optimizer=self.optimizer,
                      meta={"epoch": epoch + 1, "history": self.history.epochs, "config": self.config.to_json()})
        distributed.barrier()
        return self.checkpoint_path

    @staticmethod
    def _rank_slice(batch: int) -> tuple[int, int]:
        """Where this process's shard lies in each global batch: ``(0, batch)`` in a single process."""
        world = distributed.world_size() if distributed.is_distributed() else 1
        if batch % world:
            raise ValueError(f"the batch of {batch} images does not split evenly over {world} processes; "
                             f"choose a batch size divisible by {world}")
        shard = batch // world
        start = distributed.rank() * shard if world > 1 else 0
        return start, start + shard

    def _resume(self) -> int:
        path = self.checkpoint_path
        if path is None:
            raise ValueError("resume needs a checkpoint directory")
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint to resume from at {path}")
        saved = TrainConfig.from_json(ckpt.read_meta(path)["config"])
        # a changed schedule, batch or optimizer cannot reproduce the uninterrupted run (and a saved Adam state
        # would quietly drive an AdamW); say so, naming the change, before any state is restored
        fields = ("epochs", "batch_size", "seed", "optimizer", "lr", "momentum", "weight_decay", "schedule")
        changed = [f"{f}={getattr(saved, f)!r}" for f in fields if getattr(saved, f) != getattr(self.config, f)]
        if changed:
            raise ValueError(f"{path} was written with {', '.join(changed)}; resume with the same settings")
        meta = ckpt.load(path, model=self.model, optimizer=self.optimizer)
        self.history.epochs = list(meta["history"])
        return int(meta["epoch"])


class _CompiledSteps:
    """The network as training steps see it: ``features`` runs through ``torch.compile``, and every other
    attribute (the heads, ``modules()``, ``train()``) is the network's own, so that objectives, hooks, the
    optimizer and checkpoints all work on one set of parameters and state-dict keys stay unprefixed."""

    def __init__(self, network: nn.Module, backend: bool | str):
        self._network = network
        self.features = torch.compile(network.features, backend="inductor" if backend is True else backend)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._network.head(self.features(x))

    def __getattr__(self, name: str):
        return getattr(self._network, name)


@torch.inference_mode()
def predict_logits(model: nn.Module, data: ImageDataset | torch.Tensor, batch_size: int = 256,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Logits of every image, batched, in eval mode; returned on the CPU."""
    return batched_forward(model, data, batch_size, device, fn=lambda m, x: m(x))


def extract_features(model: nn.Module, data: ImageDataset | torch.Tensor, batch_size: int = 256,
                     device: torch.device | str | None = None, embed: bool = False) -> torch.Tensor:
    """Backbone features (or the head's embedding with ``embed=True``) of every image, on the CPU."""
    return batched_forward(model, data, batch_size, device, fn=(lambda m, x: m.embed(x)) if embed else
                    (lambda m, x: m.features(x)))


def batched_forward(model: nn.Module, data: ImageDataset | torch.Tensor, batch_size: int = 256,
                    device: torch.device | str | None = None, *, fn: Callable) -> torch.Tensor:
    """``fn(network, batch)`` over ``data`` in batches, on the fast inference copy of ``model``
    (:func:`owlearn.nets.inference.for_inference`), concatenated on the CPU."""
    images = data.images if isinstance(data, ImageDataset) else data
    device = torch.device(device) if device is not None else next(model.parameters()).device
    fast = for_inference(model)  # batch norm folded, channels-last: the same function, about twice as fast
    fmt = torch.channels_last if _is_channels_last(fast) else torch.contiguous_format
    result = torch.empty(0)
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = to_float(images[i:i + batch_size].to(device))
            if x.dim() == 4:
                x = x.contiguous(memory_format=fmt)  # a layout mismatch would cost a conversion per layer
            y = fn(fast, x)
            if i == 0:
                # one output tensor filled in place, not a list of per-batch outputs concatenated at the end,
                # which held the output twice at that moment
                with torch.inference_mode(False):  # a normal tensor, usable later in autograd
                    result = torch.empty((len(images), *y.shape[1:]), dtype=torch.float32)
            result[i:i + len(y)] = y  # casts to float32 and copies to the CPU
    return result


def _is_channels_last(model: nn.Module) -> bool:
    return any(p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1 and not p.is_contiguous()
               and p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters())


def evaluate_accuracy(model: nn.Module, data: ImageDataset, batch_size: int = 256,
                      device: torch.device | str | None = None) -> float:
    """Top-1 accuracy on the labelled images of ``data``."""
    logits = predict_logits(model, data, batch_size, device)
    mask = data.labels != UNLABELED
    return float((logits[mask].argmax(1) == data.labels[mask]).float().mean())
