"""Turn user images (files, PIL images, arrays) into the uint8 tensors a model was trained on.

A model remembers how its training images looked (:class:`Preprocessing`): size, channels, whether
the object is bright on a dark background (MNIST) or dark on a light one (a scanned page), and
whether digits were size-normalised the MNIST way. Images given to ``predict`` are brought to the
same form, so a black-on-white PNG of a digit is recognised by a model trained on MNIST.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000
"""Images with more pixels than this are refused (decompression bombs)."""


@dataclass
class Preprocessing:
    """How the model's training images looked.

    Attributes
    ----------
    in_shape
        ``(C, H, W)`` of the network input.
    background
        ``"dark"`` when objects are bright on a dark background (MNIST, Fashion-MNIST), ``"light"``
        for dark on light, ``"any"`` to never invert.
    fit
        ``"resize"`` scales the whole image to ``H×W``; ``"digit"`` crops to the ink, fits it into a
        box of 20/28 of the side keeping the aspect ratio and centres it by its centre of mass, as
        MNIST was made.
    """

    in_shape: tuple[int, int, int]
    background: Literal["dark", "light", "any"] = "dark"
    fit: Literal["resize", "digit"] = "resize"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Preprocessing:
        data = dict(data)
        data["in_shape"] = tuple(data["in_shape"])
        return cls(**data)


def guess_background(images: torch.Tensor) -> Literal["dark", "light"]:
    """Whether the border pixels of a uint8 batch are mostly dark or mostly light."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)
    return "dark" if float(border.float().mean()) < 128 else "light"


def open_image(path: str | Path) -> Image.Image:
    """Open an image file, refusing missing, unreadable and oversized files with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        img = Image.open(path)
        if img.width * img.height > MAX_PIXELS:
            raise ValueError(f"{path}: {img.width}×{img.height} pixels is more than the {MAX_PIXELS:,} allowed")
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path} is not a readable image ({exc})") from exc
    return img


def to_model_input(img: Image.Image | np.ndarray, prep: Preprocessing) -> torch.Tensor:
    """One image → a uint8 tensor ``(C, H, W)`` looking like the model's training images."""
    c, h, w = prep.in_shape
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    if img.mode in ("RGBA", "LA", "P"):
        # transparent pixels of a drawing are background: composite over white, then decide below
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    img = img.convert("L" if c == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    if prep.background != "any":
        border = np.concatenate([arr[0].ravel(), arr[-1].ravel(), arr[:, 0].ravel(), arr[:, -1].ravel()])
        if (border.mean() >= 128) != (prep.background == "light"):
            arr = 255 - arr
    if prep.fit == "digit" and c == 1:
        arr = _fit_digit(arr, h, w, dark_background=prep.background != "light")
    else:
        arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR), dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


def _fit_digit(arr: np.ndarray, h: int, w: int, dark_background: bool) -> np.ndarray:
    """MNIST's normalisation: crop to the ink, fit into 20/28 of the frame, centre by mass."""
    ink = arr if dark_background else 255 - arr
    ys, xs = np.nonzero(ink > 30)
    if len(ys) == 0:
        return np.zeros((h, w), dtype=np.uint8) if dark_background else np.full((h, w), 255, np.uint8)
    crop = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    box = max(1, round(min(h, w) * 20 / 28))
    scale = box / max(crop.shape)
    new_h, new_w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop).resize((new_w, new_h), Image.LANCZOS), dtype=np.float64)
    canvas = np.zeros((h, w), dtype=np.float64)
    total = small.sum()
    cy, cx = ((np.indices(small.shape) * small).reshape(2, -1).sum(1) / total) if total > 0 else (new_h / 2, new_w / 2)
    top = int(round(h / 2 - cy))
    left = int(round(w / 2 - cx))
    top = min(max(top, 0), h - new_h)
    left = min(max(left, 0), w - new_w)
    canvas[top:top + new_h, left:left + new_w] = small
    out = np.clip(canvas, 0, 255).astype(np.uint8)
    return out if dark_background else 255 - out


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into the image files they contain (sorted); files are kept as given."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*")
                            if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return found


def load_images(paths: Iterable[str | Path], prep: Preprocessing) -> torch.Tensor:
    """Load image files into one uint8 batch ``(N, C, H, W)`` ready for the model."""
    files = list(paths)
    if not files:
        return torch.empty((0, *prep.in_shape), dtype=torch.uint8)
    return torch.stack([to_model_input(open_image(f), prep) for f in files])
