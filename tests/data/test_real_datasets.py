"""The real published files where this machine has them (skipped elsewhere).

Fashion-MNIST: Debian's dataset-fashion-mnist in /usr/share/datasets/fashion-mnist/.
MNIST test set: ../shared/data/mnist/ next to the repository.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from owlearn.data import dataset_info, load_dataset
from owlearn.data.sources import get_dataset_spec

SHARED_MNIST = Path(__file__).parents[2] / "../shared/data/mnist"
SHARED_FASHION = Path(__file__).parents[2] / "../shared/data/fashion-mnist"
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_fashion = pytest.mark.skipif(
    not (SYSTEM_FASHION / "t10k-labels-idx1-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed"
)
needs_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").exists(), reason="../shared/data/mnist absent"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_sums(path: Path) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in path.read_text().splitlines() if line.strip()}


def _accepted(name: str, file: str) -> set[str]:
    remote = get_dataset_spec(name).file(file)
    return {remote.sha256, *remote.also_sha256}


@needs_fashion
def test_fashion_mnist_from_the_system_folder():
    info = dataset_info("fashion-mnist")
    assert info["found"] and info["locations"] == [str(SYSTEM_FASHION)]
    for split, n in (("train", 60000), ("test", 10000)):
        ds = load_dataset("fashion-mnist", split)
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels.bincount().tolist() == [n // 10] * 10
        assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


@needs_fashion
def test_fashion_mnist_checksums():
    sums = read_sums(SHARED_FASHION / "SHA256SUMS") if (SHARED_FASHION / "SHA256SUMS").exists() else {}
    for remote in get_dataset_spec("fashion-mnist").files:
        digest = sha256(SYSTEM_FASHION / remote.name)
        assert digest in _accepted("fashion-mnist", remote.name)
        if sums:
            assert sums[remote.name] == digest


@needs_mnist
def test_mnist_test_set(isolated_env):
    folder = isolated_env / "mnist"
    folder.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to((SHARED_MNIST / name).resolve())
    ds = load_dataset("mnist", "test")
    assert ds.images.shape == (10000, 1, 28, 28)
    assert ds.labels.bincount().tolist() == MNIST_TEST_COUNTS
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]
    train, held_out = ds.split(8000)  # the BENCHMARKS "MNIST-10k split"
    assert (len(train), len(held_out)) == (8000, 2000)


@needs_mnist
def test_mnist_checksums():
    sums = read_sums(SHARED_MNIST / "SHA256SUMS")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        digest = sha256(SHARED_MNIST / name)
        assert sums[name] == digest == get_dataset_spec("mnist").file(name).sha256
