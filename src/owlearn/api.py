"""Building and training models in a few calls: what the CLI, the demo and the benchmarks share."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from owlearn.data.augment import AugmentConfig
from owlearn.data.dataset import ImageDataset
from owlearn.model import OwlModel
from owlearn.nets.network import Network, NetworkSpec
from owlearn.preprocess import Preprocessing, guess_background
from owlearn.train.loop import History, Hook, Objective, TrainConfig, Trainer


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of a uint8 batch, on the [0, 1] scale."""
    x = images[: 20_000].float().div_(255)  # a sample is plenty for two moments
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def build_model(data: ImageDataset, backbone: str = "convnet", head: str = "l2softmax", *,
                head_args: dict | None = None, backbone_args: dict | None = None,
                fit: Literal["resize", "digit"] = "resize", seed: int = 0) -> OwlModel:
    """A fresh model for images shaped like ``data``'s, normalised with ``data``'s statistics.

    Examples
    --------
    >>> ds = ImageDataset(torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.arange(8) % 2, ["a", "b"])
    >>> build_model(ds, "convnet", "linear").network.spec.num_classes
    2
    """
    mean, std = channel_stats(data.images)
    spec = NetworkSpec(backbone, head, data.num_classes, data.shape, mean, std,
                       backbone_args or {}, head_args or {})
    torch.manual_seed(seed)  # the initial weights are part of a reproducible run
    network = Network(spec)
    prep = Preprocessing(data.shape, background=guess_background(data.images), fit=fit)
    return OwlModel(network, list(data.class_names), prep, info={"dataset": data.name})


def train_model(model: OwlModel, train: ImageDataset, val: ImageDataset | None = None, *,
                config: TrainConfig | None = None, augment: AugmentConfig | None = None,
                objectives: list[Objective] | None = None, hooks: list[Hook] | None = None,
                checkpoint_dir: str | Path | None = None, resume: bool = False,
                progress: bool = True) -> History:
    """Train ``model`` in place with the shared loop; the run is recorded in ``model.info``."""
    config = config or TrainConfig()
    augment = augment or AugmentConfig()
    trainer = Trainer(model.network, config, objectives=objectives, hooks=hooks, augment=augment,
                      checkpoint_dir=checkpoint_dir, progress=progress)
    history = trainer.fit(train, val, resume=resume)
    model.network.eval()
    model.info["training"] = {
        "dataset": train.name, "images": len(train), "config": config.to_json(), "augment": augment.to_json(),
        "history": history.epochs,
    }
    return history
