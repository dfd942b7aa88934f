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

UNKNOWN = "unknown"
"""The name a prediction gets when the model's outlier detector refuses the image."""


@dataclass
class Prediction:
    """What the model says about a batch of images.

    Attributes
    ----------
    labels
        Class index of each image, or ``-1`` where the model's detector refused it.
    names
        Class name of each image, or ``"unknown"`` where refused.
    probabilities
        Softmax over the known classes, ``(N, K)``.
    nearest
        The most probable known class, refused or not.
    scores
        Novelty score of each image (higher = more like the training data), ``None`` without a detector.
    accepted
        Whether the detector accepts each image (all ``True`` without a detector).
    """

    labels: np.ndarray
    names: list[str]
    probabilities: np.ndarray
    nearest: np.ndarray
    scores: np.ndarray | None = None
    accepted: np.ndarray | None = None

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
        """Feature vectors; ``embed=True`` (default) gives what the last linear layer reads, the space
        the detectors work in (on the sphere of radius α for an L2-softmax head)."""
        return extract_features(self.network, self.as_batch(images), batch_size, embed=embed)

    def outputs(self, images, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding and logits of every image from one forward pass, on the CPU."""
        batch = self.as_batch(images)
        head = self.network.head
        emb = extract_features(self.network, batch, batch_size, embed=True)
        W, b = head.last_layer()
        return emb, emb @ W.cpu().T + b.cpu()  # every head ends in this linear map (see nets.heads)

    @property
    def detector(self):
        """The fitted outlier detector, or ``None``."""
        return self.components.get("detector")

    def predict(self, images, batch_size: int = 1024) -> Prediction:
        """Class (or ``unknown``), probabilities, novelty score and verdict of every image."""
        emb, logits = self.outputs(images, batch_size)
        probs = torch.softmax(logits, dim=1).numpy()
        nearest = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        scores = accepted = None
        labels = nearest
        if self.detector is not None and len(probs):
            scores = self.detector.score_samples(emb, logits)
            accepted = scores >= self.detector.offset_
            labels = np.where(accepted, nearest, -1)
        names = [self.class_names[i] if i >= 0 else UNKNOWN for i in labels]
        return Prediction(labels, names, probs, nearest, scores, accepted)

    def fit_detector(self, train: ImageDataset, calibration: ImageDataset, detector: str = "knn", *,
                     accept_rate: float = 0.99, **params: Any):
        """Fit an outlier detector on ``train``'s features and set its threshold on ``calibration``.

        ``calibration`` holds known-class images the network was not trained on; the threshold is
        set so that ``accept_rate`` of them are accepted — no example of the unknown is needed.
        The detector becomes part of the model (saved with it) and :meth:`predict` uses it.
        """
        from owlearn.space import calibrate, make_detector

        if detector in ("knn", "lof") and "n_neighbors" not in params:
            # the k-th neighbour must lie in the image's own class: k=50 (kNN) and 20 (LOF) are the papers'
            # choices for thousands of images per class; small classes need a smaller k
            smallest = int(torch.bincount(train.labels[train.labels >= 0]).clamp_min(1).min()) if len(train) else 1
            params["n_neighbors"] = max(1, min(50 if detector == "knn" else 20, smallest // 4))
        emb, logits = self.outputs(train)
        det = make_detector(detector, **params)
        if detector == "vim":
            W, b = self.network.head.last_layer()
            det.fit(emb, W=W.cpu(), b=b.cpu())
        else:
            labels = train.relabel(self.class_names).labels.numpy() if detector == "mahalanobis" else None
            det.fit(emb, labels=labels, logits=logits)
        cal_emb, cal_logits = self.outputs(calibration)
        calibrate(det, cal_emb, cal_logits, accept_rate=accept_rate)
        self.components["detector"] = det
        self.info["rejection"] = {"detector": detector, "params": params, "accept_rate": accept_rate,
                                  "fit_images": len(train), "calibration_images": len(calibration),
                                  "threshold": float(det.offset_)}
        return det

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

