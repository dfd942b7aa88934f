"""Generators of small files in each published format, a local HTTP server, and an isolated data dir.

The generators write exactly what the publishers' files contain (same headers, record layouts and
compression), only with a handful of images, so the parsers are tested on the real layout without
the real downloads.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from owlearn.data import sources

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------
# IDX


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file of unsigned bytes: magic, big-endian dimensions, data."""
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data``, gzip'd or bz2'd when the name says so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    elif path.suffix == ".bz2":
        data = bz2.compress(data)
    path.write_bytes(data)
    return path


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    return write_file(path, idx_bytes(array, magic))


def random_images(n: int, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def make_mnist_files(folder: Path, n_train: int = 12, n_test: int = 7, seed: int = 0) -> dict:
    """The four MNIST files (gzip'd) in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[prefix] = (images, labels)
    return out


# --------------------------------------------------------------------------------------------------
# CIFAR binary archives


def cifar_records(images: np.ndarray, *label_columns: Sequence[int]) -> bytes:
    """Records of label byte(s) then R, G, B planes (each 32x32, rows first)."""
    images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    labels = np.stack([np.asarray(c, dtype=np.uint8) for c in label_columns], axis=1)
    return np.concatenate([labels, images], axis=1).tobytes()


def write_tar(path: Path, members: dict[str, bytes], extra: Sequence[tarfile.TarInfo] = ()) -> Path:
    """A ``.tar.gz`` with the given regular files (and any extra raw members, e.g. links)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def make_cifar10_archive(path: Path, per_batch: int = 3, n_test: int = 4, seed: int = 0, **edits) -> dict:
    """``cifar-10-binary.tar.gz`` as published (in ``cifar-10-batches-bin/``); ``edits`` replace members."""
    rng = np.random.default_rng(seed)
    members, arrays = {}, {}
    for batch, n in [*((f"data_batch_{i}.bin", per_batch) for i in range(1, 6)), ("test_batch.bin", n_test)]:
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        members[f"cifar-10-batches-bin/{batch}"] = cifar_records(images, labels)
        arrays[batch] = (images, labels)
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(CIFAR10_NAMES) + "\n\n").encode()
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    members.update({f"cifar-10-batches-bin/{k}": v for k, v in edits.items()})
    write_tar(path, members)
    return arrays


def make_cifar100_archive(path: Path, n_train: int = 5, n_test: int = 3, seed: int = 0) -> dict:
    """``cifar-100-binary.tar.gz`` as published (folder ``cifar-100-binary/``)."""
    rng = np.random.default_rng(seed)
    members, arrays = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n)
        coarse = fine // 5
        members[f"cifar-100-binary/{split}.bin"] = cifar_records(images, coarse, fine)
        arrays[split] = (images, coarse, fine)
    members["cifar-100-binary/fine_label_names.txt"] = "\n".join(f"fine{i}" for i in range(100)).encode()
    members["cifar-100-binary/coarse_label_names.txt"] = "\n".join(f"coarse{i}" for i in range(20)).encode()
    write_tar(path, members)
    return arrays


# --------------------------------------------------------------------------------------------------
# USPS (LIBSVM)


def usps_lines(values: np.ndarray, labels: Sequence[int], sparse: bool = False) -> str:
    """LIBSVM lines as in ``usps.bz2``: ``label 1:v 2:v ... 256:v``; sparse drops zero values."""
    lines = []
    for row, label in zip(values, labels, strict=True):
        feats = [f"{i}:{v:.6f}" for i, v in enumerate(row, start=1) if not (sparse and v == 0)]
        lines.append(" ".join([str(label), *feats]))
    return "\n".join(lines) + "\n"


def write_usps(path: Path, values: np.ndarray, labels: Sequence[int], sparse: bool = False) -> Path:
    return write_file(path, usps_lines(values, labels, sparse).encode())


# --------------------------------------------------------------------------------------------------
# image folders


def make_image_folder(root: Path, classes: dict[str, list[np.ndarray]], fmt: str = "png") -> Path:
    """``root/<class>/<i>.<fmt>`` from ``uint8`` arrays (H, W) or (H, W, 3)."""
    from PIL import Image

    for cls, arrays in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, array in enumerate(arrays):
            Image.fromarray(np.asarray(array, dtype=np.uint8)).save(root / cls / f"{i:03d}.{fmt}")
    return root


@pytest.fixture
def gen() -> SimpleNamespace:
    """The generators above, for tests (conftest modules are not imported by name)."""
    return SimpleNamespace(
        idx_bytes=idx_bytes, write_file=write_file, write_idx=write_idx, random_images=random_images,
        make_mnist_files=make_mnist_files, cifar_records=cifar_records, write_tar=write_tar,
        make_cifar10_archive=make_cifar10_archive, make_cifar100_archive=make_cifar100_archive,
        usps_lines=usps_lines, write_usps=write_usps, make_image_folder=make_image_folder, sha256=sha256,
        CIFAR10_NAMES=CIFAR10_NAMES,
    )


# --------------------------------------------------------------------------------------------------
# environment


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty data dir and no mirror, so nothing touches ~/.cache."""
    data_dir = tmp_path / "owlearn-data"
    monkeypatch.setenv("OWLEARN_DATA", str(data_dir))
    monkeypatch.delenv("OWLEARN_MIRROR", raising=False)
    return data_dir


@pytest.fixture
def registry() -> Iterator[None]:
    """Restore the dataset registry after a test that registers its own datasets."""
    saved = dict(sources._REGISTRY), dict(sources._ALIASES)
    yield
    sources._REGISTRY.clear()
    sources._REGISTRY.update(saved[0])
    sources._ALIASES.clear()
    sources._ALIASES.update(saved[1])


# --------------------------------------------------------------------------------------------------
# HTTP


@dataclass
class Route:
    body: bytes
    drop: bool = False  # announce the full Content-Length, send half, close
    status: int = 200


@dataclass
class LocalServer:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def add(self, path: str, body: bytes, **kwargs) -> str:
        self.routes[path] = Route(body, **kwargs)
        return self.base + path


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        state: LocalServer = self.server.state  # type: ignore[attr-defined]
        state.requests.append(self.path)
        route = state.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        self.send_response(route.status)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if route.drop:
            self.wfile.write(route.body[: len(route.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(route.body)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A real HTTP server on 127.0.0.1 (ephemeral port) in a background thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = LocalServer(f"http://127.0.0.1:{server.server_address[1]}")
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused, as when offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
