"""The model file: one ``.owl`` file that is a plain safetensors file.

Tensors (network weights under ``network/``, fitted feature-space components under
``components/<name>/``) are the safetensors body; everything else (network spec, class names,
preprocessing, training record, component configs, format version) is one JSON document in the
safetensors header under the key ``owlearn``. Loading never unpickles anything, and any safetensors
reader can inspect the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from owlearn import __version__
from owlearn._atomic import atomic_path

MODEL_FORMAT = "owlearn-model"
MODEL_FORMAT_VERSION = 2
"""Version 2: Gaussians store their sufficient statistics alone (means, covariance and
its Cholesky factor are rebuilt on loading, each class's scatter is packed as its upper triangle), which a
version-1 reader would take for a damaged file; version-1 files load as they are."""


class ModelFileError(ValueError):
    """A model file is missing, damaged, not an owlearn model, or from a newer owlearn."""


@dataclass
class BundleContents:
    """What a model file holds, before it is turned into objects."""

    header: dict
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix/`` with the prefix removed."""
        cut = len(prefix) + 1
        return {k[cut:]: v for k, v in self.tensors.items() if k.startswith(prefix + "/")}


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words, for error messages: ``"an array"``, ``"a string"``…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a number")


def is_version_number(value: object) -> bool:
    """Whether a header's version field is a positive whole number (JSON's true is no version)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def write_bundle(path: str | Path, header: dict, groups: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write tensors (grouped by prefix) and a JSON header atomically to ``path``."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, group in groups.items():
        for key, value in group.items():
            # safetensors refuses shared or strided storage: store each tensor as its own contiguous copy
            tensors[f"{prefix}/{key}"] = value.detach().cpu().contiguous().clone()
    header = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "owlearn_version": __version__,
              **header}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"owlearn": json.dumps(header)})
    return path


def read_bundle(path: str | Path) -> BundleContents:
    """Read a model file, checking that it is an owlearn model of a format this version understands."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; give the path of a .owl model file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get("owlearn")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several exception types on a damaged file
        raise ModelFileError(f"{path} is not a readable owlearn model file ({exc})") from exc
    if raw is None:
        raise ModelFileError(f"{path} is a safetensors file but not an owlearn model (no 'owlearn' header)")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: the owlearn header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: the owlearn header is {json_kind(header)}, not a JSON object")
    if header.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not an owlearn model file (format {header.get('format')!r})")
    version = header.get("format_version")
    if not is_version_number(version):
        raise ModelFileError(f"{path}: the owlearn header's format_version is {version!r}, not a positive "
                             "whole number; the file is damaged")
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model format {version}, newer than this owlearn {__version__} reads "
            f"(format {MODEL_FORMAT_VERSION}); upgrade owlearn to load it")
    return BundleContents(header, tensors)
