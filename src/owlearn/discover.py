"""Discovering new classes: refuse the unknown, group it, let a person name the groups, add them.

This closes owlearn's open-world loop with what the other parts provide:

1. the model's rejection detector marks images it does not know (needs a model with a detector:
   ``owlearn train --detector …``);
2. the rejected images are grouped — ``kmeans`` on the model's feature vectors (cheap: the features
   already separate what the network learned to tell apart), or ``iic``: a fresh IIC network trained on
   the rejected pixels (no use of the model's features; slower);
3. a contact sheet per group lets a person see what each group is, and ``--name GROUP=NAME`` adds that
   group as a class without retraining (needs the model's Gaussian classifier: ``--gaussian``).

The grouping is deterministic for a given seed, so running the command again with ``--name`` names
the same groups the first run showed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from owlearn.model import OwlModel

METHODS = ("kmeans", "iic")


@dataclass
class Discovery:
    """Which images were refused and the group of each refused image."""

    rejected: np.ndarray  # indices (into the images given) of refused images
    groups: np.ndarray  # group of each refused image, 0 … k-1
    k: int
    method: str
    scores: np.ndarray | None = None  # novelty score of every image given (higher = more normal)
    silhouettes: dict[int, float] = field(default_factory=dict)  # k → silhouette, when k was chosen

    def members(self, group: int) -> np.ndarray:
        """Indices (into the images given) of the images of ``group``."""
        return self.rejected[self.groups == group]

    def sizes(self) -> list[int]:
        return np.bincount(self.groups, minlength=self.k).tolist()


def _kmeans(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features)


def _choose_k(features: np.ndarray, max_k: int, seed: int) -> tuple[int, dict[int, float]]:
    """The k of 2 … max_k whose k-means grouping has the highest silhouette (on at most 5,000 points)."""
    from sklearn.metrics import silhouette_score

    if len(features) < 3:  # a silhouette needs k + 1 points or more, for k = 2 at the least
        raise ValueError(f"only {len(features)} images were refused, too few to choose the number of groups "
                         "by silhouette; give it (-k / --groups, k=...)")
    rng = np.random.default_rng(seed)
    sample = features if len(features) <= 5000 else features[rng.choice(len(features), 5000, replace=False)]
    scores = {}
    for k in range(2, min(max_k, len(sample) - 1) + 1):
        scores[k] = float(silhouette_score(sample, _kmeans(sample, k, seed), random_state=seed))
    return max(scores, key=scores.get), scores


def discover(model: OwlModel, images, *, k: int | None = None, method: str = "kmeans", max_k: int = 10,
             seed: int = 0, iic_epochs: int = 30) -> Discovery:
    """Refuse with the model's detector, then group the refused images into ``k`` groups.

    ``k=None`` picks k in 2 … ``max_k`` by silhouette on the feature vectors.
    """
    if method not in METHODS:
        raise ValueError(f"unknown grouping method {method!r}; choose one of {METHODS}")
    if model.detector is None:
        raise ValueError("discovering classes needs a model with a rejection detector (owlearn train --detector "
                         "layers, the default); this model accepts everything")
    batch = model.as_batch(images)
    pred = model.predict(batch)
    rejected = np.flatnonzero(~pred.accepted)
    if len(rejected) < 2:
        raise ValueError(f"the model refused {len(rejected)} of {len(batch)} images: nothing to group")
    feats = model.features(batch[torch.as_tensor(rejected)]).numpy().astype(np.float64)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12  # direction, not length, tells classes apart
    silhouettes: dict[int, float] = {}
    if k is None:
        k, silhouettes = _choose_k(feats, max_k, seed)
    if k < 2 or k > len(rejected):
        raise ValueError(f"cannot make {k} groups of {len(rejected)} refused images")
    if method == "kmeans":
        groups = _kmeans(feats, k, seed)
    else:
        groups = _iic_groups(batch[torch.as_tensor(rejected)], k, seed, iic_epochs)
    return Discovery(rejected, np.asarray(groups, dtype=np.int64), k, method, pred.scores, silhouettes)


def _iic_groups(images: torch.Tensor, k: int, seed: int, epochs: int) -> np.ndarray:
    from owlearn.cluster.train import IICConfig, assign, fit_iic
    from owlearn.data.dataset import ImageDataset

    data = ImageDataset(images, torch.zeros(len(images), dtype=torch.long), ["?"], name="refused")
    size = min(16, images.shape[-1])
    result = fit_iic(data, IICConfig(clusters=k, seed=seed, epochs=epochs, size=size,
                                     batch_size=min(256, len(images))), progress=False)
    return assign(result.model, data)


def name_groups(model: OwlModel, images, discovery: Discovery, names: dict[int, str]) -> dict[str, int]:
    """Add each named group as a class (no retraining); returns ``{name: label}``."""
    batch = model.as_batch(images)
    added = {}
    for group, name in names.items():
        if not 0 <= group < discovery.k:
            raise ValueError(f"there is no group {group}: groups are 0-{discovery.k - 1}")
        members = discovery.members(group)
        added[name] = model.add_class(name, batch[torch.as_tensor(members)])
    return added


def purity(discovery: Discovery, labels: np.ndarray) -> dict:
    """For evaluation with known labels: each group's majority label and its share."""
    rows = []
    for g in range(discovery.k):
        lab = labels[discovery.members(g)]
        if len(lab) == 0:
            continue
        values, counts = np.unique(lab, return_counts=True)
        rows.append({"group": g, "size": int(len(lab)), "majority": int(values[counts.argmax()]),
                     "purity": float(counts.max() / len(lab))})
    total = sum(r["size"] for r in rows)
    return {"groups": rows, "purity": sum(r["purity"] * r["size"] for r in rows) / max(total, 1)}
