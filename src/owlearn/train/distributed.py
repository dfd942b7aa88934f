"""Multi-process data-parallel training with ``torch.distributed``: small helpers the loop and the estimators call.

``torchrun --nproc-per-node N -m owlearn train …`` starts N copies of the ordinary command; :func:`session`
sees the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
and joins the process group: gloo on CPU, NCCL on CUDA. Without them every helper is a no-op, so single-process
code paths stay exactly as they were.

Gradients are averaged with one all-reduce after ``backward`` (:func:`average_gradients`) — the arithmetic of
``DistributedDataParallel`` — instead of wrapping the network in DDP: objectives call ``model.features``,
``model.head`` and extra forwards (VAT, IIC) directly, which DDP's wrapper would not see.

Statistics that add up over images (Gaussian sums and scatters, EWC Fisher sums) are summed exactly across
processes with :func:`all_reduce_sum`; each process works on its own share of the images.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True when this process was started by torchrun (or anything that sets the same variables)."""
    return all(v in os.environ for v in TORCHRUN_VARS)


def is_distributed() -> bool:
    """True inside a process group of more than one process (a group of one behaves like no group)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """The process that logs and writes files (rank 0)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def session(backend: str | None = None, timeout_s: float = 1800.0) -> Iterator[None]:
    """Join the process group torchrun describes for the duration of the block (a no-op when not launched).

    ``backend`` defaults to NCCL when CUDA is available, else gloo. With CUDA each process uses the GPU
    ``LOCAL_RANK``, so ``device="auto"`` needs no change on the command line.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield
    finally:
        dist.destroy_process_group()


def _reduce_device() -> torch.device:
    # NCCL reduces GPU tensors only; gloo reduces CPU tensors
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensors: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]):
    """Sum tensors over all processes, in place, in one collective call; returns its argument.

    Accepts one tensor, a list or a dict of tensors (e.g. EWC's per-parameter Fisher sums). Sum, then divide
    by the all-reduced count: a mean of per-process means is exact only when every process has as many images.

    Examples
    --------
    >>> all_reduce_sum(torch.ones(3))  # one process: unchanged
    tensor([1., 1., 1.])
    """
    if not is_distributed():
        return tensors
    if isinstance(tensors, torch.Tensor):
        items = [tensors]
    elif isinstance(tensors, Mapping):
        items = list(tensors.values())
    else:
        items = list(tensors)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in items:
        by_dtype.setdefault(t.dtype, []).append(t)
    device = _reduce_device()
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1).to(device) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view(t.shape))
            offset += n
    return tensors


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace every gradient by its mean over the processes (each process computed it on its shard).

    Every process must have gradients for the same parameters, as with DDP without ``find_unused_parameters``.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or not is_distributed():
        return
    all_reduce_sum(grads)
    n = world_size()
    for g in grads:
        g.div_(n)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of process ``src`` to all processes (what DDP does at construction)."""
    if not is_distributed():
        return
    device = _reduce_device()
    for t in [*module.parameters(), *module.buffers()]:
        buf = t.detach().to(device).contiguous()
        dist.broadcast(buf, src=src)
        t.data.copy_(buf)


def average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running mean and variance) over the processes.

    Each process normalised its own shard, so its running statistics saw only that shard; the average makes
    all processes hold one model. The running mean then equals the one-process value (it is linear in the
    batch means); the running variance misses the spread between shard means, a small difference.
    """
    if not is_distributed():
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if buffers:
        all_reduce_sum(buffers)
        for b in buffers:
            b.div_(world_size())


def gaussian_statistics(features: torch.Tensor, labels: np.ndarray | torch.Tensor, num_classes: int
                        ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per-class counts ``(K,)``, feature sums ``(K, D)`` and scatters about the class mean ``K × (D, D)``,
    summed over all processes, each holding its share of the images (any split).

    Two passes, as in one process: counts and sums are reduced first, so that every process centres its
    features on the *global* class mean before the scatters are summed — no ``sum(x xᵀ) - n μ μᵀ``
    cancellation. Classes absent from every process keep count 0.
    """
    X = features.detach().cpu().to(torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    d = X.shape[1]
    counts = torch.zeros(num_classes, dtype=torch.float64)
    sums = torch.zeros(num_classes, d, dtype=torch.float64)
    counts.index_add_(0, y, torch.ones(len(y), dtype=torch.float64))
    sums.index_add_(0, y, X)
    all_reduce_sum([counts, sums])
    means = sums / counts.clamp_min(1)[:, None]
    scatters = torch.zeros(num_classes, d, d, dtype=torch.float64)
    for k in range(num_classes):
        centred = X[y == k] - means[k]
        scatters[k] = centred.T @ centred
    all_reduce_sum(scatters)
    return counts.round().to(torch.int64).numpy(), sums.numpy(), list(scatters.numpy())


def shard_indices(n: int) -> torch.Tensor:
    """This process's share of ``n`` items (every ``world_size``-th, starting at its rank)."""
    return torch.arange(rank(), n, world_size())
