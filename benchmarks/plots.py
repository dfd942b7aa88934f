"""Figures of RESULTS.md, drawn from the results files by report.py (PNG under benchmarks/figures/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from common import ROOT

FIGURES = ROOT / "benchmarks" / "figures"


def _save(fig: Figure, name: str) -> str:
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURES / name, dpi=110)
    return str(Path("figures") / name)  # relative to RESULTS.md


def b1_accuracy(doc: dict) -> str:
    """Test accuracy of each head: every seed as a dot, the mean as a bar, the 0.925 target as a line."""
    heads = list(doc["results"])
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.add_subplot()
    for i, head in enumerate(heads):
        accs = [r["test_accuracy"] for r in doc["results"][head]["runs"]]
        ax.bar(i, np.mean(accs), color="#9ecae1", width=0.6)
        ax.scatter([i] * len(accs), accs, color="#08519c", zorder=3, s=18)
    ax.axhline(0.925, color="#cb181d", linestyle="--", linewidth=1, label="target 0.925")
    accs = [r["test_accuracy"] for h in heads for r in doc["results"][h]["runs"]]
    ax.set_ylim(min(min(accs), 0.925) - 0.005, max(accs) + 0.004)
    ax.set_xticks(range(len(heads)), heads)
    ax.set_ylabel("Fashion-MNIST test accuracy")
    ax.set_title("B1: accuracy per head (dots: seeds)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, "b1-accuracy.png")


def b7_throughput(doc: dict) -> str:
    """Training images/s of every loop, owlearn's highlighted."""
    ips = doc["results"]["images_per_s"]
    names = sorted(ips, key=ips.get)
    fig = Figure(figsize=(6.5, 0.45 * len(names) + 1.2))
    ax = fig.add_subplot()
    colors = ["#08519c" if "owlearn" in n else "#9ecae1" for n in names]
    ax.barh(range(len(names)), [ips[n] for n in names], color=colors)
    for i, n in enumerate(names):
        ax.text(ips[n], i, f" {ips[n]:,.0f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("training images/s (CPU)")
    ax.set_xlim(0, max(ips.values()) * 1.18)
    ax.set_title(f"B7: training throughput, {doc['config']['backbone']}")
    return _save(fig, "b7-throughput.png")
