"""A quick screen for B6 ideas (about a minute per CE + VAT run on one CPU thread), not a benchmark.

Trains the B6 ConvNet on 8,000 images of a dataset's test split with a few labels per class and scores it on the
other 2,000. It uses test images, so nothing it prefers may be chosen for a reported figure without a run on
B6's held-out training images (``b6_semisup.py --stage select``). Session 18's screen is in the notes of
``results/b6_semisup-explore.json``. Compare over several ``--seed`` values: one run's noise (about ±1.5
points between seeds) is as large as the differences screened.

    python benchmarks/b6_proxy.py --mode ce
    python benchmarks/b6_proxy.py --eps 8 --ent 1 --share 0.5
    python benchmarks/b6_proxy.py --dataset mnist --data-dir ../shared/data --per 10 --ent 0 --eps 5 \
        --aug none --epochs 4
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from b6_semisup import semi_set
from owlearn.api import build_model, train_model
from owlearn.data.augment import preset
from owlearn.data.sources import load_dataset
from owlearn.evaluate import held_out_accuracy
from owlearn.train.loop import CrossEntropy, Hook, TrainConfig
from owlearn.train.vat import DEFAULT_XI, VAT


class WeightAverage(Hook):
    """Keeps an exponential moving average of the network's weights and buffers (torch's AveragedModel) and
    puts it in at the end."""

    def __init__(self, decay: float):
        self.decay, self.average = decay, None

    def on_fit_start(self, trainer) -> None:
        self.average = AveragedModel(trainer.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    def on_after_backward(self, trainer, step) -> None:  # before the step: the average lags by one update
        self.average.update_parameters(trainer.model)

    def on_fit_end(self, trainer) -> None:
        trainer.model.load_state_dict(self.average.module.state_dict())


class RelativeVAT(VAT):
    """VAT whose radius follows each image's L2 norm (sparse images get a smaller ε), the batch's mean kept."""

    def __call__(self, step) -> torch.Tensor:
        norms = step.x.flatten(1).norm(dim=1)
        eps = self.eps
        self.eps = (eps * norms / norms.mean().clamp_min(1e-12)).view(-1, *[1] * (step.x.dim() - 1))
        try:
            return super().__call__(step)
        finally:
            self.eps = eps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["ce", "vat"], default="vat", help="CE only, or CE + VAT")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--per", type=int, default=50, help="labels per class")
    p.add_argument("--eps", type=float, default=8.0)
    p.add_argument("--ent", type=float, default=1.0, help="entropy-minimisation weight")
    p.add_argument("--weight", type=float, default=1.0, help="VAT's weight")
    p.add_argument("--iterations", type=int, default=1, help="power iterations")
    p.add_argument("--xi", type=float, default=DEFAULT_XI)
    p.add_argument("--share", type=float, default=0.25, help="the labelled images' share of every epoch")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--aug", default="fashion", help="augmentation preset")
    p.add_argument("--seed", type=int, default=0, help="the labels' and the training's seed (the split stays)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on the features before the head")
    p.add_argument("--widths", default=None, help="ConvNet widths, comma-separated (default 32,64,128,256)")
    p.add_argument("--eps-relative", action="store_true",
                   help="scale each image's ε by its L2 norm over the batch's mean norm (the mean ε stays)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="score an exponential moving average of the weights with this decay (0: the last weights)")
    args = p.parse_args()
    torch.set_num_threads(1)
    images = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    scored, train = images.random_split(2000, seed=1)
    # the training set exactly as B6 builds it (CE only: the labelled images alone, repeated)
    data = semi_set(train, args.per, args.seed, None if args.mode == "ce" else {"labelled_share": args.share})
    objectives = [CrossEntropy()]
    if args.mode == "vat":
        vat = RelativeVAT if args.eps_relative else VAT
        objectives.append(vat(weight=args.weight, eps=args.eps, xi=args.xi, iterations=args.iterations,
                              entropy_weight=args.ent))
    backbone_args = {"widths": tuple(int(w) for w in args.widths.split(","))} if args.widths else None
    model = build_model(data, "convnet", "linear", seed=args.seed, backbone_args=backbone_args)
    if args.dropout:
        head = model.network.head
        head.register_forward_pre_hook(lambda m, inputs: (F.dropout(inputs[0], args.dropout, m.training),))
    config = TrainConfig(epochs=args.epochs, batch_size=128, lr=args.lr, seed=args.seed, optimizer=args.optimizer,
                         weight_decay=args.weight_decay)
    t0 = time.perf_counter()
    hooks = [WeightAverage(args.ema)] if args.ema else None
    train_model(model, data, config=config, augment=preset(args.aug), objectives=objectives, hooks=hooks,
                progress=False)
    print(f"{vars(args)}: accuracy {held_out_accuracy(model, scored):.4f} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
