"""B7 (training throughput) — owlearn's loop against a plain PyTorch DataLoader loop, same run.

Same model (SimpleNet by default), same data (Fashion-MNIST train), same optimizer and batch size,
no augmentation in any loop. Three loops, measured one after the other in the same process:

* ``plain DataLoader`` — the usual tutorial loop, ``DataLoader(shuffle=True)`` over a ``Dataset`` that
  prepares one image at a time, in two variants: ``torchvision-style`` does what torchvision's
  ``FashionMNIST`` with ``ToTensor()`` + ``Normalize`` does per item (uint8 array → PIL image →
  float tensor → normalise); ``tensor`` skips PIL (uint8 tensor → float → normalise). Each with
  num_workers 0 and 2; the ratio is taken against the fastest plain loop.
* ``owlearn Trainer`` — the library's loop (progress bar off), including its per-epoch bookkeeping.
* ``bare tensors`` — pre-batched, pre-normalised float tensors in memory and nothing else: the
  practical ceiling of the machine for the model.

python benchmarks/b7_throughput.py [--quick] [--backbone simplenet]
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from owlearn.api import build_model
from owlearn.data.sources import load_dataset
from owlearn.train.loop import TrainConfig, Trainer

from common import base_parser, write_results


class PlainFashion(Dataset):
    """What a tutorial does: one image at a time, converted and normalised in ``__getitem__``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float, via_pil: bool):
        self.images, self.labels, self.mean, self.std, self.via_pil = images, labels, mean, std, via_pil

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i, 0]
        if self.via_pil:  # torchvision: Image.fromarray(img, mode="L"), then ToTensor() reads it back
            img = np.asarray(Image.fromarray(img, mode="L"), dtype=np.uint8)
        x = torch.from_numpy(img.copy()).unsqueeze(0).float().div(255).sub(self.mean).div(self.std)
        return x, int(self.labels[i])


def _sgd(net, lr):
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True)


def plain_loop(model, train, epochs: int, batch: int, workers: int, via_pil: bool) -> float:
    net = model.network.backbone, model.network.head
    params = [p for m in net for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
    spec = model.network.spec
    ds = PlainFashion(train.images.numpy(), train.labels.numpy(), spec.mean[0], spec.std[0], via_pil)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(net[1](net[0](x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
    return seen / (time.perf_counter() - start)


def owlearn_loop(model, train, epochs: int, batch: int) -> float:
    # owlearn's defaults otherwise (channels_last memory format included): its loop as users get it
    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=0.01, weight_decay=0.0, schedule="constant")
    trainer = Trainer(model.network, cfg, progress=False)
    start = time.perf_counter()
    trainer.fit(train)
    steps = len(train) // batch
    return epochs * steps * batch / (time.perf_counter() - start)


def bare_loop(model, train, epochs: int, batch: int) -> float:
    net = model.network
    opt = _sgd(net, 0.01)
    n = len(train) // batch * batch
    x_all = net.normalize(train.images[:n].float() / 255).view(-1, batch, *train.shape)
    y_all = train.labels[:n].view(-1, batch)
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in zip(x_all, y_all):
            loss = F.cross_entropy(net.head(net.backbone(x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epochs * n / (time.perf_counter() - start)


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--backbone", default="simplenet")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="measurements of each loop; the median is reported")
    args = p.parse_args()
    started = time.time()
    train = load_dataset("fashion-mnist", "train")
    if args.quick:
        train = train.subset(torch.arange(10_000))
        args.repeats = 1

    def fresh():  # every loop trains its own copy from the same initial weights
        return build_model(train, args.backbone, "linear", seed=0)

    loops = {
        "plain DataLoader, torchvision-style (workers=0)": lambda: plain_loop(fresh(), train, args.epochs,
                                                                              args.batch_size, 0, True),
        "plain DataLoader, torchvision-style (workers=2)": lambda: plain_loop(fresh(), train, args.epochs,
                                                                              args.batch_size, 2, True),
        "plain DataLoader, tensor (workers=0)": lambda: plain_loop(fresh(), train, args.epochs, args.batch_size, 0,
                                                                   False),
        "plain DataLoader, tensor (workers=2)": lambda: plain_loop(fresh(), train, args.epochs, args.batch_size, 2,
                                                                   False),
        "owlearn Trainer": lambda: owlearn_loop(fresh(), train, args.epochs, args.batch_size),
        "bare tensors": lambda: bare_loop(fresh(), train, args.epochs, args.batch_size),
    }
    measured: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats):  # interleaved, so that a slow moment of the machine hits every loop
        for name, loop in loops.items():
            measured[name].append(loop())
            print(f"{name}: {measured[name][-1]:,.0f} images/s", flush=True)
    median = {name: float(np.median(v)) for name, v in measured.items()}
    tv_best = max(v for k, v in median.items() if "torchvision-style" in k)
    plain_best = max(v for k, v in median.items() if k.startswith("plain"))
    results = {
        "images_per_s": median, "all_measurements": measured,
        "owlearn_vs_torchvision_style": median["owlearn Trainer"] / tv_best,
        "owlearn_vs_plain_dataloader": median["owlearn Trainer"] / plain_best,
        "owlearn_vs_bare_tensors": median["owlearn Trainer"] / median["bare tensors"],
        "ratios_described": {
            "owlearn_vs_torchvision_style": "owlearn Trainer / fastest torchvision-style DataLoader loop",
            "owlearn_vs_plain_dataloader": "owlearn Trainer / fastest plain DataLoader loop of any kind "
                                           "(target ≥ 1.5×)",
            "owlearn_vs_bare_tensors": "owlearn Trainer / bare pre-batched tensors (target ≥ 0.5)",
        },
    }
    for key, label in results["ratios_described"].items():
        print(f"{label}: {results[key]:.2f}x")
    config = {"quick": args.quick, "backbone": args.backbone, "batch_size": args.batch_size, "epochs": args.epochs,
              "repeats": args.repeats, "images": len(train), "optimizer": "sgd nesterov lr 0.01", "augment": "none"}
    write_results("b7_throughput", config, results, started, args.out)


if __name__ == "__main__":
    main()
