"""Where one B1 training epoch spends its time: torch.profiler over the real loop (ConvNet, Fashion-MNIST).

OMP_NUM_THREADS=1 python benchmarks/profile_b1.py --images 6400 [--threads 1] [--fused]

Runs owlearn's Trainer with B1's settings (batch 128, SGD Nesterov, the fashion augmentation, channels_last) on
the first ``--images`` training images for one epoch, after a short warm-up, and prints the time per phase
(augmentation, forward, backward, optimizer step) and the operators that dominate. Written for docs/performance.md.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import owlearn.train.loop as loop
from owlearn.api import build_model
from owlearn.data.augment import preset
from owlearn.data.sources import load_dataset
from owlearn.train.loop import TrainConfig, Trainer


def _traced(name, fn):
    def wrapper(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)
    return wrapper


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=6400)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--fused", action="store_true", help="SGD with fused=True (a candidate speed-up)")
    p.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last (a layout check)")
    p.add_argument("--no-profile", action="store_true", help="time the epoch only (no profiler overhead)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train = load_dataset("fashion-mnist", "train").subset(torch.arange(args.images))
    model = build_model(train, "convnet", "linear", seed=0)
    cfg = TrainConfig(epochs=1, batch_size=128, lr=0.1, seed=0, channels_last=not args.contiguous)
    trainer = Trainer(model.network, cfg, augment=preset("fashion"), progress=False)
    if args.fused:
        for group in trainer.optimizer.param_groups:
            group["fused"] = True
    # phases the loop does not name itself: augmentation and the forward pass (backward and optimizer.step
    # are named by autograd and torch.optim)
    loop.augment_batch = _traced("augment", loop.augment_batch)
    loop.to_float = _traced("uint8 -> float", loop.to_float)
    net = model.network
    net.features = _traced("forward", net.features)
    Trainer(build_model(train.subset(torch.arange(1280)), "convnet", "linear").network, cfg,
            augment=preset("fashion"), progress=False).fit(train.subset(torch.arange(1280)))  # warm-up
    if args.no_profile:
        t0 = time.perf_counter()
        trainer.fit(train)
        dt = time.perf_counter() - t0
        print(f"{args.images / dt:,.0f} images/s ({dt:.1f} s, {torch.get_num_threads()} threads, "
              f"fused={args.fused}, channels_last={not args.contiguous})")
        return
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        trainer.fit(train)
        dt = time.perf_counter() - t0
    events = prof.key_averages()
    total = dt * 1e6
    phases = defaultdict(float)
    for e in events:
        name = e.key
        if name in ("augment", "uint8 -> float", "forward") or name.startswith("Optimizer.step") \
                or name.startswith("Optimizer.zero_grad"):
            phases[name] += e.cpu_time_total
        elif name.startswith("autograd::engine::evaluate_function"):
            phases["backward"] += e.cpu_time_total  # one event per autograd node, not nested
    print(f"epoch of {args.images} images: {dt:.2f} s ({args.images / dt:,.0f} images/s), "
          f"{torch.get_num_threads()} threads, fused={args.fused}")
    print("\nphase shares (inclusive CPU time / wall time of the epoch):")
    for name, us in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"  {name:40s} {us / 1e6:7.2f} s  {100 * us / total:5.1f}%")
    print("\noperators by self CPU time:")
    print(events.table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=45))


if __name__ == "__main__":
    main()
