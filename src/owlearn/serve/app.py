"""The web service: recognise drawn or uploaded images, refuse the unknown, learn new classes.

The model is loaded in the app's lifespan, never at import. Predictions read the current model object;
a change (adding or removing a class) is made on a copy that is written to disk atomically and then
swapped in as a whole, so predictions keep being served, never see a half-changed model, and a change
survives a restart.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import secrets
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from owlearn import __version__
from owlearn.model import OwlModel
from owlearn.preprocess import Preprocessing, to_model_input

STATIC = Path(__file__).parent / "static"
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}


@dataclass
class ServeSettings:
    """Limits and secrets of the service."""

    model_path: Path
    token: str
    max_upload_bytes: int = 4 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_examples: int = 200
    teach_per_minute: int = 12
    top_k: int = 3


class ModelHolder:
    """The served model. Changes are made on a copy, saved atomically, then swapped in as a whole."""

    def __init__(self, path: Path):
        self.path = path
        self.model = OwlModel.load(path)
        self._change_lock = threading.Lock()

    def change(self, edit) -> OwlModel:
        with self._change_lock:
            old = self.model
            new = OwlModel(old.network, list(old.class_names), old.preprocessing, copy.deepcopy(old.info),
                           {name: copy.deepcopy(c) for name, c in old.components.items()})
            edit(new)
            new.save(self.path)
            self.model = new  # one reference assignment: readers see the old model or the new one
            return new


@dataclass
class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per client."""

    limit: int
    window: float = 60.0
    events: dict[str, deque] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self.lock:
            q = self.events.setdefault(client, deque())
            while q and now - q[0] > self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            return True


class DrawingRequest(BaseModel):
    image: str = Field(..., description="A PNG data URL (data:image/png;base64,...) of the drawing.")


class TeachRequest(BaseModel):
    name: str = Field(..., min_length=1, max_length=64, description="Name of the new class.")
    images: list[str] = Field(..., min_length=2, description="Data URLs of example images (drawings or photos).")
    drawings: bool = Field(True, description="The examples are drawings on the page's canvas.")


def create_app(settings: ServeSettings) -> FastAPI:
    """The FastAPI application serving ``settings.model_path``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.holder = ModelHolder(settings.model_path)
        app.state.teach_limiter = RateLimiter(settings.teach_per_minute)
        yield

    app = FastAPI(title="owlearn", version=__version__, lifespan=lifespan,
                  description="Recognise what the model knows, refuse what it does not, teach it new classes.")

    def holder(request: Request) -> ModelHolder:
        return request.app.state.holder

    def require_token(request: Request) -> None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given or not secrets.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "changing the model needs the service token: send 'Authorization: Bearer TOKEN'")

    # -- reading images ----------------------------------------------------------------------------
    def decode_image(data: bytes, what: str) -> Image.Image:
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"{what} is {len(data):,} bytes; the limit is {settings.max_upload_bytes:,}")
        if not data:
            raise HTTPException(400, f"{what} is empty")
        try:
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > settings.max_pixels:  # checked before the pixels are decoded
                raise HTTPException(413, f"{what} is {img.width}×{img.height} pixels; the limit is "
                                         f"{settings.max_pixels:,} pixels")
            img.load()
        except HTTPException:
            raise
        except Image.DecompressionBombError:
            raise HTTPException(413, f"{what} has more pixels than the {settings.max_pixels:,} allowed") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise HTTPException(400, f"{what} is not a readable image ({type(exc).__name__})") from None
        return img

    def decode_data_url(url: str, what: str) -> Image.Image:
        head, sep, payload = url.partition(",")
        if not sep or not head.startswith("data:image/") or ";base64" not in head:
            raise HTTPException(400, f"{what} must be a base64 image data URL (data:image/png;base64,...)")
        if len(payload) > settings.max_upload_bytes * 4 // 3 + 4:
            raise HTTPException(413, f"{what} is larger than the {settings.max_upload_bytes:,}-byte limit")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(400, f"{what} is not valid base64") from None
        return decode_image(data, what)

    def model_input(model: OwlModel, img: Image.Image, drawing: bool) -> torch.Tensor:
        prep = model.preprocessing
        if drawing and prep.in_shape[0] == 1:
            # a canvas drawing is a stroke on a blank page: normalise it the way MNIST digits were made
            prep = Preprocessing(prep.in_shape, background=prep.background, fit="digit")
        try:
            return to_model_input(img, prep)
        except (OSError, ValueError) as exc:
            raise HTTPException(400, f"the image could not be converted ({exc})") from None

    def answer(model: OwlModel, x: torch.Tensor) -> dict:
        pred = model.predict(x.unsqueeze(0))
        probs = pred.probabilities[0]
        classes = model.classes
        order = np.argsort(probs)[::-1][: settings.top_k]
        known = bool(pred.accepted[0]) if pred.accepted is not None else True
        body = {
            "answer": pred.names[0], "known": known, "nearest": classes[int(pred.nearest[0])],
            "confidence": float(probs[order[0]]),
            "top": [{"class": classes[i], "probability": float(probs[i])} for i in order],
        }
        if pred.scores is not None:
            body |= {"novelty_score": float(pred.scores[0]),
                     "threshold": float(model.thresholds()[int(pred.nearest[0])])}
        return body

    # -- endpoints ---------------------------------------------------------------------------------
    @app.get("/api/health", summary="Is the service up")
    def health(h: ModelHolder = Depends(holder)) -> dict:
        return {"status": "ok", "version": __version__, "classes": len(h.model.classes)}

    @app.get("/api/model", summary="What the served model knows")
    def model_info(h: ModelHolder = Depends(holder)) -> dict:
        m = h.model
        return {
            "classes": m.classes, "input_shape": list(m.preprocessing.in_shape),
            "can_refuse": m.detector is not None, "can_learn": m.gaussian is not None,
            "rejection": m.info.get("rejection"), "added_classes": m.info.get("added_classes", []),
        }

    # plain `def` endpoints run in the thread pool, so a forward pass never blocks the event loop
    @app.post("/api/predict", summary="Recognise an uploaded image")
    def predict_upload(image: UploadFile = File(...), h: ModelHolder = Depends(holder)) -> dict:
        if image.content_type not in IMAGE_TYPES:
            raise HTTPException(415, f"content type {image.content_type!r} is not an image type "
                                     f"({', '.join(sorted(IMAGE_TYPES))})")
        data = image.file.read(settings.max_upload_bytes + 1)
        model = h.model
        return answer(model, model_input(model, decode_image(data, "the upload"), drawing=False))

    @app.post("/api/predict/drawing", summary="Recognise a drawing from the page's canvas")
    def predict_drawing(req: DrawingRequest, h: ModelHolder = Depends(holder)) -> dict:
        model = h.model
        return answer(model, model_input(model, decode_data_url(req.image, "the drawing"), drawing=True))

    @app.post("/api/classes", status_code=201, summary="Teach a new class from example images",
              dependencies=[Depends(require_token)])
    def teach(req: TeachRequest, request: Request, h: ModelHolder = Depends(holder)) -> dict:
        client = request.client.host if request.client else "?"
        if not request.app.state.teach_limiter.allow(client):
            raise HTTPException(429, f"at most {settings.teach_per_minute} classes a minute may be taught")
        name = req.name.strip()
        if not name or any(ch in name for ch in "/\\\n\r\t"):
            raise HTTPException(400, "a class name must be non-empty and contain no slashes or line breaks")
        if len(req.images) > settings.max_examples:
            raise HTTPException(413, f"at most {settings.max_examples} examples per class")
        model = h.model
        if model.gaussian is None:
            raise HTTPException(409, "this model cannot learn classes: train it with --gaussian")
        if name in model.classes:
            raise HTTPException(409, f"the model already knows a class named {name!r}")
        batch = torch.stack([model_input(model, decode_data_url(u, f"example {i + 1}"), req.drawings)
                             for i, u in enumerate(req.images)])
        start = time.perf_counter()
        new = h.change(lambda m: m.add_class(name, batch))
        return {"added": name, "examples": len(batch), "classes": new.classes,
                "seconds": time.perf_counter() - start}

    @app.delete("/api/classes/{name}", summary="Forget a class", dependencies=[Depends(require_token)])
    def forget(name: str, h: ModelHolder = Depends(holder)) -> dict:
        model = h.model
        if model.gaussian is None:
            raise HTTPException(409, "this model's classes are fixed by its network: train it with --gaussian")
        if name not in model.classes:
            raise HTTPException(404, f"no class named {name!r}")
        if len(model.classes) <= 2:
            raise HTTPException(409, "a model needs at least two classes")
        new = h.change(lambda m: m.remove_class(name))
        return {"removed": name, "classes": new.classes}

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse(status_code=422, content={"detail": f"malformed request — {problems}"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
