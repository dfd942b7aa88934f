"""The web service's API under FastAPI's TestClient: answers, refusals, teaching, and every error path."""

import base64
import contextlib
import io
import random
import re
import socket
import struct
import subprocess
import sys
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
def serve(model_on_three, tmp_path):
    """``with serve(**settings) as client``: the service on a fresh copy of the model (``client.model_path``)."""
    model, _ = model_on_three
    path = OwlModel.load(model.save(tmp_path / "served.owl")).save(tmp_path / "served.owl")

    @contextlib.contextmanager
    def start(**overrides):
        settings = ServeSettings(**{"model_path": path, "token": TOKEN, "max_upload_bytes": 200_000,
                                    "max_pixels": 1_000_000, "teach_per_minute": 3, **overrides})
        with TestClient(create_app(settings)) as c:
            c.model_path = path
            yield c

    return start


@pytest.fixture()
def client(serve):
    with serve() as c:
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
    ({"image": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}, 415),
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
    assert client.post("/api/classes", json=junk, headers=AUTH).status_code == 415  # three zero bytes: no image


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
        if r.status_code != 200:  # the message names the upload, in words, never a Python object's repr
            assert "'f.png'" in r.json()["detail"] and " at 0x" not in r.text, (i, r.text)


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


# -- class names ---------------------------------------------------------------------------------------------
def test_check_class_name_holds_every_rule_and_needs_no_server():
    from owlearn.class_names import UNKNOWN as SHARED_UNKNOWN
    from owlearn.class_names import ClassNameError, ClassNameTaken, check_class_name
    from owlearn.model import UNKNOWN

    assert SHARED_UNKNOWN == UNKNOWN
    assert check_class_name("  shirt [large] ", ["p0"]) == "shirt [large]"
    for bad, said in [("unknown", "'unknown' is the answer"), (" UnKnown\t", "'unknown' is the answer"),
                      ("   ", "blank"), ("a/b", "'/'"), ("a\\b", "'\\\\'"), ("a\nb", "'\\n'"),
                      ("x" * 65, "at most 64")]:
        with pytest.raises(ClassNameError, match=re.escape(said)):
            check_class_name(bad, in_url=True)
    # slashes are refused only where a class is addressed by a URL path
    assert check_class_name("T-shirt/top") == "T-shirt/top"
    with pytest.raises(ClassNameError, match="invisible characters"):
        check_class_name("a\nb")
    with pytest.raises(ClassNameTaken, match="already knows a class named 'p1'"):
        check_class_name(" p1 ", ["p0", "p1"])
    assert issubclass(ClassNameError, ValueError)
    # the CLI can call it without the service's extras: importing it loads neither FastAPI nor PyTorch
    code = ("import sys; import owlearn.class_names; "
            "assert not {'fastapi', 'torch', 'owlearn.serve.app'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name,status,said", [
    ("unknown", 400, "'unknown' is the answer for refused images"),
    ("UNKNOWN ", 400, "'unknown' is the answer for refused images"),
    ("  Unknown", 400, "'unknown' is the answer for refused images"),
    ("   ", 400, "cannot be blank"),
    ("a\\b", 400, "backslashes"),
    ("tab\there", 400, "invisible characters"),
    (" p1 ", 409, "already knows a class named 'p1'"),
])
def test_unusable_class_names_are_refused_with_a_4xx(serve, pattern_image, name, status, said):
    with serve(teach_per_minute=100) as client:
        before = client.model_path.read_bytes()
        body = {"name": name, "images": [_data_url(pattern_image(3))] * 2, "drawings": False}
        r = client.post("/api/classes", json=body, headers=AUTH)
        assert r.status_code == status, r.text
        assert said in r.json()["detail"]
        assert client.get("/api/model").json()["classes"] == ["p0", "p1", "p2"]
        assert client.model_path.read_bytes() == before


def test_the_models_own_refusal_to_add_a_class_is_a_400_not_a_500(serve, pattern_image, monkeypatch):
    import owlearn.serve.app as served

    # whatever the service's checks let through, a ValueError of OwlModel.add_class is the client's 400
    monkeypatch.setattr(served, "check_class_name", lambda name, existing=(), **_: name.strip())
    with serve() as client:
        before = client.model_path.read_bytes()
        body = {"name": "Unknown", "images": [_data_url(pattern_image(3))] * 2, "drawings": False}
        r = client.post("/api/classes", json=body, headers=AUTH)
        assert r.status_code == 400, r.text
        assert "answer for refused images" in r.json()["detail"]
        assert client.get("/api/model").json()["classes"] == ["p0", "p1", "p2"]  # the changed copy was dropped
        assert client.model_path.read_bytes() == before


# -- the token ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("token,said", [
    ("", "cannot be blank"), ("   ", "cannot be blank"), (" my secret ", "starts or ends with spaces"),
    ("secret\n", "starts or ends with spaces"), ("tab\tinside", "printable ASCII"), ("pässwort", "printable ASCII"),
    ("short", "has 5 characters; it needs at least 8"),
])
def test_a_token_no_client_could_send_is_refused_without_showing_it(tmp_path, token, said):
    with pytest.raises(ValueError, match=said) as caught:
        ServeSettings(model_path=tmp_path / "m.owl", token=token)
    if token.strip():
        assert token.strip() not in str(caught.value)  # the secret is not printed
    settings = ServeSettings(model_path=tmp_path / "m.owl", token="fine-token")
    settings.token = token  # changed after the settings were made: create_app checks again
    with pytest.raises(ValueError, match=said):
        create_app(settings)
    assert ServeSettings(model_path=tmp_path / "m.owl", token="inner spaces are fine").token


def test_a_client_that_keeps_guessing_the_token_is_refused_for_a_minute(serve):
    with serve(wrong_tokens_per_minute=3) as client:
        for _ in range(3):
            assert client.delete("/api/classes/p0", headers={"Authorization": "Bearer guess-1234"}).status_code == 401
        # from now on even the right token waits: guessing on would otherwise go on at full speed
        r = client.delete("/api/classes/p0", headers=AUTH)
        assert r.status_code == 429 and "wrong tokens in a minute" in r.json()["detail"]
        assert client.get("/api/model").json()["classes"] == ["p0", "p1", "p2"]


def test_serve_command_refuses_a_blank_token_before_announcing_it(model_on_three, tmp_path):
    from typer.testing import CliRunner

    from owlearn.cli import app as cli

    path = model_on_three[0].save(tmp_path / "m.owl")
    with socket.socket() as s:  # a port free now (the command checks it can listen before the token)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(cli, ["serve", str(path), "--port", str(port), "--token", " my secret "])
    assert result.exit_code == 2, result.output  # a usage error naming the option, before the announcement
    assert "--token" in result.output and "starts or ends with spaces" in result.output
    assert "Serving" not in result.output


@pytest.mark.parametrize("header,status", [
    (f"Bearer {TOKEN}", 404), (f"bearer {TOKEN}", 404), (f"  BEARER   {TOKEN}  ", 404),  # accepted: no such class
    (TOKEN, 401),  # no scheme
    (f"Basic {TOKEN}", 401), (f"Token {TOKEN}", 401), (f"Bearer{TOKEN}", 401), ("Bearer", 401), ("Bearer  ", 401),
    (f"Bearer {TOKEN}x", 401), (f"Bearer {TOKEN[:-1]}", 401), ("", 401),
])
def test_only_the_bearer_scheme_with_the_token_may_change_the_model(client, header, status):
    r = client.delete("/api/classes/nothing-by-this-name", headers={"Authorization": header})
    assert r.status_code == status, (header, r.text)
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer" and r.json()["detail"]
        wrong_token = header.strip().lower().startswith("bearer ") and header.strip() != "Bearer"
        assert ("wrong" if wrong_token else "Bearer TOKEN") in r.json()["detail"], (header, r.text)


# -- what is refused, in words --------------------------------------------------------------------------------
def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_an_unreadable_upload_is_named_without_python_reprs(client):
    r = client.post("/api/predict", files={"image": ("cat photo.png", b"not an image at all", "image/png")})
    assert r.status_code == 415, r.text
    detail = r.json()["detail"]
    assert detail == "the uploaded image 'cat photo.png' is not a BMP, GIF, JPEG, PNG or WEBP image"
    r = client.post("/api/predict", content=b"not an image at all", headers={"Content-Type": "image/png"})
    assert r.status_code == 415 and r.json()["detail"].startswith("the uploaded image is not a BMP, GIF")
    # data that starts like a PNG but breaks off: the PNG parser's reason, without Python reprs
    r = client.post("/api/predict", content=b"\x89PNG\r\n\x1a\n" + b"\0" * 20, headers={"Content-Type": "image/png"})
    detail = r.json()["detail"]
    assert r.status_code == 400 and detail.startswith("the uploaded image is not a readable image ("), r.text
    assert "<" not in detail and "0x" not in detail and "BytesIO" not in detail
    r = client.post("/api/predict", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "'notes.txt' has content type 'text/plain'" in r.json()["detail"]


def test_reasons_drop_object_reprs():
    from owlearn.serve.inference import _reason

    assert _reason(OSError("cannot read <_io.BytesIO object at 0x7f3a2c1b9e40>: broken")) == "cannot read: broken"
    assert _reason(SyntaxError("broken PNG file")) == "broken PNG file"
    assert _reason(OSError()) == "its data is corrupt"


@pytest.mark.parametrize("fmt", ["TIFF", "PPM", "ICO"])
def test_an_image_in_a_format_not_accepted_is_refused_whatever_it_declares(client, pattern_image, fmt, monkeypatch):
    # only the accepted formats' parsers may see uploaded data: this one's must not be called
    from PIL import Image

    Image.init()  # loads every format plugin, so the parser exists to be replaced
    plugin = Image.OPEN[fmt]

    def refuse(*args, **kwargs):
        raise AssertionError(f"the {fmt} parser read an upload")

    monkeypatch.setitem(Image.OPEN, fmt, (refuse, plugin[1]))
    data = _encoded(np.ascontiguousarray(pattern_image(1)), fmt)
    for r in [client.post("/api/predict", files={"image": ("p1.png", data, "image/png")}),
              client.post("/api/predict", content=data, headers={"Content-Type": "image/png"}),
              client.post("/api/predict/drawing", json={"image": "data:image/png;base64," +
                                                        base64.b64encode(data).decode()})]:
        assert r.status_code == 415, r.text
        assert r.json()["detail"].endswith("is not a BMP, GIF, JPEG, PNG or WEBP image")
    body = {"name": "p3", "images": ["data:image/tiff;base64," + base64.b64encode(data).decode()] * 2,
            "drawings": False}
    r = client.post("/api/classes", json=body, headers=AUTH)
    assert r.status_code == 415 and r.json()["detail"].startswith("example 1 is not a BMP, GIF"), r.text


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "WEBP", "BMP"])
def test_every_accepted_format_is_read(client, pattern_image, fmt):
    data = _encoded(np.ascontiguousarray(pattern_image(1)), fmt)
    r = client.post("/api/predict", files={"image": ("p1", data, f"image/{fmt.lower()}")})
    assert r.status_code == 200, r.text
