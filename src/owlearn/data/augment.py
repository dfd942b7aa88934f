"""Augmentation applied to whole batches of tensors.

Per-image augmentation in a DataLoader worker costs far more than the small networks owlearn trains
on, so every transform here works on a batch ``(N, C, H, W)`` of floats in [0, 1] at once: random
parameters are drawn per image from an explicit generator (for reproducibility), and the image-wise
choice is applied with masks and ``torch.where``. Random numbers are drawn on the CPU generator and
then moved, so the same seed gives the same augmentation on CPU and GPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F


@dataclass
class AugmentConfig:
    """Which transforms to apply and how strongly. All default to off.

    Attributes
    ----------
    hflip
        Mirror left-right with probability 0.5 (clothing, natural images; not digits).
    crop_pad
        Random crop after zero-padding this many pixels: a translation by up to ±``crop_pad``.
    rotate
        Maximum rotation in degrees (uniform in ±``rotate``).
    scale
        ``(low, high)`` range of isotropic scale factors.
    shear
        Maximum shear (skew) angle in degrees.
    translate
        Maximum sub-pixel translation as a fraction of the image size (with the affine transforms).
    noise
        Standard deviation of additive Gaussian noise.
    binarize
        Probability of thresholding an image at its mean (the IIC write-up's binarisation).
    contrast
        Maximum relative change of contrast (factor uniform in 1 ± ``contrast``).
    erase
        Probability of blanking a random square of a quarter of the image side (cutout).
    """

    hflip: bool = False
    crop_pad: int = 0
    rotate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    translate: float = 0.0
    noise: float = 0.0
    binarize: float = 0.0
    contrast: float = 0.0
    erase: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> AugmentConfig:
        data = dict(data)
        if "scale" in data:
            data["scale"] = tuple(data["scale"])
        return cls(**data)

    @property
    def is_identity(self) -> bool:
        return self == AugmentConfig()


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "digits": AugmentConfig(rotate=10, scale=(0.9, 1.1), translate=0.08),
    "fashion": AugmentConfig(hflip=True, crop_pad=2),
    "cifar": AugmentConfig(hflip=True, crop_pad=4),
    "iic": AugmentConfig(rotate=25, scale=(0.8, 1.2), shear=15, translate=0.1, noise=0.1, binarize=0.2,
                         contrast=0.3),
}


def preset(name: str) -> AugmentConfig:
    """The named augmentation preset (``none``, ``digits``, ``fashion``, ``cifar``, ``iic``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (high - low) + low


def _random_crop(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in ±pad, filling with zeros (one gather, no loop).

    Measured on a 2-core CPU for 128 images of 28×28: 1.0 ms, against 2.2 ms for slicing the batch
    once per offset group.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    rows = (torch.arange(h, device=x.device) + dy[:, None])[:, None, :, None]  # (N, 1, H, 1)
    cols = (torch.arange(w, device=x.device) + dx[:, None])[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def _random_affine(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Rotation, scale, shear and translation in one grid_sample."""
    n = x.shape[0]
    angle = _uniform(n, -cfg.rotate, cfg.rotate, g) * (math.pi / 180)
    scale = _uniform(n, *cfg.scale, g)
    shear = _uniform(n, -cfg.shear, cfg.shear, g) * (math.pi / 180)
    tx = _uniform(n, -cfg.translate, cfg.translate, g) * 2  # grid coordinates span [-1, 1]
    ty = _uniform(n, -cfg.translate, cfg.translate, g) * 2
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # inverse map (output → input coordinates): R(θ) · Shear · (1/s)
    theta = torch.stack([
        torch.stack([cos, cos * tan - sin, tx], dim=1),
        torch.stack([sin, sin * tan + cos, ty], dim=1),
    ], dim=1) / scale.view(n, 1, 1)
    theta[:, :, 2] *= scale.view(n, 1)  # keep the translation in output units
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply ``cfg`` to a float batch ``(N, C, H, W)`` in [0, 1]; returns a new tensor.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(8, 1, 28, 28)
    >>> augment_batch(x, preset("iic"), g).shape
    torch.Size([8, 1, 28, 28])
    """
    if cfg.is_identity:
        return x
    n, dev = x.shape[0], x.device
    if cfg.crop_pad:
        x = _random_crop(x, cfg.crop_pad, generator)
    if cfg.hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(dev).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    if cfg.rotate or cfg.shear or cfg.translate or cfg.scale != (1.0, 1.0):
        x = _random_affine(x, cfg, generator)
    if cfg.contrast:
        factor = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator).to(dev).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * factor + mean).clamp_(0, 1)
    if cfg.binarize:
        mask = (torch.rand(n, generator=generator) < cfg.binarize).to(dev).view(n, 1, 1, 1)
        x = torch.where(mask, (x > x.mean(dim=(1, 2, 3), keepdim=True)).to(x.dtype), x)
    if cfg.erase:
        x = _random_erase(x, cfg.erase, generator)
    if cfg.noise:
        noise = torch.randn(x.shape, generator=generator).to(dev, x.dtype)
        x = (x + cfg.noise * noise).clamp_(0, 1)
    return x


def _random_erase(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    size_h, size_w = max(1, h // 4), max(1, w // 4)
    apply = (torch.rand(n, generator=g) < p).to(x.device)
    top = torch.randint(0, h - size_h + 1, (n,), generator=g).to(x.device)
    left = torch.randint(0, w - size_w + 1, (n,), generator=g).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + size_h).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + size_w).view(n, 1, 1)))
    box &= apply.view(n, 1, 1)
    return x.masked_fill(box.unsqueeze(1), 0.0)
