"""The web service: recognise drawn or uploaded images, refuse the unknown, learn new classes.

The model is loaded in the app's lifespan, never at import. Predictions read the current model object;
a change (adding or removing a class) is made on a copy that is written to disk atomically and then
swapped in as a whole, so predictions keep being served, never see a half-changed model, and a change
survives a restart. Concurrent predictions are answered in batches (see :mod:`owlearn.serve.batcher`):
each batch takes the model current when it starts, so a class being taught never blocks them.
"""

from __future__ import annotations

import copy
import gc
import hmac
import json
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from owlearn import __version__
from owlearn.class_names import ClassNameError, ClassNameTaken, check_class_name
from owlearn.model import OwlModel
from owlearn.serve.batcher import MicroBatcher, Overloaded
from owlearn.serve.inference import ImageJob, ImageLimits, data_url_bytes, model_input, open_data_url, predict_jobs
from owlearn.serve.limits import BodyLimit
from owlearn.serve.schemas import (
    DrawingRequest,
    ForgottenResponse,
    HealthResponse,
    ModelResponse,
    PredictionResponse,
    TaughtResponse,
    TeachRequest,
    problems,
)
from owlearn.serve.upload import FORM_OVERHEAD, OPENAPI_BODY, read_upload

STATIC = Path(__file__).parent / "static"


@dataclass
class ServeSettings:
    """Limits, secrets and batching of the service."""

    model_path: Path
    token: str
    max_upload_bytes: int = 4 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_examples: int = 200
    max_teach_bytes: int = 64 * 1024 * 1024
    teach_per_minute: int = 12
    wrong_tokens_per_minute: int = 10  # then a client is refused for the rest of the minute: no guessing
    top_k: int = 3
    max_batch: int = 64
    batch_wait_ms: float = 1.0
    max_pending: int = 2048
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        check_token(self.token)  # refused here, before the CLI prints the token and starts the server

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(self.max_upload_bytes, self.max_pixels)


MIN_TOKEN = 8  # characters of a token the user chooses: the random one has 22


def check_token(token: str) -> str:
    """Refuse a service token that no client could send: ValueError saying what is wrong (not the token)."""
    if not isinstance(token, str) or not token.strip():
        raise ValueError("the service token (--token or OWLEARN_TOKEN) cannot be blank: leave it out to get a "
                         "random one")
    if token != token.strip():
        # the Authorization header is read without the spaces at its ends, so such a token never matches
        raise ValueError("the service token (--token or OWLEARN_TOKEN) starts or ends with spaces, which an "
                         "Authorization header cannot carry: remove them")
    if len(token) < MIN_TOKEN:
        raise ValueError(f"the service token (--token or OWLEARN_TOKEN) has {len(token)} characters; it needs at least "
                         f"{MIN_TOKEN}, or leave it out to get a random one")
    if not all(" " <= ch <= "~" for ch in token):
        raise ValueError("the service token (--token or OWLEARN_TOKEN) may only contain printable ASCII "
                         "characters (letters, digits, punctuation, inner spaces), which every client can send "
                         "in an Authorization header")
    return token


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header; HTTP 401 saying what is wrong otherwise."""
    scheme, _, given = authorization.strip().partition(" ")
    if not scheme:
        raise HTTPException(401, "changing the model needs the service token: send 'Authorization: Bearer TOKEN'",
                            headers={"WWW-Authenticate": "Bearer"})
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(401, "the Authorization header must be 'Bearer TOKEN' (the Bearer scheme, a space, "
                                 "then the service token)", headers={"WWW-Authenticate": "Bearer"})
    return given.strip()


class ModelHolder:
    """The served model. Changes are made on a copy, saved atomically, then swapped in as a whole."""

    def __init__(self, path: Path):
        self.path = path
        self.model = OwlModel.load(path)
        self._change_lock = threading.Lock()

    def change(self, edit) -> OwlModel:
        with self._change_lock:
            old = self.model
            # the network is shared, not copied: teaching never changes its weights, only the components
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
        """Record an event of ``client`` unless its limit is reached; whether it was."""
        with self.lock:
            q = self._recent(client)
            if len(q) >= self.limit:
                return False
            q.append(time.monotonic())
            return True

    def exhausted(self, client: str) -> bool:
        """Whether ``client`` has used up its events of the window (nothing is recorded)."""
        with self.lock:
            return len(self._recent(client)) >= self.limit

    def _recent(self, client: str) -> deque:
        now = time.monotonic()
        q = self.events.setdefault(client, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q


def create_app(settings: ServeSettings) -> FastAPI:
    """The FastAPI application serving ``settings.model_path``; ValueError for a token no client could send."""
    check_token(settings.token)
    limits = settings.limits

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        holder = app.state.holder = ModelHolder(settings.model_path)
        app.state.teach_limiter = RateLimiter(settings.teach_per_minute)
        app.state.wrong_token_limiter = RateLimiter(settings.wrong_tokens_per_minute)

        def run_batch(jobs: list[ImageJob]) -> list[bytes | HTTPException]:
            # one snapshot per batch: a class taught meanwhile is swapped in between batches, never within one.
            # The answers are serialised here too, off the event loop.
            return [r if isinstance(r, HTTPException) else json.dumps(r).encode()
                    for r in predict_jobs(holder.model, jobs, settings.top_k, limits)]

        def batch_thread_setup() -> None:
            if settings.torch_threads:
                # a small network on a few images gains nothing from intra-op threads, and they would compete
                # with the event loop (HTTP parsing) for the same cores
                torch.set_num_threads(settings.torch_threads)

        app.state.batcher = MicroBatcher(run_batch, max_batch=settings.max_batch,
                                         max_wait=settings.batch_wait_ms / 1000, max_pending=settings.max_pending,
                                         on_thread_start=batch_thread_setup)
        await app.state.batcher.start()
        # what was loaded so far (torch, the framework, the model) lives as long as the process: keep it out of the
        # cyclic garbage collector, whose full passes over it stalled every request in flight for ~0.3 s under load
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await app.state.batcher.stop()
            gc.unfreeze()  # an app run inside a longer process (tests) gives the objects back to the collector

    app = FastAPI(title="owlearn", version=__version__, lifespan=lifespan,
                  description="Recognise what the model knows, refuse what it does not, teach it new classes.")

    def holder(request: Request) -> ModelHolder:
        return request.app.state.holder

    def require_token(request: Request) -> None:
        client = request.client.host if request.client else "?"
        wrong = request.app.state.wrong_token_limiter
        if wrong.exhausted(client):
            raise HTTPException(429, f"more than {settings.wrong_tokens_per_minute} wrong tokens in a minute from "
                                     f"this client; wait a minute")
        given = bearer_token(request.headers.get("authorization", ""))
        if not hmac.compare_digest(given.encode(), settings.token.encode()):  # constant time
            wrong.allow(client)
            raise HTTPException(401, "the service token is wrong", headers={"WWW-Authenticate": "Bearer"})

    async def recognise(request: Request, job: ImageJob) -> Response:
        try:
            body = await request.app.state.batcher.submit(job)
        except Overloaded as exc:
            raise HTTPException(503, f"the service is busy: {exc}; try again") from None
        # already JSON: returned as is, which also skips FastAPI's response validation (the schema is documented)
        return Response(body, media_type="application/json")

    # -- endpoints ---------------------------------------------------------------------------------
    @app.get("/api/health", summary="Is the service up", response_model=HealthResponse)
    def health(h: ModelHolder = Depends(holder)) -> dict:
        b = app.state.batcher
        return {"status": "ok", "version": __version__, "classes": len(h.model.classes),
                "predictions": b.items, "batches": b.batches}

    @app.get("/api/model", summary="What the served model knows", response_model=ModelResponse)
    def model_info(h: ModelHolder = Depends(holder)) -> dict:
        m = h.model
        return {
            "classes": m.classes, "input_shape": list(m.preprocessing.in_shape),
            "can_refuse": m.detector is not None, "can_learn": m.gaussian is not None,
            "rejection": m.info.get("rejection"), "added_classes": m.info.get("added_classes", []),
        }

    # predictions are async: the handler only parses the request and the image header; pixels and the
    # model run in the batcher's thread, so the event loop stays free to read the next requests
    @app.post("/api/predict", summary="Recognise an uploaded image", response_model=PredictionResponse,
              responses=problems(400, 413, 415, 422, 503), openapi_extra=OPENAPI_BODY,
              description="The image as a form upload (multipart/form-data, field `image`) or as the body "
                          "with its image content type.")
    async def predict_upload(request: Request) -> Response:
        upload = await read_upload(request, settings.max_upload_bytes)
        return await recognise(request, ImageJob(upload.data, False, upload.what))

    @app.post("/api/predict/drawing", summary="Recognise a drawing from the page's canvas",
              response_model=PredictionResponse, responses=problems(400, 413, 415, 422, 503))
    async def predict_drawing(req: DrawingRequest, request: Request) -> Response:
        return await recognise(request, ImageJob(data_url_bytes(req.image, "the drawing", limits), True, "the drawing"))

    # teaching is a plain `def`: it runs in the thread pool, next to the batches, never on the event loop
    @app.post("/api/classes", status_code=201, summary="Teach a new class from example images",
              response_model=TaughtResponse, dependencies=[Depends(require_token)],
              responses=problems(400, 401, 409, 413, 415, 422, 429))
    def teach(req: TeachRequest, request: Request, h: ModelHolder = Depends(holder)) -> dict:
        client = request.client.host if request.client else "?"
        if not request.app.state.teach_limiter.allow(client):
            raise HTTPException(429, f"at most {settings.teach_per_minute} classes a minute may be taught")
        if len(req.images) > settings.max_examples:
            raise HTTPException(413, f"at most {settings.max_examples} examples per class")
        model = h.model
        if model.gaussian is None:
            raise HTTPException(409, "this model cannot learn classes: train it with --gaussian")
        name = class_name(req.name, model.classes)
        batch = torch.stack([model_input(model, open_data_url(u, f"example {i + 1}", limits), req.drawings,
                                         f"example {i + 1}") for i, u in enumerate(req.images)])
        start = time.perf_counter()

        def add(m: OwlModel) -> None:
            class_name(name, m.classes)  # taught by a concurrent request since the check above?
            try:
                m.add_class(name, batch)
            except ValueError as exc:  # the model's own refusal (on the copy, which is then dropped)
                raise HTTPException(400, f"cannot teach class {name!r}: {exc}") from None

        new = h.change(add)
        return {"added": name, "examples": len(batch), "classes": new.classes,
                "seconds": time.perf_counter() - start}

    def class_name(name: str, known: list[str]) -> str:
        """The name checked by :func:`~owlearn.class_names.check_class_name`: 409 if taken, 400 if unusable."""
        try:
            return check_class_name(name, known, in_url=True)  # DELETE /api/classes/{name} addresses it
        except ClassNameTaken as exc:
            raise HTTPException(409, str(exc)) from None
        except ClassNameError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.delete("/api/classes/{name}", summary="Forget a class", response_model=ForgottenResponse,
                dependencies=[Depends(require_token)], responses=problems(401, 404, 409))
    def forget(name: str, h: ModelHolder = Depends(holder)) -> dict:
        model = h.model
        if model.gaussian is None:
            raise HTTPException(409, "this model's classes are fixed by its network: train it with --gaussian")

        def remove(m: OwlModel) -> None:
            if name not in m.classes:
                raise HTTPException(404, f"no class named {name!r}")
            if len(m.classes) <= 2:
                raise HTTPException(409, "a model needs at least two classes")
            m.remove_class(name)

        new = h.change(remove)
        return {"removed": name, "classes": new.classes}

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems_ = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse(status_code=422, content={"detail": f"malformed request — {problems_}"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    one_image = settings.max_upload_bytes * 4 // 3 + FORM_OVERHEAD  # base64 in JSON, or a form upload
    app.add_middleware(BodyLimit, limit_for=lambda path: settings.max_teach_bytes if path == "/api/classes"
                       else one_image)
    return app
