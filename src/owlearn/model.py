"""The user-facing model: a trained network plus what it knows about its classes and its input.

An :class:`OwlModel` is what ``owlearn train`` writes and ``owlearn predict``/``serve`` load. Besides
the network it carries *components*: fitted feature-space estimators (a Gaussian classifier, an
outlier detector) stored in the same file. A component is any object with ``state_dict()``,
``config()`` and a ``from_state(state, config)`` classmethod, defined inside the ``owlearn`` package.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from owlearn import __version__
from owlearn.bundle import ModelFileError, json_kind, read_bundle, write_bundle
from owlearn.class_names import UNKNOWN as SHARED_UNKNOWN
from owlearn.class_names import check_class_name
from owlearn.data.dataset import ImageDataset
from owlearn.nets.network import Network, NetworkSpec
from owlearn.preprocess import MAX_SIDE, Preprocessing, find_images, integer_pixels_to_uint8, load_images
from owlearn.train.checkpoint import state_dict_mismatch
from owlearn.train.loop import batched_forward, extract_features, predict_logits

UNKNOWN = SHARED_UNKNOWN
"""The name a prediction gets when the model's outlier detector refuses the image."""

THRESHOLD_EXAMPLES = 1_000
"""An added class's own rejection threshold is set on the left-out scores of at most this many of its examples
(a seeded subset). Scoring each example without itself is a nearest-neighbour search against the whole
reference set: for 6,000 examples it was 3.7 s of a 6 s add-class. At the default 99% acceptance, 1,000
scores put about 10 below the threshold: the acceptance it gives has a standard error of about 0.3 points."""

GAUSSIAN_FEATURES = ("layers", "embedding", "layers+embedding")
GAUSSIAN_FROM_STAGE = 1
"""``fit_gaussian(features="layers")`` reads every stage but the first: the highest-resolution map costs
the most to pool and added nothing to B3's accuracy (0.9045 without it, 0.9053 with it, seed 0)."""


def _gaussian_input(stage_statistics: torch.Tensor, embedding: torch.Tensor, wants: str) -> torch.Tensor:
    """What the Gaussian classifier reads, given the stage statistics and the embedding of one pass."""
    if wants == "layers+embedding":
        return torch.cat([stage_statistics, embedding], dim=1)
    return stage_statistics


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
    def as_batch(self, images: torch.Tensor | np.ndarray | ImageDataset | str | Path | Image.Image
                 | Sequence[str | Path | Image.Image | np.ndarray]) -> torch.Tensor:
        """The model's uint8 (or float) input batch ``(N, C, H, W)`` from any of what :meth:`predict` takes.

        A tensor or array ``(N, C, H, W)`` (or ``(N, H, W)`` for a one-channel model) is used as it is:
        uint8 and other integer types hold pixel values 0..255, floats [0, 1]. A dataset gives its images.
        Anything else is brought to the model's input form as ``owlearn predict`` does it: one image file,
        folder (its images, sorted) or PIL image, or a sequence of them and of ``(H, W[, C])`` arrays.
        """
        if isinstance(images, ImageDataset):
            images = images.images
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]  # one image: a path is not a sequence of one-letter file names
        if isinstance(images, np.ndarray):
            images = integer_pixels_to_uint8(images, f"images of type {images.dtype}")
            images = torch.from_numpy(np.ascontiguousarray(images))  # a flipped view has negative strides
        if isinstance(images, torch.Tensor):
            return self._checked_batch(integer_pixels_to_uint8(images, f"images of type {images.dtype}"))
        return load_images(list(images), self.preprocessing)

    def _checked_batch(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` as ``(N, C, H, W)`` after checking that they have the model's input shape."""
        want = tuple(self.preprocessing.in_shape)
        batches = f"(N, {', '.join(map(str, want))})"
        batch = images.unsqueeze(1) if images.dim() == 3 else images  # (N, H, W) of one-channel images
        if batch.dim() == 4 and tuple(batch.shape[1:]) == want:
            return batch
        if tuple(images.shape) in (want, want[1:]):
            raise ValueError(f"one image of shape {tuple(images.shape)} given where a batch {batches} is "
                             "expected; add a batch dimension (images[None]) or pass file paths or PIL images")
        if batch.dim() != 4:
            raise ValueError(f"images of shape {tuple(images.shape)} given to a model that takes batches "
                             f"{batches}; pass file paths or PIL images to have them resized")
        raise ValueError(f"images of shape {tuple(batch.shape[1:])} given to a model that takes "
                         f"{want}; pass file paths to have them resized")

    # -- predictions ----------------------------------------------------------------------------------
    def logits(self, images, batch_size: int = 256) -> torch.Tensor:
        batch_size = _checked_batch_size(batch_size)
        return predict_logits(self.network, self.as_batch(images), batch_size)

    def features(self, images, batch_size: int = 256, embed: bool = True) -> torch.Tensor:
        """Feature vectors; ``embed=True`` (default) gives what the last linear layer reads, the space
        the detectors work in (on the sphere of radius α for an L2-softmax head)."""
        batch_size = _checked_batch_size(batch_size)
        return extract_features(self.network, self.as_batch(images), batch_size, embed=embed)

    def outputs(self, images, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding and logits of every image from one forward pass, on the CPU."""
        batch_size = _checked_batch_size(batch_size)
        batch = self.as_batch(images)
        head = self.network.head
        W, b = head.last_layer()
        if len(batch) == 0:
            return torch.empty(0, W.shape[1]), torch.empty(0, W.shape[0])
        emb = extract_features(self.network, batch, batch_size, embed=True)
        return emb, emb @ W.cpu().T + b.cpu()  # every head ends in this linear map (see nets.heads)

    def layer_outputs(self, images, pooling: str = "mean", batch_size: int = 256, from_stage: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled features of every backbone stage concatenated shallow to deep ``(N, sum(layer_dims))``,
        the embedding and the logits, from one forward pass, on the CPU (see
        :meth:`Network.layer_outputs`; multi-layer detectors and classifiers read these)."""
        batch_size = _checked_batch_size(batch_size)
        batch = self.as_batch(images)
        if len(batch) == 0:
            W, _ = self.network.head.last_layer()
            dim = sum(self.network.layer_dims(pooling, from_stage))
            return torch.empty(0, dim), torch.empty(0, W.shape[1]), torch.empty(0, W.shape[0])

        def one_pass(net, x):
            layers, emb, logits = net.layer_outputs(x, pooling, from_stage)
            return torch.cat([torch.cat(layers, dim=1), emb, logits], dim=1)

        joined = batched_forward(self.network, batch, batch_size, fn=one_pass)
        W, _ = self.network.head.last_layer()
        n_emb, n_logits = W.shape[1], W.shape[0]
        split = joined.shape[1] - n_emb - n_logits
        return joined[:, :split], joined[:, split:split + n_emb], joined[:, split + n_emb:]

    def detector_inputs(self, images, detector=None, batch_size: int = 256
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What ``detector`` (default: the model's) reads, from one forward pass: ``(features, logits,
        embedding)``. Features are the embedding, or for a multi-layer detector the pooled stages with
        the embedding appended."""
        feats, logits, emb, _ = self._inputs(images, detector, batch_size)
        return feats, logits, emb

    def _inputs(self, images, detector=None, batch_size: int = 256, gaussian_features: str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(detector features, logits, embedding, Gaussian-classifier features)`` from one forward pass."""
        batch_size = _checked_batch_size(batch_size)  # before any image is read
        det = self.detector if detector is None else detector
        wants = gaussian_features or self.gaussian_features
        det_layers = getattr(det, "reads", "embedding") == "layers"
        reads_layers = wants != "embedding"
        if not det_layers and not reads_layers:
            emb, logits = self.outputs(images, batch_size)
            return emb, logits, emb, emb
        if not det_layers:
            gauss, emb, logits = self.layer_outputs(images, "meanstd", batch_size, GAUSSIAN_FROM_STAGE)
            return emb, logits, emb, _gaussian_input(gauss, emb, wants)
        layers, emb, logits = self.layer_outputs(images, det.pooling, batch_size)
        gauss = emb
        if reads_layers and det.pooling == "meanstd":  # the same pass has what the classifier reads
            gauss = _gaussian_input(layers[:, sum(self.network.layer_dims("meanstd")[:GAUSSIAN_FROM_STAGE]):],
                                    emb, wants)
        elif reads_layers:
            gauss = _gaussian_input(self.layer_outputs(images, "meanstd", batch_size, GAUSSIAN_FROM_STAGE)[0],
                                    emb, wants)
        return torch.cat([layers, emb], dim=1), logits, emb, gauss

    @property
    def gaussian_features(self) -> str:
        """What the Gaussian classifier reads: ``"embedding"`` or ``"layers"`` (every stage's pooled
        mean and standard deviation, see :meth:`fit_gaussian`)."""
        return self.info.get("gaussian_features", "embedding")

    @property
    def detector(self):
        """The fitted outlier detector, or ``None``."""
        return self.components.get("detector")

    @property
    def gaussian(self):
        """The Gaussian classifier in feature space, or ``None`` (then the network's head classifies)."""
        return self.components.get("gaussian")

    @property
    def classes(self) -> list[str]:
        """The classes the model answers with: the Gaussian classifier's when there is one (it grows with
        :meth:`add_class`), else the network head's."""
        return list(self.gaussian.class_names_) if self.gaussian is not None else list(self.class_names)

    def predict(self, images, batch_size: int = 256) -> Prediction:
        """Class (or ``unknown``), probabilities, novelty score and verdict of every image.

        ``images`` is anything :meth:`as_batch` takes: a batch tensor or array, a dataset, one image path
        (file or folder) or PIL image, or a sequence of them. Probabilities are over :attr:`classes`: from
        the Gaussian classifier when the model has one, else the softmax of the network's head.
        """
        feats, logits, emb, gauss = self._inputs(images, batch_size=batch_size)
        if self.gaussian is not None and len(emb):
            probs = self.gaussian.predict_proba(gauss)
        else:
            probs = torch.softmax(logits, dim=1).numpy()
        nearest = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        scores = accepted = None
        labels = nearest
        classes = self.classes
        if self.detector is not None and len(probs):
            scores = self.detector.score_samples(feats, logits)
            accepted = scores >= self.thresholds()[nearest]
            labels = np.where(accepted, nearest, -1)
        names = [classes[i] if i >= 0 else UNKNOWN for i in labels]
        return Prediction(labels, names, probs, nearest, scores, accepted)

    def thresholds(self) -> np.ndarray:
        """The detector's threshold for images answered with each of :attr:`classes` (added classes may
        have their own)."""
        own = self.info.get("class_thresholds", {})
        return np.array([own.get(c, self.detector.offset_) for c in self.classes], dtype=np.float64)

    def check_readable(self, *, detector: str | None = None, gaussian_features: str | None = None) -> None:
        """Refuse a detector or Gaussian classifier that this network's stages cannot feed.

        Both read feature maps of several stages; a ConvNet built with one block has a single stage, and
        would otherwise fail only after training, deep inside the fit. Cheap: call it before training.
        """
        stages = len(self.network.layer_dims("mean"))
        if detector == "layers" and stages < 2:
            raise ValueError(f"the layers detector reads the network's last two stages, and this network has "
                             f"{stages}: give the ConvNet at least two blocks (--widths) or choose another detector")
        if gaussian_features in ("layers", "layers+embedding") and stages <= GAUSSIAN_FROM_STAGE:
            raise ValueError(f"Gaussian features {gaussian_features!r} read the stages after the first, and this "
                             f"network has {stages}: give the ConvNet at least two blocks (--widths) or use "
                             f"the 'embedding' features")

    def fit_gaussian(self, train: ImageDataset, features: str = "layers"):
        """Fit one Gaussian per class (shared covariance) on ``train``'s features; it then classifies.

        From then on :meth:`add_class` can grow the model by new classes without retraining.
        ``features="layers"`` (default) reads the mean and standard deviation over space of the
        feature map of every stage but the first, concatenated; ``"embedding"`` the vector the
        network's head reads (a little faster to compute); ``"layers+embedding"`` both side by side.
        A network trained on some classes separates classes it never saw better with the shallower
        stages' texture and shape statistics than with its last layer alone (B3, seed 0: 0.881 →
        0.905 after adding five Fashion-MNIST classes to a network trained on the other five).
        """
        from owlearn.space import GaussianClassifier
        from owlearn.train import distributed

        if features not in GAUSSIAN_FEATURES:
            raise ValueError(f"features must be one of {GAUSSIAN_FEATURES}, got {features!r}")
        self.check_readable(gaussian_features=features)
        aligned = train.relabel(self.class_names)
        known = aligned.labels >= 0
        mine = aligned.subset(known)
        if distributed.is_distributed():
            # under torchrun each process embeds its share of the images; the statistics are summed exactly
            mine = mine.subset(distributed.shard_indices(len(mine)))
            feats = self._inputs(mine, gaussian_features=features)[3]
            stats = distributed.gaussian_statistics(feats, mine.labels.numpy(), len(self.class_names))
            gaussian = GaussianClassifier().fit_statistics(*stats, class_names=self.class_names)
        else:
            feats = self._inputs(mine, gaussian_features=features)[3]
            gaussian = GaussianClassifier().fit(feats, mine.labels.numpy(), class_names=self.class_names)
        self.components["gaussian"] = gaussian
        self.info["gaussian_features"] = features
        self.info.pop("added_classes", None)  # a fresh classifier knows the network's classes only
        return gaussian

    def add_class(self, name: str, images) -> int:
        """Learn a new class from example images without a gradient step; returns its label.

        The Gaussian classifier gains the class from its feature statistics alone, and a detector
        that keeps reference features (kNN, LOF) or class Gaussians (Mahalanobis) learns that such
        images are known now; its calibrated threshold is kept.
        """
        if self.gaussian is None:
            raise ValueError("adding classes needs the model's Gaussian classifier: call fit_gaussian(train) "
                             "first (owlearn train does it with --gaussian)")
        name = check_class_name(name, self.classes)  # the same rules as the command line's and the service's
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        if isinstance(images, (list, tuple)) and images and all(isinstance(i, (str, os.PathLike)) for i in images):
            images = find_images(images)  # folders expanded, each file once: a file named twice would weigh double
        det_feats, _, emb, gauss = self._inputs(images)  # one forward pass for the classifier and detector
        if len(emb) < 2:
            raise ValueError(f"class {name!r} needs at least 2 example images, got {len(emb)}")
        label = self.gaussian.add_class(gauss, name=name)
        det = self.detector
        if det is not None:
            if hasattr(det, "classifier_"):  # Mahalanobis: its own Gaussians
                det.classifier_.add_class(emb, name=name)
            elif getattr(det, "reads", None) == "layers":  # a Gaussian per layer: each learns the class
                det.add_class(det_feats, name=name)
                # its ViM term reads the head, which knows nothing of the class: like a kNN detector's
                # (below), the class gets its own threshold, set on its examples' left-out scores
                self._own_threshold(name, det.left_out_scores(det_feats, at_most=THRESHOLD_EXAMPLES))
            elif hasattr(det, "add_reference"):  # kNN: the new images join the reference set
                det.add_reference(emb)
                # a class the network was never trained on is less compact in feature space than the
                # trained ones, so the global threshold would refuse much of it: give it its own,
                # set the same way (accept_rate of its examples, each scored without itself)
                self._own_threshold(name, det.left_out_scores(emb, at_most=THRESHOLD_EXAMPLES))
            elif hasattr(det, "reference_"):  # LOF: refit on the grown reference set (its densities change)
                offset = det.offset_
                det.fit(np.concatenate([det.reference_, emb.numpy()]))
                det.offset_ = offset
        self.info.setdefault("added_classes", []).append({"name": name, "images": len(emb)})
        return label

    def _own_threshold(self, name: str, left_out_scores: np.ndarray) -> None:
        """Give an added class the threshold that accepts the model's acceptance rate of its examples
        (each scored without itself), or the global one where that is lower (never stricter)."""
        from owlearn.space import acceptance_threshold

        accept = self.info.get("rejection", {}).get("accept_rate", 0.99)
        own = float(acceptance_threshold(left_out_scores, accept))
        self.info.setdefault("class_thresholds", {})[name] = min(self.detector.offset_, own)

    def remove_class(self, name: str) -> None:
        """Forget a class of the Gaussian classifier (exactly, from its sufficient statistics).

        A Mahalanobis detector forgets it too; a kNN or LOF detector keeps its reference features,
        so such images are still accepted (and answered with the nearest remaining class).
        """
        if self.gaussian is None:
            raise ValueError("removing classes needs the model's Gaussian classifier (fit_gaussian)")
        self.gaussian.remove_class(name)
        det = self.detector
        if det is not None and hasattr(det, "classifier_"):
            det.classifier_.remove_class(name)
        added = self.info.get("added_classes", [])
        self.info["added_classes"] = [a for a in added if a["name"] != name]
        self.info.get("class_thresholds", {}).pop(name, None)

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
        self.check_readable(detector=detector)
        det = make_detector(detector, **params)
        feats, logits, _ = self.detector_inputs(train, det)
        W, b = (t.detach().cpu() for t in self.network.head.last_layer())
        labels = train.relabel(self.class_names).labels.numpy() if detector in ("mahalanobis", "layers") else None
        if detector == "vim":
            det.fit(feats, W=W, b=b)
        elif detector == "layers":
            dims = [*self.network.layer_dims(det.pooling), W.shape[1]]
            det.fit(feats, labels=labels, layer_dims=dims, W=W, b=b)
        else:
            det.fit(feats, labels=labels, logits=logits)
        cal_emb, cal_logits, _ = self.detector_inputs(calibration, det)
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
        """Read a model file written by :meth:`save`; nothing is unpickled.

        A damaged or hand-edited file is refused with a :class:`ModelFileError` that names the file and
        what is wrong in it, never with an error from deep inside the loading code.
        """
        contents = read_bundle(path)
        h = contents.header
        part = "the owlearn header"
        try:
            _check_fields(h)
            part = "the network"
            _check_in_shape(h["network"])  # before the network is built for it
            network = Network(NetworkSpec.from_json(h["network"]))
            network.load_state_dict(contents.group("network"))
            part = "the preprocessing"
            _check_in_shape(h["preprocessing"])
            preprocessing = Preprocessing.from_json(h["preprocessing"])
            _check_input_fits(network.eval(), preprocessing)
            components = {}
            for name, entry in h["components"].items():
                part = f"component {name!r}"
                components[name] = _load_component(name, entry, contents.group(f"components/{name}"))
            part = "field 'class_names'"
            model = cls(network.eval(), list(h["class_names"]), preprocessing, h.get("info", {}), components)
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {part} {exc}") from exc
        except _DAMAGE as exc:
            raise ModelFileError(f"{path}: {part} is damaged or inconsistent ({_describe(exc)})") from exc
        # outside the checks above: a device that cannot be used is no fault of the file
        model.network.to(device)
        return model


def _checked_batch_size(batch_size: int) -> int:
    # 0 made range() fail and -1 a matrix product, deep inside the forward pass
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    return int(batch_size)


_DAMAGE = (AttributeError, ImportError, IndexError, KeyError, TypeError, ValueError, RuntimeError)
"""What the loading code raises on a file whose parts do not fit together."""

_HEADER_FIELDS = {"network": dict, "class_names": list, "preprocessing": dict, "components": dict}


def _check_fields(h: dict) -> None:
    for key, kind in _HEADER_FIELDS.items():
        if key not in h:
            raise ModelFileError(f"is missing field {key!r}")
        if not isinstance(h[key], kind):
            raise ModelFileError(f"has {json_kind(h[key])} for field {key!r}, not {json_kind(kind())}")
    if not all(isinstance(c, str) for c in h["class_names"]):
        raise ModelFileError("has a class name that is not a string in field 'class_names'")
    if not isinstance(h.get("info", {}), dict):
        raise ModelFileError(f"has {json_kind(h['info'])} for field 'info', not an object")
    own = h.get("info", {}).get("class_thresholds", {})  # read by every prediction with a detector
    if not isinstance(own, dict) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in own.values()):
        raise ModelFileError(f"has {json.dumps(own)[:80]} for field 'info.class_thresholds', not an object of "
                             "numbers by class name")


def _check_in_shape(section: dict) -> None:
    """A header section's ``in_shape``: three whole numbers ``(C, H, W)`` of at most MAX_SIDE each.

    A huge one would otherwise be found out only by predict, tens of seconds later, as a MemoryError.
    """
    if "in_shape" not in section:
        return  # reported as a missing entry where it is read
    shape = section["in_shape"]
    if not isinstance(shape, list) or len(shape) != 3 \
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape):
        raise ModelFileError(f"has in_shape {json.dumps(shape)}, not three positive whole numbers (C, H, W)")
    if max(shape) > MAX_SIDE:
        raise ModelFileError(f"has in_shape {shape}, larger than {MAX_SIDE} in a dimension: no owlearn model "
                             "takes such images; the file is damaged")


def _check_input_fits(network: Network, preprocessing: Preprocessing) -> None:
    """Whether the network takes the images the preprocessing makes; else predict would fail in PyTorch."""
    takes, makes = list(network.spec.in_shape), list(preprocessing.in_shape)
    # the network's weights were checked against its spec: its channels are those of its first layer
    if makes[0] != takes[0]:
        raise ModelFileError(f"has in_shape {makes}, but the network takes {takes[0]}-channel images "
                             f"(its in_shape is {takes})")
    if makes[1:] != takes[1:]:
        # owlearn writes both the same; a pooling backbone takes other sizes, a fully connected one does not
        try:
            with torch.no_grad():
                network(torch.zeros(1, *makes))
        except (RuntimeError, ValueError) as exc:
            raise ModelFileError(f"has in_shape {makes}, which the network, made for {takes}, cannot take "
                                 f"({str(exc).splitlines()[0]})") from exc


def _load_component(name: str, entry: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild the component ``name`` from its header entry and tensors, checking that it is complete."""
    from owlearn.space._state import StateMixin

    if not isinstance(entry, dict):
        raise ModelFileError(f"is {json_kind(entry)}, not an object with its 'class' and 'config'")
    for key, kind in (("class", str), ("config", dict)):
        if not isinstance(entry.get(key), kind):
            raise ModelFileError(f"has {json_kind(entry.get(key))} for {key!r}, not {json_kind(kind())}")
    component_cls = _component_class(entry["class"])
    if issubclass(component_cls, StateMixin):
        # StateMixin.from_state takes an absent record for "not fitted", but save() writes both always
        for key in ("params", "fitted"):
            if not isinstance(entry["config"].get(key), dict):
                raise ModelFileError(f"has no {key!r} record in its config")
        if component_cls._array_attrs and not tensors:
            raise ModelFileError("has none of its tensors in the file")
    obj = component_cls.from_state(tensors, entry["config"])
    # what the model reads of the components it uses (classes, thresholds(), predict()): a file without
    # it would load and then fail on first use
    needs = {"gaussian": ("classes_", "class_names_"),
             "detector": (getattr(obj, "_fitted_attr", "offset_"), "offset_")}.get(name, ())
    missing = [a for a in needs if not hasattr(obj, a)]
    if missing:
        raise ModelFileError(f"lacks its fitted {', '.join(missing)}")
    if name == "gaussian" and len(obj.class_names_) != len(obj.classes_):
        raise ModelFileError(f"has {len(obj.class_names_)} class names for {len(obj.classes_)} classes")
    return obj


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no entry {exc.args[0]!r}" if exc.args else "a missing entry"
    if isinstance(exc, RuntimeError) and str(exc).startswith("Error(s) in loading state_dict"):
        return state_dict_mismatch(exc)
    return str(exc) or type(exc).__name__


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _component_class(path: str) -> type:
    # only owlearn's own classes may be named in a model file: a file must not make us import anything
    # else, nor run a module's script (owlearn.__main__ starts the command line)
    module, _, name = path.partition(":")
    parts = module.split(".")
    if parts[0] != "owlearn" or not all(p.isidentifier() and not p.startswith("__") for p in parts) \
            or not name.isidentifier():
        raise ModelFileError(f"names class {path!r}, which is not part of owlearn")
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError:
        cls = None
    if not isinstance(cls, type) or not hasattr(cls, "from_state"):
        raise ModelFileError(f"names an unknown class {path!r} (not in owlearn {__version__})")
    return cls
