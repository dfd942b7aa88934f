"""Fixtures shared by the tests of models that refuse and learn (test_open_world, test_serve).

The suite describes CPU behaviour: float32 under ``precision="auto"``, the CPU's exact per-step checks,
assertions on CPU tensors. CI has no GPU. On a machine with one, ``device="auto"`` would train on it and
several tests would fail for that reason alone (seen on an H100), so GPUs are hidden here, before
anything initialises CUDA, and child processes inherit that. The loop's GPU-only paths are checked by
``benchmarks/gpu/check_cuda.py``.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402
import torch  # noqa: E402

from owlearn.api import build_model, train_model  # noqa: E402
from owlearn.data import ImageDataset  # noqa: E402
from owlearn.train import TrainConfig  # noqa: E402

PATTERNS = 5


def make_patterns(n_per_class=40, seed=0):
    """Five classes: a bright square in one of five places on a noisy 12×12 image."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(PATTERNS).repeat_interleave(n_per_class)
    images = torch.randint(0, 50, (len(labels), 1, 12, 12), dtype=torch.uint8, generator=g)
    corners = [(0, 0), (0, 7), (7, 0), (7, 7), (3, 3)]
    for k, (r, c) in enumerate(corners):
        images[labels == k, :, r:r + 5, c:c + 5] += 180
    return ImageDataset(images, labels, [f"p{k}" for k in range(PATTERNS)], name="patterns")


@pytest.fixture(scope="session")
def model_on_three():
    """Trained on p0-p2 only; p3 and p4 are unknown to it."""
    data = make_patterns()
    known = data.select_classes([0, 1, 2]).relabel(["p0", "p1", "p2"])
    calib, train = known.random_split(30, seed=0)
    model = build_model(train, "convnet", "l2softmax", backbone_args={"widths": [8, 16, 16, 32]})
    train_model(model, train, config=TrainConfig(epochs=6, batch_size=15, seed=0), progress=False)
    model.fit_detector(train, calib, "knn", accept_rate=0.95)
    model.fit_gaussian(train)
    return model, data




@pytest.fixture(scope="session")
def patterns():
    """``patterns(n_per_class=40, seed=0)``: the five-pattern dataset."""
    return make_patterns
