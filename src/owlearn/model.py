"""The user-facing model: a trained network plus what it knows about its classes and its input.

An :class:`OwlModel` is what ``owlearn train`` writes and ``owlearn predict``/``serve`` load. Besides
the network it carries *components*: fitted feature-space estimators (a Gaussian classifier, an
outlier detector) stored in the same file. A component is any object with ``state_dict()``,
``config()`` and a ``from_state(state, config)`` classmethod, defined inside the ``owlearn`` package.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from owlearn.bundle import ModelFileError, read_bundle, write_bundle
from owlearn.data.dataset import ImageDataset
from owlearn.nets.network import Network, NetworkSpec
from owlearn.preprocess import Preprocessing, load_images
from owlearn.train.loop import extract_features, predict_logits


@dataclass
class Prediction:
    """What the model says about a batch of images.

    ``labels`` are class indices, ``names`` their class names, ``probabilities`` ``(N, K)``.
    """

    labels: np.ndarray
    names: list[str]
    probabilities: np.ndarray

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1) if len(self.probabilities) else np.zeros(0)


@dataclass
class OwlModel:
    """A trained network with class names, preprocessing, training record and fitted components.

    Examples
    --------
    >>> spec = NetworkSpec("convnet", "linear", 3, (1, 8, 8))
    >>> model = OwlModel(Network(spec), ["a", "b", "c"], Preprocessing((1, 8, 8)))
    >>> model.predict(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).labels.shape
    (2,)
    """

    network: Network
    class_names: list[str]
    preprocessing: Preprocessing
    info: dict = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.network.spec.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a network with "
                             f"{self.network.spec.num_classes} outputs")

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    # -- inputs ---------------------------------------------------------------------------------------
    def as_batch(self, images: torch.Tensor | np.ndarray | ImageDataset | Sequence[str | Path]) -> torch.Tensor:
        """Accept a uint8/float tensor or array ``(N, C, H, W)``, a dataset, or image file paths."""
        if isinstance(images, ImageDataset):
            images = images.images
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if isinstance(images, torch.Tensor):
            if images.dim() == 3:
                images = images.unsqueeze(1)
            if tuple(images.shape[1:]) != tuple(self.preprocessing.in_shape):
                raise ValueError(f"images of shape {tuple(images.shape[1:])} given to a model that takes "
                                 f"{tuple(self.preprocessing.in_shape)}; pass file paths to have them resized")
            return images
        return load_images(list(images), self.preprocessing)

    # -- predictions ----------------------------------------------------------------------------------
    def logits(self, images, batch_size: int = 1024) -> torch.Tensor:
        return predict_logits(self.network, self.as_batch(images), batch_size)

    def features(self, images, batch_size: int = 1024, embed: bool = True) -> torch.Tensor:
        """Feature vectors; ``embed=True`` gives the head's view (normalised for L2-softmax heads)."""
        return extract_features(self.network, self.as_batch(images), batch_size, embed=embed)

    def predict(self, images, batch_size: int = 1024) -> Prediction:
        """Class, class name and probabilities of every image."""
        probs = torch.softmax(self.logits(images, batch_size), dim=1).numpy()
        labels = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        return Prediction(labels, [self.class_names[i] for i in labels], probs)

    # -- files ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model to one ``.owl`` file (safetensors + JSON header), atomically."""
        header = {
            "network": self.network.spec.to_json(),
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing.to_json(),
            "info": self.info,
            "components": {name: {"class": _class_path(obj), "config": obj.config()}
                           for name, obj in self.components.items()},
        }
        groups = {"network": self.network.state_dict()}
        groups.update({f"components/{name}": obj.state_dict() for name, obj in self.components.items()})
        return write_bundle(path, header, groups)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> OwlModel:
        """Read a model file written by :meth:`save`; nothing is unpickled."""
        contents = read_bundle(path)
        h = contents.header
        try:
            network = Network(NetworkSpec.from_json(h["network"]))
            network.load_state_dict(contents.group("network"))
            components = {name: _component_class(entry["class"]).from_state(
                contents.group(f"components/{name}"), entry["config"]) for name, entry in h["components"].items()}
            model = cls(network.to(device).eval(), list(h["class_names"]),
                        Preprocessing.from_json(h["preprocessing"]), h.get("info", {}), components)
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise ModelFileError(f"{path}: model file is damaged or inconsistent ({exc})") from exc
        return model


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _component_class(path: str) -> type:
    # only owlearn's own classes may be named in a model file: a file must not make us import anything else
    module, _, name = path.partition(":")
    if not (module == "owlearn" or module.startswith("owlearn.")) or not name.isidentifier():
        raise ModelFileError(f"component class {path!r} is not part of owlearn")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None or not hasattr(cls, "from_state"):
        raise ModelFileError(f"component class {path!r} does not exist in this owlearn")
    return cls

