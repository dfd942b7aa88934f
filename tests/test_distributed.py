"""Two CPU processes with gloo on 127.0.0.1 give the one-process result for the same global batch.

Tolerances (docs/distributed.md):
- SimpleNet (no BatchNorm), no augmentation: weights equal to 1e-6 absolute after 3 epochs (measured: 4e-8) —
  only the order of floating-point sums differs (a mean of two half-batch gradients instead of one full-batch mean).
- ConvNet (BatchNorm, each process normalises its half-batch) with augmentation (each process draws its own
  stream): held-out accuracy within 0.05 of the one-process run, both ≥ 0.9.
- Gaussian sufficient statistics summed over 2 processes equal the one-process ones to 1e-6 (relative to their
  largest entry).
- Resuming a 2-process run from its checkpoint equals the uninterrupted 2-process run bitwise.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from _interrupt import Interrupt, StopAfter
from owlearn.api import build_model
from owlearn.data import ImageDataset
from owlearn.data.augment import preset
from owlearn.nets import Network, NetworkSpec
from owlearn.train import TrainConfig, Trainer, distributed, evaluate_accuracy

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")


def _blobs(n=256, size=20, seed=0):
    """Three classes told apart by which image quadrant is bright."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 60, (n, 1, size, size), dtype=torch.uint8, generator=g)
    h = size // 2
    for k in range(3):
        images[labels == k, :, (k // 2) * h:(k // 2) * h + h, (k % 2) * h:(k % 2) * h + h] += 150
    return ImageDataset(images, labels, ["a", "b", "c"], name="blobs")


def _net(backbone, seed=0):
    torch.manual_seed(seed)
    args = {"widths": (8, 16, 16, 32)} if backbone == "convnet" else {}
    return Network(NetworkSpec(backbone, "linear", 3, (1, 20, 20), backbone_args=args))


CONFIG = {"epochs": 3, "batch_size": 32, "lr": 0.05, "seed": 3}




def _runs(tmp: Path) -> dict:
    """Everything compared between 1 and 2 processes; called in the test process and in each worker."""
    train, held_out = _blobs(seed=0), _blobs(n=96, seed=1)
    out: dict = {}
    plain = _net("simplenet")
    Trainer(plain, TrainConfig(**CONFIG), progress=False).fit(train)
    out["simplenet"] = {k: v.clone() for k, v in plain.state_dict().items()}

    conv = _net("convnet")
    history = Trainer(conv, TrainConfig(**CONFIG), augment=preset("digits"), progress=False).fit(train)
    out["convnet"] = {k: v.clone() for k, v in conv.state_dict().items()}
    out["convnet_acc"] = evaluate_accuracy(conv, held_out)
    out["convnet_loss"] = [e["loss"] for e in history.epochs]

    ckpt_dir = tmp / f"ckpt-{distributed.world_size()}"
    resumed = _net("convnet")
    try:
        Trainer(resumed, TrainConfig(**CONFIG), augment=preset("digits"), hooks=[StopAfter(0)],
                checkpoint_dir=ckpt_dir, progress=False).fit(train)
    except Interrupt:
        pass
    resumed = _net("convnet", seed=99)  # different start: the checkpoint must restore everything
    Trainer(resumed, TrainConfig(**CONFIG), augment=preset("digits"), checkpoint_dir=ckpt_dir,
            progress=False).fit(train, resume=True)
    out["resumed"] = {k: v.clone() for k, v in resumed.state_dict().items()}

    model = build_model(train, "convnet", "linear", backbone_args={"widths": [8, 16, 16, 32]}, seed=0)
    g = model.fit_gaussian(train)
    out["gaussian"] = {k: torch.as_tensor(getattr(g, k)) for k in ("counts_", "sums_", "scatter_", "covariance_")}
    return out


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with distributed.session(backend="gloo"):
        assert distributed.is_distributed() and distributed.world_size() == world
        out = _runs(Path(tmp))
        torch.save(out, Path(tmp) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the workers' single thread
    try:
        single = _runs(tmp)
    finally:
        torch.set_num_threads(threads)
    # fork where there is one: the workers inherit the imported modules (seconds saved per test run)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp)), nprocs=2, start_method=method)
    return single, [torch.load(tmp / f"rank{r}.pt") for r in range(2)]


def test_two_processes_hold_the_same_model(one_and_two):
    _, (r0, r1) = one_and_two
    for key in ("simplenet", "convnet", "resumed"):
        assert all(torch.equal(r0[key][k], r1[key][k]) for k in r0[key])


def test_without_batchnorm_two_processes_match_one(one_and_two):
    single, (r0, _) = one_and_two
    diff = max(float((single["simplenet"][k] - r0["simplenet"][k]).abs().max()) for k in single["simplenet"])
    assert diff < 1e-6


def test_with_batchnorm_and_augmentation_accuracy_matches(one_and_two):
    single, (r0, _) = one_and_two
    assert single["convnet_acc"] >= 0.9 and r0["convnet_acc"] >= 0.9
    assert abs(single["convnet_acc"] - r0["convnet_acc"]) <= 0.05
    assert r0["convnet_loss"][-1] < r0["convnet_loss"][0]


def test_resumed_two_process_run_equals_uninterrupted(one_and_two):
    _, (r0, _) = one_and_two
    assert all(torch.equal(r0["resumed"][k], r0["convnet"][k]) for k in r0["convnet"])


def test_gaussian_statistics_reduced_across_processes_equal_one_process(one_and_two):
    single, (r0, r1) = one_and_two
    for key, value in single["gaussian"].items():
        assert float((r0["gaussian"][key] - value).abs().max()) <= 1e-6 * float(value.abs().max()), key
        assert torch.equal(r0["gaussian"][key], r1["gaussian"][key])


def test_helpers_are_no_ops_in_one_process():
    t = torch.ones(3)
    assert distributed.all_reduce_sum(t) is t and torch.equal(t, torch.ones(3))
    assert not distributed.is_distributed() and distributed.rank() == 0 and distributed.world_size() == 1
    with distributed.session():  # no torchrun variables here: nothing to join
        assert not torch.distributed.is_initialized()
