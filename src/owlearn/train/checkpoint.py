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
from owlearn.bundle import is_version_number

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


def read_meta(path: str | Path) -> dict:
    """The ``meta`` dict a checkpoint was saved with (its training settings, epoch and history), without
    reading its tensors: to check a resume's settings before any state is restored."""
    return _read(Path(path), with_tensors=False)[0]["meta"]


def load(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore ``model`` (and ``optimizer``) from a checkpoint; returns the stored ``meta`` dict.

    A checkpoint of another network or optimizer is a ``ValueError`` that says so in a line or two.
    """
    path = Path(path)
    header, tensors = _read(path, with_tensors=True)
    optim, meta = header["optimizer"], header["meta"]
    try:
        model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} was written for a different network ({state_dict_mismatch(exc)}); "
                         "use the same options or a new --checkpoint-dir") from exc
    if optimizer is not None and optim:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, pid, name = key.split("/", 2)
                state.setdefault(int(pid), {})[name] = value
        for pid, values in optim["scalars"].items():
            state.setdefault(int(pid), {}).update(values)
        try:
            optimizer.load_state_dict({"state": state, "param_groups": optim["param_groups"]})
        except (KeyError, ValueError) as exc:  # torch's own messages: a bare key ('step'), or group sizes
            raise ValueError(f"checkpoint {path} was written for a different optimizer than "
                             f"{type(optimizer).__name__} ({type(exc).__name__}: {exc}); use the same options "
                             "or a new --checkpoint-dir") from exc
    return meta


def _read(path: Path, with_tensors: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    """A checkpoint's validated header and (``with_tensors``) its tensors."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = json.loads((f.metadata() or {}).get("owlearn", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    except Exception as exc:  # safetensors raises several exception types for a damaged file
        raise ValueError(f"{path} is not a readable owlearn checkpoint: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an owlearn checkpoint")
    version, optim, meta = header.get("version"), header.get("optimizer"), header.get("meta")
    if not is_version_number(version) or not isinstance(meta, dict) or not isinstance(optim, dict) \
            or (optim and not (isinstance(optim.get("param_groups"), list) and isinstance(optim.get("scalars"), dict))):
        raise ValueError(f"{path} is a damaged owlearn checkpoint (its header's version, meta or optimizer "
                         "record is missing or of the wrong kind)")
    if version > CHECKPOINT_VERSION:
        raise ValueError(f"{path} was written by a newer owlearn (checkpoint version {version})")
    return header, tensors


def state_dict_mismatch(exc: RuntimeError) -> str:
    """The gist of ``load_state_dict``'s error: its first difference, and how many more there are.

    Torch lists every missing, unexpected and mis-shaped tensor, one per line, after a line that says
    only which module it was: tens of lines for a network of another width.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) < 2:
        return lines[0] if lines else type(exc).__name__
    first = lines[1].rstrip(". ")
    if len(first) > 200:  # "Missing key(s) in state_dict: ..." names every key on one line
        first = first[:200] + "…"
    return first + (f"; and {len(lines) - 2} more" if len(lines) > 2 else "")
