"""The network owlearn trains: preprocessing → backbone → head, described by a JSON-able spec."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from owlearn.nets.backbones import BACKBONES
from owlearn.nets.heads import HEADS

LAYER_POOLINGS = ("mean", "meanstd")


@dataclass
class NetworkSpec:
    """Everything needed to rebuild a network (weights aside); stored as JSON in the model file.

    ``mean`` and ``std`` normalise images given as floats in [0, 1], one value per channel.
    """

    backbone: str
    head: str
    num_classes: int
    in_shape: tuple[int, int, int]
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    backbone_args: dict = field(default_factory=dict)
    head_args: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {sorted(HEADS)}")
        self.in_shape = tuple(int(v) for v in self.in_shape)  # type: ignore[assignment]
        # the spec must read back from JSON unchanged (tuples become lists there), so hold the JSON form
        self.backbone_args = json.loads(json.dumps(self.backbone_args))
        self.head_args = json.loads(json.dumps(self.head_args))
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if len(self.mean) != self.in_shape[0] or len(self.std) != self.in_shape[0]:
            raise ValueError(f"mean/std need one value per channel ({self.in_shape[0]}), "
                             f"got {len(self.mean)} and {len(self.std)}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> NetworkSpec:
        return cls(**data)


class Network(nn.Module):
    """Preprocessing, backbone and head in one module.

    ``forward`` takes float images in [0, 1] of shape ``(N, C, H, W)`` and returns logits;
    ``features`` returns the backbone's feature vectors, ``embed`` the head's view of them
    (normalised for L2-softmax and cosine heads) — the space the outlier detectors work in.

    Examples
    --------
    >>> spec = NetworkSpec("convnet", "l2softmax", num_classes=10, in_shape=(1, 28, 28))
    >>> net = Network(spec)
    >>> net(torch.rand(4, 1, 28, 28)).shape, net.features(torch.rand(4, 1, 28, 28)).shape
    (torch.Size([4, 10]), torch.Size([4, 256]))
    """

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.backbone = BACKBONES[spec.backbone](in_shape=spec.in_shape, **spec.backbone_args)
        self.head = HEADS[spec.head](self.backbone.feature_dim, spec.num_classes, **spec.head_args)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1))

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.embed(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def layer_features(self, x: torch.Tensor, pooling: str = "mean") -> list[torch.Tensor]:
        """Pooled features of every backbone stage, shallow to deep: ``[(N, D_1), ..., (N, D_L)]``.

        Lee et al. (2018) detect outliers better from several depths than from the last one alone:
        shallower stages keep stroke and texture statistics that the classifier learns to ignore.
        ``pooling="mean"`` averages each channel over space; ``"meanstd"`` appends each channel's
        standard deviation over space (twice the width). A stage that is already a vector is kept.
        """
        return self.layer_outputs(x, pooling)[0]

    def layer_outputs(self, x: torch.Tensor, pooling: str = "mean", from_stage: int = 0
                      ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """:meth:`layer_features` (of the stages from ``from_stage`` on), :meth:`embed` and logits from
        one pass through the backbone.

        Relies on the backbones' contract that the last stage, averaged over space, is their feature
        vector (global average pooling, or a stage that is already a vector).
        """
        if pooling not in LAYER_POOLINGS:
            raise ValueError(f"pooling must be one of {LAYER_POOLINGS}, got {pooling!r}")
        stages = self.backbone.stages(self.normalize(x))
        pooled = [_pool(fmap, pooling) for fmap in stages[from_stage:]]
        last = stages[-1]
        features = last if last.dim() == 2 else last.mean(dim=(2, 3))
        return pooled, self.head.embed(features), self.head(features)

    def layer_dims(self, pooling: str = "mean", from_stage: int = 0) -> list[int]:
        """Width of each entry of :meth:`layer_features` (from ``from_stage`` on)."""
        return self._layer_dims(pooling)[from_stage:]

    def _layer_dims(self, pooling: str) -> list[int]:
        # the widths follow from the architecture alone: probe once per pooling, not on every prediction
        cache = self.__dict__.setdefault("_layer_dims_cache", {})
        if pooling not in cache:
            cache[pooling] = self._probe_layer_dims(pooling)
        return list(cache[pooling])

    def _probe_layer_dims(self, pooling: str) -> list[int]:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                probe = torch.zeros(1, *self.spec.in_shape, device=self.mean.device)
                return [f.shape[1] for f in self.layer_features(probe, pooling)]
        finally:
            self.train(was_training)


def _pool(fmap: torch.Tensor, pooling: str) -> torch.Tensor:
    """A stage's output as a vector: kept if it is one, else each channel's mean over space, and with
    ``"meanstd"`` its sample standard deviation over space too."""
    if fmap.dim() == 2:
        return fmap
    mean = F.adaptive_avg_pool2d(fmap, 1).flatten(1)  # fast on channels-last maps, unlike mean(dim=(2, 3))
    if pooling == "mean":
        return mean
    n = fmap.shape[2] * fmap.shape[3]
    if n == 1:
        return torch.cat([mean, torch.zeros_like(mean)], dim=1)  # a 1×1 map has no spread: 0, not NaN
    square = F.adaptive_avg_pool2d(fmap * fmap, 1).flatten(1)
    var = (square - mean * mean).clamp_min(0) * (n / (n - 1))
    return torch.cat([mean, var.sqrt()], dim=1)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in [0, 1] (float inputs pass unchanged)."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images
