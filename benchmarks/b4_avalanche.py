"""B4 with Avalanche 0.6.0: the same strategies, data, network and recipe as b4_continual.py, for the
side-by-side timing (and accuracy) comparison.

Runs in its own environment (scripts/setup_avalanche.sh makes .venv-avalanche):

    .venv-avalanche/bin/python benchmarks/b4_avalanche.py [--quick]

Like b4_continual.py, every (strategy, seed) runs in its own subprocess with the same thread settings
(1 torch thread by default), so CPU seconds and peak memory (``ru_maxrss``) are that run's own. Both
scripts read Fashion-MNIST through owlearn's loader into the same tensors; Avalanche gets them already
as normalised float tensors (no per-image transform), which is the fastest way to feed it. Its
evaluator records accuracy only, with no loggers. The Gaussian strategy's counterpart is Avalanche's
StreamingLDA on the features of a SimpleNet trained on the first experience (as owlearn's Gaussian
strategy does). Where only a CUDA build of torchvision could be installed, see ``_avalanche_compat``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _avalanche_compat import allow_cuda_torchvision_on_cpu_torch

from common import ROOT, base_parser, mean_std, write_results

STRATEGIES = ["naive", "joint", "ewc", "online-ewc", "lwf", "icarl", "replay", "streaming-lda"]
QUICK = {"train_limit": 6000, "test_limit": 2000, "epochs": 1}


def _simplenet():
    from torch import nn

    class Features(nn.Module):  # BENCHMARKS' SimpleNet without its last layer: 50-d features
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 5)
            self.fc = nn.Linear(320, 50)

        def forward(self, x):
            x = nn.functional.relu(nn.functional.max_pool2d(self.conv1(x), 2))
            x = nn.functional.relu(nn.functional.max_pool2d(self.conv2(x), 2))
            return nn.functional.relu(self.fc(x.flatten(1)))

    features, classifier = Features(), nn.Linear(50, 10)
    return features, classifier, nn.Sequential(features, classifier)


def _benchmark(quick: bool):
    import torch
    from avalanche.benchmarks import nc_benchmark
    from torch.utils.data import TensorDataset

    from owlearn.api import channel_stats
    from owlearn.data.sources import load_dataset

    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    if quick:
        train, test = train.subset(torch.arange(QUICK["train_limit"])), test.subset(torch.arange(QUICK["test_limit"]))
    # the same normalisation as owlearn's network: the first experience's pixel statistics
    first = train.images[torch.isin(train.labels, torch.tensor([0, 1]))]
    (mean,), (std,) = channel_stats(first)

    def dataset(ds):
        tensors = TensorDataset((ds.images.float() / 255 - mean) / std, ds.labels)
        tensors.targets = ds.labels.tolist()
        return tensors

    return nc_benchmark(dataset(train), dataset(test), n_experiences=5, task_labels=False, shuffle=False,
                        fixed_class_order=list(range(10)))


def worker(args) -> None:
    import torch

    allow_cuda_torchvision_on_cpu_torch()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import EWC, ICaRL, LwF, Naive, Replay, StreamingLDA
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.supervised import JointTraining
    from torch import nn

    epochs = QUICK["epochs"] if args.quick else args.epochs
    bench = _benchmark(args.quick)
    features, classifier, model = _simplenet()

    def evaluator():
        return EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])

    def sgd(params):
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)

    common = {"train_mb_size": 64, "train_epochs": epochs, "eval_mb_size": 1024, "device": "cpu"}
    name, strength = args.worker, args.ewc_strength
    if name == "naive":
        strategy = Naive(model=model, optimizer=sgd(model.parameters()), criterion=nn.CrossEntropyLoss(),
                         evaluator=evaluator(), **common)
    elif name == "joint":
        strategy = JointTraining(model=model, optimizer=sgd(model.parameters()), criterion=nn.CrossEntropyLoss(),
                                 evaluator=evaluator(), **common)
    elif name == "ewc":
        strategy = EWC(model=model, optimizer=sgd(model.parameters()), criterion=nn.CrossEntropyLoss(),
                       ewc_lambda=strength, mode="separate", evaluator=evaluator(), **common)
    elif name == "online-ewc":
        strategy = EWC(model=model, optimizer=sgd(model.parameters()), criterion=nn.CrossEntropyLoss(),
                       ewc_lambda=strength, mode="online", decay_factor=0.9, evaluator=evaluator(),
                       **common)
    elif name == "lwf":
        strategy = LwF(model=model, optimizer=sgd(model.parameters()), criterion=nn.CrossEntropyLoss(),
                       alpha=1.0, temperature=2.0, evaluator=evaluator(), **common)
    elif name == "replay":
        strategy = Replay(model=model, optimizer=sgd(model.parameters()), criterion=nn.CrossEntropyLoss(),
                          mem_size=args.memory_size, evaluator=evaluator(), **common)
    elif name == "icarl":
        strategy = ICaRL(feature_extractor=features, classifier=classifier, optimizer=sgd(model.parameters()),
                         memory_size=args.memory_size, buffer_transform=None, fixed_memory=True,
                         evaluator=evaluator(), **common)
    elif name == "streaming-lda":
        strategy = None
    else:
        raise SystemExit(f"unknown strategy {name}")

    cpu0, wall0 = time.process_time(), time.perf_counter()
    rows, train_s = [], 0.0
    if name == "joint":
        t0 = time.perf_counter()
        strategy.train(bench.train_stream)
        train_s = time.perf_counter() - t0
        rows.append(_eval(strategy, bench))
    elif name == "streaming-lda":
        # features learnt on the first experience (as owlearn's Gaussian strategy), then SLDA on them
        t0 = time.perf_counter()
        Naive(model=model, optimizer=sgd(model.parameters()), criterion=nn.CrossEntropyLoss(), evaluator=evaluator(),
              **common).train(bench.train_stream[0])
        for p in features.parameters():
            p.requires_grad_(False)
        strategy = StreamingLDA(slda_model=features.eval(), criterion=nn.CrossEntropyLoss(), input_size=50,
                                num_classes=10, train_epochs=1, train_mb_size=64, eval_mb_size=1024, device="cpu",
                                evaluator=evaluator())
        train_s += time.perf_counter() - t0
        for exp in bench.train_stream:
            t0 = time.perf_counter()
            strategy.train(exp)
            train_s += time.perf_counter() - t0
            rows.append(_eval(strategy, bench))
    else:
        for exp in bench.train_stream:
            t0 = time.perf_counter()
            strategy.train(exp)
            train_s += time.perf_counter() - t0
            rows.append(_eval(strategy, bench))
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    final = rows[-1]
    doc = {"strategy": name, "seed": args.seed, "final_accuracy": sum(final) / len(final), "accuracy_rows": rows,
           "cpu_seconds": cpu_s, "wall_seconds": wall_s, "train_seconds": train_s, "threads": torch.get_num_threads(),
           "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    Path(args.worker_out).write_text(json.dumps(doc))


def _eval(strategy, bench) -> list[float]:
    metrics = strategy.eval(bench.test_stream)
    return [float(metrics[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{i:03d}"])
            for i in range(len(bench.test_stream))]


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--memory-size", type=int, default=2000)
    p.add_argument("--ewc-strength", type=float, default=30.0,
                   help="λ of EWC (Avalanche normalises its Fisher differently; this run is about time)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--worker", help=_hidden())
    p.add_argument("--seed", type=int, default=0, help=_hidden())
    p.add_argument("--worker-out", help=_hidden())
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    allow_cuda_torchvision_on_cpu_torch()
    import avalanche

    started = time.time()
    if args.quick:
        args.seeds = args.seeds[:1]
    results = {}
    for name in args.strategies:
        runs = []
        for seed in args.seeds:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
                out = fh.name
            cmd = [sys.executable, __file__, "--worker", name, "--seed", str(seed), "--worker-out", out,
                   "--threads", str(args.threads), "--epochs", str(args.epochs), "--memory-size",
                   str(args.memory_size), "--ewc-strength", str(args.ewc_strength)]
            cmd += ["--quick"] if args.quick else []
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
            try:
                subprocess.run(cmd, check=True, env=env, cwd=ROOT)
                run = json.loads(Path(out).read_text())
            finally:
                Path(out).unlink(missing_ok=True)
            runs.append(run)
            print(f"avalanche {name} seed {seed}: final accuracy {run['final_accuracy']:.4f}, "
                  f"{run['cpu_seconds']:.0f} CPU s, peak {run['peak_memory_mb']:.0f} MB", flush=True)
        results[name] = {"runs": runs, **{k: mean_std([r[k] for r in runs]) for k in
                                          ("final_accuracy", "cpu_seconds", "wall_seconds", "peak_memory_mb")}}
    config = {"quick": args.quick, "seeds": args.seeds, "avalanche": avalanche.__version__,
              "epochs": QUICK["epochs"] if args.quick else args.epochs, "batch_size": 64, "lr": 0.01,
              "optimizer": "sgd momentum 0.9", "threads": args.threads, "memory_size": args.memory_size,
              "ewc_strength": args.ewc_strength, "online_ewc_decay": 0.9, "lwf": {"alpha": 1.0, "temperature": 2.0}}
    write_results("b4_avalanche", config, results, started, args.out)


def _hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
