"""Training checkpoints as safetensors + JSON: model and optimizer state, nothing unpickled.

An optimizer's ``state_dict`` mixes tensors (momentum buffers, Adam moments) with plain values;
tensors go into the safetensors body under ``optim/<param id>/<key>``, the rest into the JSON header.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from owlearn._atomic import atomic_path

CHECKPOINT_FORMAT = "owlearn-checkpoint"
CHECKPOINT_VERSION = 1


def save(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
         meta: dict | None = None) -> None:
    """Write a checkpoint atomically: the file at ``path`` is either the old one or the complete new one."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_json: dict = {}
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars: dict = {}
        for pid, pstate in state["state"].items():
            for key, value in pstate.items():
                if torch.is_tensor(value):
                    tensors[f"optim/{pid}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        optim_json = {"param_groups": state["param_groups"], "scalars": scalars}
    header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "meta": meta or {}, "optimizer": optim_json}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"owlearn": json.dumps(header)})


def load(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore ``model`` (and ``optimizer``) from a checkpoint; returns the stored ``meta`` dict."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = json.loads((f.metadata() or {}).get("owlearn", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several exception types for a damaged file
        raise ValueError(f"{path} is not a readable owlearn checkpoint: {exc}") from exc
    if not header or header.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an owlearn checkpoint")
    if header["version"] > CHECKPOINT_VERSION:
        raise ValueError(f"{path} was written by a newer owlearn (checkpoint version {header['version']})")
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    if optimizer is not None and header["optimizer"]:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, pid, name = key.split("/", 2)
                state.setdefault(int(pid), {})[name] = value
        for pid, values in header["optimizer"]["scalars"].items():
            state.setdefault(int(pid), {}).update(values)
        optimizer.load_state_dict({"state": state, "param_groups": header["optimizer"]["param_groups"]})
    return header["meta"]
