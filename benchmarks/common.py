"""What every benchmark script shares: the machine record, timing, peak memory and the results file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"


def machine() -> dict:
    """Where a result was measured."""
    cpu, flags = "", set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        # The same model name has run on hosts with and without AVX-512 here, at twice the speed apart:
        # timings are comparable only between runs with the same vector instructions.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": "avx512_bf16" in flags,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "platform": platform.platform(),
    }


def vector_isa(m: dict) -> str:
    """', AVX512' for the provenance line; nothing for runs recorded before the capability was."""
    return f", {m['cpu_capability']}" if m.get("cpu_capability") else ""


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


STARTED_AT_COMMIT = None  # set on first use: the commit of the code a run started with, not the one at its end


def command_line() -> str:
    """The command that started this run, as one would type it from the repository root."""
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def start_commit() -> str:
    """The commit a run started from, with ``+uncommitted`` when tracked source files differed from it
    (the results then came from code that no commit holds exactly)."""
    global STARTED_AT_COMMIT
    if STARTED_AT_COMMIT is None:
        STARTED_AT_COMMIT = git_commit() + ("+uncommitted" if _source_changed() else "")
    return STARTED_AT_COMMIT


def _source_changed() -> bool:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks/*.py"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return bool(out.strip())


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mean_std(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def base_parser(description: str) -> argparse.ArgumentParser:
    start_commit()
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a few-minute smoke run (results marked quick)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run (default 0 1 2)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/<name>.json)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


def write_results(name: str, config: dict, results: dict, started: float, out: Path | None = None,
                  extra: dict | None = None) -> Path:
    """Write ``results/<name>.json`` atomically with the config, machine, command and timing (and ``extra``
    top-level entries, e.g. where merged runs came from)."""
    from owlearn._atomic import atomic_open

    path = out or RESULTS / f"{name}{'-quick' if config.get('quick') else ''}.json"
    doc = {
        "protocol": name,
        "command": command_line(),
        "commit": start_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.time() - started, "peak_memory_mb": peak_memory_mb(), "machine": machine(),
        "config": config, "results": results, **(extra or {}),
    }
    with atomic_open(path, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(f"results written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path
