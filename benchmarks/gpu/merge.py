"""Merge result files of runs made side by side (one process per seed or setting) into one results file.

Runs under the same key are concatenated and their mean ± std recomputed; per-key fields that are not
statistics are kept from the first file. Usage:

    python benchmarks/gpu/merge.py OUT.json --commit SHA --command "what ran" IN.json...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import mean_std  # noqa: E402

STATS = ("test_accuracy", "accuracy", "best_sub_head_accuracy", "nmi", "ari", "train_seconds")


def merge(docs: list[dict]) -> dict:
    merged: dict = {}
    for doc in docs:
        for key, entry in doc["results"].items():
            if "runs" not in entry:
                merged.setdefault(key, entry)
                continue
            into = merged.setdefault(key, {k: v for k, v in entry.items() if k not in STATS} | {"runs": []})
            into["runs"] = into["runs"] + list(entry["runs"])
    for entry in merged.values():
        runs = entry.get("runs") or []
        entry["runs"] = sorted(runs, key=lambda r: r.get("seed", 0))
        for stat in STATS:
            values = [r[stat] for r in entry["runs"] if stat in r]
            if values:
                entry[stat] = mean_std(values)
    return merged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("inputs", type=Path, nargs="+")
    p.add_argument("--commit", required=True, help="commit of the code that ran")
    p.add_argument("--command", required=True, help="the command that produced the inputs")
    args = p.parse_args()
    docs = [json.loads(path.read_text()) for path in args.inputs]
    out = dict(docs[0])
    out["results"] = merge(docs)
    out["commit"], out["command"] = args.commit, args.command
    out["seconds"] = max(d["seconds"] for d in docs)
    out["peak_memory_mb"] = max(d["peak_memory_mb"] for d in docs)
    out["merged_from"] = [d["command"] for d in docs]
    args.out.write_text(json.dumps(out, indent=2))
    print(f"{len(docs)} files → {args.out}: {', '.join(out['results'])}")


if __name__ == "__main__":
    main()
