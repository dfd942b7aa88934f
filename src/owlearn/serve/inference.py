"""Reading request images and answering a batch of them with one forward pass.

No image work runs on the event loop: a request handler only takes the image's bytes off the request;
the batch thread parses each header (enough to refuse an oversized image before any pixel is decoded),
decodes the pixels, brings them to the model's input form and runs the model on the whole batch.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from fastapi import HTTPException
from PIL import Image

from owlearn.model import OwlModel
from owlearn.preprocess import Preprocessing, to_model_input
from owlearn.serve.upload import PARSERS, claimed_format


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


@dataclass
class ImageJob:
    """One image to recognise: its encoded bytes (PNG, JPEG, ...), whether it is a canvas drawing, and how
    to call it in an error message."""

    data: bytes
    drawing: bool
    what: str = "the image"


def open_image_bytes(data: bytes, what: str, limits: ImageLimits) -> Image.Image:
    """Parse an image's header; refuse empty, oversized and unreadable data with a 4xx."""
    if len(data) > limits.max_bytes:
        raise HTTPException(413, f"{what} is {len(data):,} bytes; the limit is {limits.max_bytes:,}")
    if not data:
        raise HTTPException(400, f"{what} is empty")
    try:  # only the accepted formats' parsers see the data, whatever type the request declared
        img = Image.open(io.BytesIO(data), formats=PARSERS)
    except Image.DecompressionBombError:
        raise HTTPException(413, f"{what} has more pixels than the {limits.max_pixels:,} allowed") from None
    except Image.UnidentifiedImageError:  # PIL's message names the BytesIO object, nothing the client sent
        claimed = claimed_format(data)
        if claimed:
            raise HTTPException(400, f"{what} is not a readable image (a {claimed} image broken or cut short)"
                                ) from None
        raise HTTPException(415, f"{what} is not a {_format_list(' or ')} image") from None
    except Exception as exc:  # noqa: BLE001 — PIL raises many types for bad headers; all mean "not an image"
        raise HTTPException(400, f"{what} is not a readable image ({_reason(exc)})") from None
    if img.width * img.height > limits.max_pixels:  # refused before its pixels are decoded
        raise HTTPException(413, f"{what} is {img.width}×{img.height} pixels; the limit is "
                                 f"{limits.max_pixels:,} pixels")
    if img.width < 1 or img.height < 1:
        raise HTTPException(400, f"{what} has no pixels ({img.width}×{img.height})")
    return img


def data_url_bytes(url: str, what: str, limits: ImageLimits) -> bytes:
    """The image bytes of a ``data:image/...;base64,`` URL."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:image/") or ";base64" not in head:
        raise HTTPException(400, f"{what} must be a base64 image data URL (data:image/png;base64,...)")
    if len(payload) > limits.max_bytes * 4 // 3 + 4:
        raise HTTPException(413, f"{what} is larger than the {limits.max_bytes:,}-byte limit")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{what} is not valid base64") from None
    return data


def open_data_url(url: str, what: str, limits: ImageLimits) -> Image.Image:
    """Parse a ``data:image/...;base64,`` URL's image header (see :func:`open_image_bytes`)."""
    return open_image_bytes(data_url_bytes(url, what, limits), what, limits)


def model_input(model: OwlModel, img: Image.Image, drawing: bool, what: str = "the image") -> torch.Tensor:
    """Decode the pixels and bring them to the model's input form; a bad image gets a 400."""
    prep = model.preprocessing
    if drawing and prep.in_shape[0] == 1:
        # a canvas drawing is a stroke on a blank page: normalise it the way MNIST digits were made
        prep = Preprocessing(prep.in_shape, background=prep.background, fit="digit")
    try:
        img.load()
        fast = _already_model_sized(img, prep)
        return fast if fast is not None else to_model_input(img, prep)
    except Exception as exc:  # noqa: BLE001 — truncated or corrupt data surfaces here in many PIL types
        raise HTTPException(400, f"{what} is not a readable image ({_reason(exc)})") from None


def _already_model_sized(img: Image.Image, prep: Preprocessing) -> torch.Tensor | None:
    """What :func:`to_model_input` gives for an image already in the model's size and mode (MNIST-like
    uploads), without its PIL conversions and copies, which cost more than the network for a 28×28 image;
    ``None`` for any other image."""
    c, h, w = prep.in_shape
    if prep.fit != "resize" or img.size != (w, h) or img.mode != ("L" if c == 1 else "RGB"):
        return None
    arr = np.asarray(img, dtype=np.uint8)
    if prep.background != "any":
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]], axis=None)
        if (border.mean() >= 128) != (prep.background == "light"):
            arr = 255 - arr
    t = torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True))
    return t.unsqueeze(0) if c == 1 else t.permute(2, 0, 1).contiguous()


def predict_jobs(model: OwlModel, jobs: Sequence[ImageJob], top_k: int,
                 limits: ImageLimits) -> list[dict | HTTPException]:
    """Answer every job with one forward pass of ``model``; a job whose image is bad gets its own 4xx."""
    results: list[dict | HTTPException | None] = [None] * len(jobs)
    inputs, where = [], []
    for i, job in enumerate(jobs):
        try:
            img = open_image_bytes(job.data, job.what, limits)
            inputs.append(model_input(model, img, job.drawing, job.what))
            where.append(i)
        except HTTPException as exc:
            results[i] = exc
    if inputs:
        pred = model.predict(torch.stack(inputs))
        classes = model.classes
        thresholds = model.thresholds() if pred.scores is not None else None
        top = np.argsort(-pred.probabilities, axis=1)[:, :top_k]
        for row, i in enumerate(where):
            probs, nearest = pred.probabilities[row], int(pred.nearest[row])
            body = {
                "answer": pred.names[row], "known": bool(pred.accepted[row]) if pred.accepted is not None else True,
                "nearest": classes[nearest], "confidence": float(probs[top[row, 0]]),
                "top": [{"class": classes[k], "probability": float(probs[k])} for k in top[row]],
            }
            if thresholds is not None:
                body["novelty_score"] = float(pred.scores[row])
                body["threshold"] = float(thresholds[nearest])
            results[i] = body
    return results


def _format_list(last: str = ", ") -> str:
    names = list(PARSERS)
    return ", ".join(names[:-1]) + last + names[-1]


# Python's repr of an object, e.g. <_io.BytesIO object at 0x7f...>: it means nothing to the client
_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def _reason(exc: Exception) -> str:
    """Why an image could not be read, in PIL's words: its first line, without object reprs."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = " ".join(_OBJECT_REPR.sub("", text).split()).rstrip(" :")[:120]
    return text or "its data is corrupt"
