"""B4 — the machine's floor for the naive strategy's training: a bare PyTorch loop over the same steps.

B4 asks every strategy to take at most a third of Avalanche's time. Naive fine-tuning trains SimpleNet for
5 experiences × 12,000 images × 5 epochs at batch 64 (4,675 steps: the last partial batch of an epoch is
dropped; SGD with Nesterov momentum, lr 0.01). This
script times exactly those steps in the barest loop PyTorch allows: the images already in memory as one float
tensor, no data loader, no augmentation, no evaluation, nothing recorded. Whatever a library adds, it cannot
train below this, single-threaded, as B4 runs. Both memory layouts are timed (owlearn trains in channels_last).

python benchmarks/b4_floor.py [--repeats 2]      (one thread on the CPU: --seeds and --device are not used)
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

from common import base_parser, mean_std, write_results

EXPERIENCES, IMAGES_PER_EXPERIENCE, EPOCHS, BATCH = 5, 12_000, 5, 64


class _Classifier(nn.Module):
    def __init__(self):
        from owlearn.nets.backbones import SimpleNet

        super().__init__()
        self.backbone, self.head = SimpleNet(), nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def time_steps(images: torch.Tensor, labels: torch.Tensor, steps: int, channels_last: bool, seed: int) -> float:
    """CPU seconds of ``steps`` SGD steps of SimpleNet on batches of 64 drawn in a seeded order."""
    torch.manual_seed(seed)
    net = _Classifier()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    per_pass = len(images) // BATCH
    start = time.process_time()
    for i in range(steps):
        batch = order[(i % per_pass) * BATCH:(i % per_pass + 1) * BATCH]
        x = images[batch]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(net(x), labels[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.process_time() - start


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)  # as B4's runs, owlearn's and Avalanche's alike
    from owlearn.data.sources import load_dataset

    started = time.time()
    train = load_dataset("fashion-mnist", "train")
    images, labels = train.images.float().div(255), train.labels
    steps = EXPERIENCES * EPOCHS * (IMAGES_PER_EXPERIENCE // BATCH)
    if args.quick:
        steps //= 20
    results = {}
    for layout, channels_last in (("channels_last", True), ("NCHW", False)):
        runs = [time_steps(images, labels, steps, channels_last, seed) for seed in range(args.repeats)]
        results[layout] = {"cpu_seconds": mean_std(runs), "runs": runs, "ms_per_step": 1000 * min(runs) / steps}
        print(f"{layout}: {steps} steps in {min(runs):.1f} CPU s ({results[layout]['ms_per_step']:.2f} ms a step)",
              flush=True)
    config = {"steps": steps, "batch_size": BATCH, "torch_threads": 1, "repeats": args.repeats, "quick": args.quick,
              "workload": f"{EXPERIENCES} experiences x {IMAGES_PER_EXPERIENCE} images x {EPOCHS} epochs"}
    write_results("b4_floor", config, results, started, args.out)


if __name__ == "__main__":
    main()
