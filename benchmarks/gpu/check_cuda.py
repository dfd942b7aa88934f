"""Checks of the training loop's accelerator-only paths, for a session with a GPU (the test suite runs on CPUs).

    PYTHONPATH=src python benchmarks/gpu/check_cuda.py

On CUDA the loop reads its NaN/inf flag every few steps, counts accuracy on the device and masks
unlabelled rows inside one cross-entropy reduction, and IIC's self-labelling masks unsure rows the same
way; this runs each of those on the GPU and compares with the CPU. Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import sys

import torch

from owlearn.cluster.train import self_label_loss
from owlearn.data import ImageDataset
from owlearn.nets import Network, NetworkSpec
from owlearn.train import CrossEntropy, TrainConfig, Trainer, TrainingDiverged
from owlearn.train.loop import masked_cross_entropy


def blobs(n: int = 512, unlabelled_every: int = 0) -> ImageDataset:
    """Three classes told apart by which quadrant is bright; every ``unlabelled_every``-th label hidden."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 60, (n, 1, 12, 12), dtype=torch.uint8, generator=g)
    for k in range(3):
        images[labels == k, :, (k // 2) * 6:(k // 2) * 6 + 6, (k % 2) * 6:(k % 2) * 6 + 6] += 150
    if unlabelled_every:
        labels = labels.clone()
        labels[::unlabelled_every] = -1
    return ImageDataset(images, labels, ["a", "b", "c"], name="blobs")


def net() -> Network:
    torch.manual_seed(0)
    return Network(NetworkSpec("convnet", "linear", 3, (1, 12, 12), backbone_args={"widths": (8, 16, 16, 32)}))


class ExplodeAt:
    name = "explode"

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step

    def __call__(self, step):
        hit = step.epoch == self.epoch and step.step % 16 == self.step
        return step.logits.sum() * (float("nan") if hit else 0.0)


def check(name: str, ok: bool, detail: str = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    results = []
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 5, generator=g)
    y = torch.randint(0, 5, (64,), generator=g)
    y[::3] = -1
    keep = y >= 0
    for smoothing in (0.0, 0.1):
        cpu = torch.nn.functional.cross_entropy(logits[keep], y[keep], label_smoothing=smoothing)
        gpu = masked_cross_entropy(logits.cuda(), y.cuda(), smoothing).cpu()
        results.append(check(f"masked cross-entropy on CUDA = CPU subset mean (smoothing {smoothing})",
                             torch.allclose(cpu, gpu, atol=1e-5), f"{float(cpu):.6f} vs {float(gpu):.6f}"))

    probs = torch.softmax(torch.randn(64, 5, generator=g) * 6, dim=1)
    sl_logits = torch.randn(64, 5, generator=g)
    cpu = self_label_loss(probs, sl_logits, 0.99)
    gpu = self_label_loss(probs.cuda(), sl_logits.cuda(), 0.99).cpu()
    results.append(check("self-labelling loss on CUDA = CPU", torch.allclose(cpu, gpu, atol=1e-5),
                         f"{float(cpu):.6f} vs {float(gpu):.6f}"))

    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3, device="cuda", precision="fp32")
    try:
        Trainer(net(), config, objectives=[CrossEntropy(), ExplodeAt(1, 5)], progress=False).fit(blobs())
        results.append(check("NaN loss stops training on CUDA", False, "no error raised"))
    except TrainingDiverged as err:
        results.append(check("NaN loss stops training on CUDA", "by step 16" in str(err), str(err)))

    for every in (0, 4):
        data = blobs(unlabelled_every=every)
        model = net()
        history = Trainer(model, config, progress=False).fit(data)
        labelled = int((data.labels >= 0).sum())
        results.append(check(f"accuracy counted on the device ({labelled} of {len(data)} labelled)",
                             0.0 <= history.last["acc"] <= 1.0 and history.last["loss"] == history.last["loss"],
                             f"loss {history.last['loss']:.4f}, acc {history.last['acc']:.4f}"))
    cpu_model, gpu_model = net(), net()
    data = blobs(unlabelled_every=4)
    cpu_hist = Trainer(cpu_model, TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3, device="cpu"),
                       progress=False).fit(data)
    gpu_hist = Trainer(gpu_model, config, progress=False).fit(data)
    close = abs(cpu_hist.last["loss"] - gpu_hist.last["loss"]) < 0.05 * max(cpu_hist.last["loss"], 1e-3) + 1e-3
    results.append(check("semi-supervised losses: CUDA close to CPU", close,
                         f"{cpu_hist.last['loss']:.5f} vs {gpu_hist.last['loss']:.5f}"))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
