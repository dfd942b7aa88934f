"""Micro-batching of predictions: every concurrent request gets its own answer, and teaching a class while
predictions are being served loses neither a request nor a class."""

import asyncio
import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from owlearn.model import OwlModel
from owlearn.serve import ServeSettings, create_app
from owlearn.serve.batcher import MicroBatcher, Overloaded

TOKEN = "batch-token"


def test_concurrent_items_get_their_own_results_in_few_batches():
    sizes = []

    def run(items):
        sizes.append(len(items))
        return [ValueError(f"bad {x}") if x % 7 == 3 else x * 10 for x in items]

    async def main():
        b = MicroBatcher(run, max_batch=16)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(i) for i in range(40)), return_exceptions=True), b
        finally:
            await b.stop()

    results, b = asyncio.run(main())
    for i, r in enumerate(results):
        if i % 7 == 3:
            assert isinstance(r, ValueError) and str(r) == f"bad {i}"  # only its own submitter fails
        else:
            assert r == i * 10
    assert sum(sizes) == 40 and max(sizes) <= 16 and len(sizes) < 40  # batched, never above max_batch
    assert (b.batches, b.items) == (len(sizes), 40)


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    calls = []

    def run(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [x + 1 for x in items]

    async def main():
        b = MicroBatcher(run)
        await b.start()
        try:
            first = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
            second = await b.submit(5)
            return first, second
        finally:
            await b.stop()

    first, second = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in first) and second == 6


def test_too_many_waiting_requests_are_refused_not_queued_forever():
    release = threading.Event()

    def run(items):
        release.wait(5)
        return items

    async def main():
        b = MicroBatcher(run, max_batch=1, max_pending=2)
        await b.start()
        try:
            tasks = [asyncio.create_task(b.submit(i)) for i in range(2)]
            await asyncio.sleep(0.05)  # the first is being computed, the second waits
            tasks.append(asyncio.create_task(b.submit(2)))
            await asyncio.sleep(0.01)  # two wait now: the limit
            with pytest.raises(Overloaded):
                await b.submit(99)
            release.set()
            return await asyncio.gather(*tasks)
        finally:
            release.set()
            await b.stop()

    assert asyncio.run(main()) == [0, 1, 2]


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def served(model_on_three, patterns, tmp_path):
    model, _ = model_on_three
    path = model.save(tmp_path / "served.owl")
    data = patterns(seed=5)
    images = [data.images[i, 0].numpy() for i in range(0, len(data), max(1, len(data) // 24))][:24]
    settings = ServeSettings(model_path=path, token=TOKEN, batch_wait_ms=2.0)
    with TestClient(create_app(settings)) as client:
        client.model_path, client.images = path, images
        yield client


def _predict(client, img):
    r = client.post("/api/predict", files={"image": ("x.png", _png(img), "image/png")})
    assert r.status_code == 200, r.text
    return r.json()


def test_concurrent_requests_get_their_own_correct_answers(served):
    alone = [_predict(served, img) for img in served.images]  # one at a time: batches of one
    before = served.get("/api/health").json()
    order = list(range(len(served.images))) * 4
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda i: (i, _predict(served, served.images[i])), order))
    for i, answer in together:
        assert answer["answer"] == alone[i]["answer"] and answer["nearest"] == alone[i]["nearest"]
        assert answer["confidence"] == pytest.approx(alone[i]["confidence"], abs=1e-5)
        assert answer["novelty_score"] == pytest.approx(alone[i]["novelty_score"], abs=1e-4)
    after = served.get("/api/health").json()
    assert after["predictions"] - before["predictions"] == len(order)
    assert after["batches"] - before["batches"] < len(order)  # concurrent requests shared forward passes


def test_a_bad_image_fails_only_its_own_request_in_a_batch(served):
    good = _png(served.images[0])
    payloads = [good, b"\x89PNG\r\n\x1a\n not a png", good, good[:50], good] * 3
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda p: served.post("/api/predict", files={"image": ("x.png", p, "image/png")})
                              .status_code, payloads))
    assert codes == [200, 400, 200, 400, 200] * 3


def test_teaching_during_predictions_loses_no_request_and_no_class(served):
    examples = [f"data:image/png;base64,{base64.b64encode(_png(255 - img)).decode()}"
                for img in served.images[:6]]
    classes_before = served.get("/api/model").json()["classes"]
    stop = threading.Event()
    codes: list[int] = []
    lock = threading.Lock()

    def hammer(k):
        n = 0
        while not stop.is_set() or n < 5:
            img = served.images[(k + n) % len(served.images)]
            r = served.post("/api/predict", files={"image": ("x.png", _png(img), "image/png")})
            with lock:
                codes.append(r.status_code)
            n += 1

    with ThreadPoolExecutor(8) as pool:
        workers = [pool.submit(hammer, k) for k in range(8)]
        taught = served.post("/api/classes", json={"name": "negative", "images": examples, "drawings": False},
                             headers={"Authorization": f"Bearer {TOKEN}"})
        stop.set()
        for w in workers:
            w.result()
    assert taught.status_code == 201, taught.text
    assert codes and set(codes) == {200}  # no prediction failed while the class was being taught
    after = served.get("/api/model").json()["classes"]
    assert after == classes_before + ["negative"]
    assert OwlModel.load(served.model_path).classes == after  # on disk too: survives a restart
