"""The web service's API under FastAPI's TestClient: answers, refusals, teaching, and every error path."""

import base64
import io
import random
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from owlearn.model import OwlModel
from owlearn.serve import ServeSettings, create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(array)).decode()


@pytest.fixture(scope="module")
def pattern_image(patterns):
    """``pattern_image(k)``: one image of pattern class k, as a (H, W) uint8 array."""
    data = patterns(seed=3)
    return lambda k: data.images[data.labels == k][0, 0].numpy()


@pytest.fixture()
def client(model_on_three, tmp_path):
    model, _ = model_on_three
    path = OwlModel.load(model.save(tmp_path / "served.owl")).save(tmp_path / "served.owl")
    settings = ServeSettings(model_path=path, token=TOKEN, max_upload_bytes=200_000, max_pixels=1_000_000,
                             teach_per_minute=3)
    with TestClient(create_app(settings)) as c:
        c.model_path = path
        yield c


def test_health_model_and_openapi(client):
    assert client.get("/api/health").json()["status"] == "ok"
    info = client.get("/api/model").json()
    assert info["classes"] == ["p0", "p1", "p2"] and info["can_refuse"] and info["can_learn"]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/predict", "/api/predict/drawing", "/api/classes", "/api/classes/{name}", "/api/health"} <= set(paths)
    assert "<canvas" in client.get("/").text and client.get("/static/app.js").status_code == 200


def test_predict_upload_answers_with_top_classes_and_novelty(client, pattern_image):
    r = client.post("/api/predict", files={"image": ("p1.png", _png(pattern_image(1)), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == "p1" and body["known"] and len(body["top"]) == 3
    assert {"novelty_score", "threshold", "confidence", "nearest"} <= set(body)


def test_unknown_pattern_is_refused(client, pattern_image):
    r = client.post("/api/predict", files={"image": ("p4.png", _png(pattern_image(4)), "image/png")})
    assert r.status_code == 200 and r.json()["answer"] == "unknown" and not r.json()["known"]


def test_predict_drawing(client, pattern_image):
    r = client.post("/api/predict/drawing", json={"image": _data_url(255 - pattern_image(0))})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] in {"p0", "p1", "p2", "unknown"}


def test_teach_needs_the_token_and_persists(client, pattern_image):
    examples = [_data_url(pattern_image(3)) for _ in range(3)]
    body = {"name": "p3", "images": examples, "drawings": False}
    assert client.post("/api/classes", json=body).status_code == 401
    assert client.post("/api/classes", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.post("/api/classes", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["classes"] == ["p0", "p1", "p2", "p3"]
    assert OwlModel.load(client.model_path).classes == ["p0", "p1", "p2", "p3"]  # survives a restart
    assert client.post("/api/classes", json=body, headers=AUTH).status_code == 409  # already known
    again = client.post("/api/predict", files={"image": ("p3.png", _png(pattern_image(3)), "image/png")})
    assert again.json()["answer"] == "p3"
    assert client.delete("/api/classes/p3", headers=AUTH).json()["classes"] == ["p0", "p1", "p2"]
    assert client.delete("/api/classes/p3", headers=AUTH).status_code == 404
    assert client.delete("/api/classes/p0").status_code == 401


def test_teaching_is_rate_limited(client, pattern_image):
    codes = []
    for i in range(5):
        body = {"name": f"c{i}", "images": [_data_url(pattern_image(4))] * 2, "drawings": False}
        codes.append(client.post("/api/classes", json=body, headers=AUTH).status_code)
    assert codes[:3] == [201, 201, 201] and codes[3:] == [429, 429]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions (a decompression bomb's header) with one tiny IDAT chunk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


@pytest.mark.parametrize("payload,content_type,status", [
    (b"hello", "text/plain", 415),
    (b"", "image/png", 400),
    (b"\x89PNG\r\n\x1a\n garbage", "image/png", 400),
    ("truncated", "image/png", 400),  # a real PNG cut short
    (_png_header_only(50_000, 50_000), "image/png", 413),
    (b"\x00" * 300_000, "image/png", 413),
])
def test_bad_uploads_get_a_clear_4xx(client, payload, content_type, status, pattern_image):
    if payload == "truncated":
        payload = _png(pattern_image(0))[:40]
    r = client.post("/api/predict", files={"image": ("x.png", payload, content_type)})
    assert r.status_code == status, r.text
    assert r.json()["detail"]


@pytest.mark.parametrize("body,status", [
    ({"image": "not a data url"}, 400),
    ({"image": "data:image/png;base64,!!!!"}, 400),
    ({"image": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}, 400),
    ({}, 422),
    ({"image": 12}, 422),
])
def test_bad_drawings_get_a_clear_4xx(client, body, status):
    r = client.post("/api/predict/drawing", json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_malformed_teach_requests(client, pattern_image):
    assert client.post("/api/classes", json={"name": "x", "images": ["a"]}, headers=AUTH).status_code == 422
    bad = {"name": "a/b", "images": [_data_url(pattern_image(4))] * 2}
    assert client.post("/api/classes", json=bad, headers=AUTH).status_code == 400
    junk = {"name": "ok", "images": ["data:image/png;base64,AAAA", "data:image/png;base64,AAAA"]}
    assert client.post("/api/classes", content=b"{not json", headers=AUTH | {"Content-Type": "application/json"}
                       ).status_code == 422
    assert client.post("/api/classes", json=junk, headers=AUTH).status_code == 400


def test_fuzzing_the_upload_endpoint_gives_only_4xx(client, pattern_image):
    rng = random.Random(0)
    good = _png(pattern_image(2))
    for i in range(60):
        kind = i % 3
        if kind == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000)))
        elif kind == 1:
            data = good[: rng.randint(1, len(good) - 1)]
        else:
            data = bytearray(good)
            for _ in range(5):
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            data = bytes(data)
        r = client.post("/api/predict", files={"image": ("f.png", data, "image/png")})
        assert r.status_code < 500, (i, r.status_code, r.text)


def test_openapi_documents_bodies_answers_and_errors(client):
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/api/predict"]["post"]
    assert {"multipart/form-data", "image/png"} <= set(predict["requestBody"]["content"])
    assert predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PredictionResponse")
    assert {"400", "413", "415"} <= set(predict["responses"])
    assert "TeachRequest" in spec["components"]["schemas"] and "Problem" in spec["components"]["schemas"]
    assert {"401", "429"} <= set(spec["paths"]["/api/classes"]["post"]["responses"])


def test_predict_accepts_a_raw_image_body(client, pattern_image):
    r = client.post("/api/predict", content=_png(pattern_image(1)), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == "p1"


@pytest.mark.parametrize("body,content_type,status", [
    (b"--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b",
     422),  # no image field
    (b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\nContent-Type: image/png\r\n\r\nx",
     "multipart/form-data; boundary=b", 400),  # cut short
    (b"whatever", "multipart/form-data", 400),  # no boundary
    (b"whatever", "multipart/form-data; boundary=zz", 400),  # boundary absent from the body
    (b"{}", "application/json", 415),
    (b"", "", 415),
])
def test_malformed_uploads_get_a_clear_4xx(client, body, content_type, status):
    r = client.post("/api/predict", content=body, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_oversized_json_bodies_are_refused_before_they_are_read(client):
    big = "data:image/png;base64," + "A" * 400_000  # the client allows 200,000-byte images
    r = client.post("/api/predict/drawing", json={"image": big})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: cut off while streaming
        yield b'{"image": "data:image/png;base64,'
        for _ in range(40):
            yield b"A" * 10_000
        yield b'"}'
    r = client.post("/api/predict/drawing", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
