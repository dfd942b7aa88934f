"""Semi-supervised training sets: a few labels per class, the rest of the images unlabeled.

The shared loop draws batches from one shuffled set, and :class:`~owlearn.train.loop.CrossEntropy`
only looks at labelled images (label ``-1`` means unlabeled). With 100 labels among 60,000 images
a random batch of 128 would hold about two labelled images, too few for a useful gradient, so
:func:`semi_supervised_set` repeats the labelled images until they make up a chosen share of every
epoch (VAT's paper draws a separate labelled batch each step to the same effect).
"""

from __future__ import annotations

import math

import torch

from owlearn.data.dataset import UNLABELED, ImageDataset


def keep_labels_per_class(data: ImageDataset, per_class: int, *, seed: int = 0) -> ImageDataset:
    """A copy of ``data`` where only ``per_class`` random images of each class keep their label.

    Examples
    --------
    >>> ds = ImageDataset(torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 0, 0, 1, 1, 1]), ["a", "b"])
    >>> (keep_labels_per_class(ds, 2).labels >= 0).sum().item()
    4
    """
    if per_class < 1:
        raise ValueError(f"labels per class must be at least 1, got {per_class}")
    g = torch.Generator().manual_seed(seed)
    keep = torch.zeros(len(data), dtype=torch.bool)
    for c in range(len(data.class_names)):
        members = torch.nonzero(data.labels == c).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {data.class_names[c]!r} has {len(members)} images, fewer than the "
                             f"{per_class} labels per class asked for")
        keep[members[torch.randperm(len(members), generator=g)[:per_class]]] = True
    labels = torch.where(keep, data.labels, torch.full_like(data.labels, UNLABELED))
    return ImageDataset(data.images, labels, data.class_names, name=f"{data.name} ({per_class} labels/class)",
                        meta=dict(data.meta))


def semi_supervised_set(data: ImageDataset, labelled_share: float = 0.25) -> ImageDataset:
    """Repeat the labelled images of ``data`` so they are about ``labelled_share`` of the set.

    A fully labelled or fully unlabeled set is returned unchanged.
    """
    if not 0 < labelled_share < 1:
        raise ValueError(f"labelled_share must be between 0 and 1, got {labelled_share}")
    labelled = torch.nonzero(data.labels != UNLABELED).flatten()
    n_lab, n_unl = len(labelled), len(data) - len(labelled)
    if n_lab == 0 or n_unl == 0:
        return data
    repeats = max(1, math.ceil(labelled_share * n_unl / ((1 - labelled_share) * n_lab)))
    extra = labelled.repeat(repeats - 1)
    index = torch.cat([torch.arange(len(data)), extra])
    return ImageDataset(data.images[index], data.labels[index], data.class_names, name=data.name, meta=dict(data.meta))
