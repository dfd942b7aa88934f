"""End to end in a real browser: Debian's chromium, driven by Playwright, against `owlearn serve`.

Draws with the mouse on the page's canvas: a digit is recognised, a shape that is no digit is refused,
a taught class is recognised, and it is still known after the server restarts. Screenshots are saved
to artifacts/screenshots/ (see the README).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TOKEN = "browser-test-token"

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is installed by scripts/setup.sh --test")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is installed by scripts/setup.sh --test", allow_module_level=True)
if not (MNIST / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
    pytest.skip("needs the MNIST test set in ../shared/data/mnist", allow_module_level=True)


@pytest.fixture(scope="module")
def digit_model(tmp_path_factory) -> Path:
    """A small digit recogniser trained on the MNIST-10k split, with a detector and Gaussians."""
    from owlearn.api import build_model, train_model
    from owlearn.data.augment import preset
    from owlearn.data.sources import load_dataset
    from owlearn.train import TrainConfig

    train, _ = load_dataset("mnist", "test", data_dir=MNIST).split(8000)
    calib, train = train.random_split(500, seed=0)
    model = build_model(train, "simplenet", "l2softmax", seed=0)
    train_model(model, train, config=TrainConfig(epochs=6, batch_size=64, lr=0.05, seed=0),
                augment=preset("digits"), progress=False)
    # k=3: a class taught from four drawings must be able to supply an image's 3 nearest neighbours
    model.fit_detector(train, calib, "knn", accept_rate=0.98, n_neighbors=3)
    model.fit_gaussian(train)
    return model.save(tmp_path_factory.mktemp("browser") / "digits.owl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`owlearn serve` as a real process on 127.0.0.1."""

    def __init__(self, model: Path):
        self.model, self.port = model, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "owlearn", "serve", str(self.model), "--port", str(self.port)],
            env={**os.environ, "OWLEARN_TOKEN": TOKEN}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"owlearn serve exited: {self.proc.stdout.read().decode()}") from None
                time.sleep(0.2)
        raise RuntimeError("owlearn serve did not start within 60 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def _draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes given in canvas units (0..1) with the mouse, then wait for the answer to settle."""
    page.click("#clear")
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        x0, y0 = stroke[0]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=4)
        page.mouse.up()
    page.wait_for_function("document.querySelector('#answer').textContent !== '—'")
    page.wait_for_timeout(600)  # the answer to the last stroke


def _answer(page) -> str:
    return page.locator("#answer").text_content().strip()


ONE = [[(0.5, 0.15), (0.5, 0.85)]]
ZERO = [[(0.5 + 0.22 * math.sin(t / 20 * 2 * math.pi), 0.5 - 0.33 * math.cos(t / 20 * 2 * math.pi))
         for t in range(21)]]
SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]
LINES = (0.15, 0.38, 0.62, 0.85)
GRID = [[(0.1, y), (0.9, y)] for y in LINES] + [[(x, 0.1), (x, 0.9)] for x in LINES]  # no digit looks like this


def _triangle(jitter: float) -> list[list[tuple[float, float]]]:
    return [[(0.5, 0.2 + jitter), (0.85 - jitter, 0.8), (0.15 + jitter, 0.8), (0.5, 0.2 + jitter)]]


def test_draw_refuse_teach_and_restart(digit_model, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    server = Server(digit_model).start()
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(server.url)
        page.wait_for_selector("#classes li")

        for strokes, digit in [(ONE, "1"), (ZERO, "0"), (SEVEN, "7")]:
            _draw(page, strokes)
            assert _answer(page) == digit, f"drew a {digit}, the page answered {_answer(page)!r}"

        _draw(page, GRID)
        assert _answer(page) == "unknown"
        assert "Refused" in page.locator("#verdict").text_content()
        page.screenshot(path=str(SCREENSHOTS / "refused.png"))

        page.fill("#token", TOKEN)
        page.fill("#teach-name", "triangle")
        for jitter in (0.0, 0.03, -0.03, 0.05):
            _draw(page, _triangle(jitter))
            page.click("#teach-add")
        page.click("#teach-submit")
        page.wait_for_function("document.querySelector('#status').textContent.includes('Learned')")
        _draw(page, _triangle(0.02))
        assert _answer(page) == "triangle"
        page.screenshot(path=str(SCREENSHOTS / "taught.png"))

        server.stop()
        server.start()
        page.goto(server.url)
        page.wait_for_selector("#classes li")
        assert "triangle" in page.locator("#classes").text_content()
        _draw(page, _triangle(-0.02))
        assert _answer(page) == "triangle"
    finally:
        server.stop()


def _touch_draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes with a finger: real touch events through the DevTools protocol, which the browser turns
    into the pointer events the page listens to (pointerType 'touch')."""
    page.click("#clear")
    box = page.locator("#canvas").bounding_box()
    cdp = page.context.new_cdp_session(page)
    at = lambda x, y: [{"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]}]  # noqa: E731
    for stroke in strokes:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": at(*stroke[0])})
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            for t in (0.25, 0.5, 0.75, 1.0):
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove",
                                                      "touchPoints": at(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_function("document.querySelector('#answer').textContent !== '—'")
    page.wait_for_timeout(600)


def test_drawing_with_a_finger(digit_model, browser):
    server = Server(digit_model).start()
    try:
        context = browser.new_context(viewport={"width": 420, "height": 900}, has_touch=True, is_mobile=True)
        page = context.new_page()
        page.goto(server.url)
        page.wait_for_selector("#classes li")
        page.evaluate("document.querySelector('#canvas').addEventListener('pointerdown', "
                      "(e) => { window.__kinds = (window.__kinds || []).concat(e.pointerType); })")
        _touch_draw(page, ONE)
        kinds = page.evaluate("window.__kinds || []")
        assert kinds and set(kinds) == {"touch"}, kinds
        assert _answer(page) == "1", f"drew a 1 with a finger, the page answered {_answer(page)!r}"
        context.close()
    finally:
        server.stop()


def test_server_listens_on_localhost_only_by_default(digit_model):
    server = Server(digit_model).start()
    try:
        out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
        listening = [line for line in out.splitlines() if f":{server.port} " in line]
        assert not out or all("127.0.0.1" in line for line in listening)
        with urllib.request.urlopen(server.url + "/api/health", timeout=5) as r:
            assert r.status == 200
    finally:
        server.stop()

