"""B7 (training steps compiled or not) — owlearn's Trainer with ``TrainConfig(compile=...)`` off and on, and
with ``precision="bf16"`` (``--bf16``: bfloat16 autocast, alone and compiled; meant for GPUs).

Two settings of the other benchmarks, each on the first ``--images`` Fashion-MNIST training images:

* ``simplenet`` — B4's: SimpleNet, batch 64, SGD lr 0.01 momentum 0.9, no augmentation;
* ``convnet`` — B1's: ConvNet, batch 128, SGD lr 0.1, the ``fashion`` augmentation.

Each run trains ``--epochs`` epochs; the first is a warm-up (it pays the compilation) and the images/s of
the others are reported, from the Trainer's own per-epoch log. Eager and compiled runs alternate
``--repeats`` times, so that a slow moment of the machine hits both; the medians are compared.

python benchmarks/b7_compile.py [--quick] [--nets simplenet convnet] [--device cuda --bf16]
"""

from __future__ import annotations

import statistics
import time

import torch

from owlearn.api import build_model
from owlearn.data.augment import AugmentConfig, preset
from owlearn.data.sources import load_dataset
from owlearn.train.loop import TrainConfig, Trainer

from common import base_parser, write_results

SETTINGS = {
    "simplenet": {"batch_size": 64, "lr": 0.01, "weight_decay": 0.0, "augment": None},
    "convnet": {"batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, "augment": "fashion"},
}


def one_run(train, net_name: str, compile_steps: bool | str, precision: str, epochs: int, device: str) -> dict:
    setting = SETTINGS[net_name]
    model = build_model(train, net_name, "linear", seed=0)
    cfg = TrainConfig(epochs=epochs, batch_size=setting["batch_size"], lr=setting["lr"],
                      weight_decay=setting["weight_decay"], schedule="constant", device=device,
                      compile=compile_steps, precision=precision)  # type: ignore[arg-type]
    augment = preset(setting["augment"]) if setting["augment"] else AugmentConfig()
    history = Trainer(model.network, cfg, augment=augment, progress=False).fit(train)
    rates = [e["images_per_s"] for e in history.epochs]
    return {"first_epoch_s": history.epochs[0]["seconds"], "images_per_s": statistics.median(rates[1:]),
            "per_epoch_images_per_s": rates, "final_loss": history.last["loss"]}


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--nets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--images", type=int, default=12_800, help="training images per epoch")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is the warm-up")
    p.add_argument("--repeats", type=int, default=2, help="eager/compiled pairs per network")
    p.add_argument("--backend", default="inductor", help="torch.compile backend of the compiled runs")
    p.add_argument("--bf16", action="store_true", help="also bfloat16 autocast runs, eager and compiled")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first epoch is the warm-up")
    started = time.time()
    if args.quick:
        args.images, args.repeats = 2_560, 1
    train = load_dataset("fashion-mnist", "train").subset(torch.arange(args.images))
    results: dict[str, dict] = {}
    for net_name in args.nets:
        variants = {"eager": (False, "fp32"), "compiled": (args.backend, "fp32")}
        if args.bf16:
            variants |= {"bf16": (False, "bf16"), "bf16 compiled": (args.backend, "bf16")}
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant, (flag, precision) in variants.items():
                run = one_run(train, net_name, flag, precision, args.epochs, args.device)
                runs[variant].append(run)
                print(f"{net_name} {variant}: {run['images_per_s']:,.0f} images/s after a first epoch of "
                      f"{run['first_epoch_s']:.1f} s", flush=True)
        median = {v: statistics.median(r["images_per_s"] for r in rs) for v, rs in runs.items()}
        results[net_name] = {
            **SETTINGS[net_name], "runs": runs, "images_per_s": median,
            "vs_eager": {v: median[v] / median["eager"] for v in variants},
            "first_epoch_s": {v: statistics.median(r["first_epoch_s"] for r in rs) for v, rs in runs.items()},
        }
        print(f"{net_name}: " + ", ".join(f"{v} / eager = {x:.2f}x" for v, x in results[net_name]["vs_eager"].items()
                                          if v != "eager"), flush=True)
    config = {"quick": args.quick, "images": args.images, "epochs": args.epochs, "repeats": args.repeats,
              "backend": args.backend, "threads": torch.get_num_threads()}
    write_results("b7_compile", config, results, started, args.out)


if __name__ == "__main__":
    main()
