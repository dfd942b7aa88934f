"""The in-memory image dataset every part of owlearn passes around.

Small image datasets (MNIST, CIFAR, digits) fit in memory many times over, so owlearn keeps them as
one uint8 tensor instead of a list of files: batching is a slice, augmentation runs on whole batches,
and moving the data to a GPU is one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

UNLABELED = -1
"""Label value of an image whose class is not known (semi-supervised and clustering data)."""


@dataclass
class ImageDataset:
    """Images and labels held as tensors.

    Parameters
    ----------
    images
        ``uint8`` tensor of shape ``(N, C, H, W)``.
    labels
        ``int64`` tensor of shape ``(N,)``; ``-1`` (:data:`UNLABELED`) marks an unlabeled image.
    class_names
        Name of each class; label ``k`` is ``class_names[k]``.
    name
        Where the data came from, for messages and reports (``"fashion-mnist/train"``).

    Examples
    --------
    >>> import torch
    >>> ds = ImageDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 1, 0]), ["a", "b"])
    >>> len(ds), ds.shape
    (4, (1, 8, 8))
    >>> ds.select_classes([1]).labels.tolist()
    [1, 1]
    >>> ds.relabel(["b"]).labels.tolist()
    [-1, 0, 0, -1]
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"{self.name or 'dataset'}: images must be a uint8 tensor (N, C, H, W), "
                f"got {self.images.dtype} of shape {tuple(self.images.shape)}"
            )
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name or 'dataset'}: {self.images.shape[0]} images but labels of shape "
                f"{tuple(self.labels.shape)}"
            )
        labelled = self.labels[self.labels != UNLABELED]
        if labelled.numel() and (labelled.min() < 0 or labelled.max() >= len(self.class_names)):
            raise ValueError(
                f"{self.name or 'dataset'}: labels must lie in [0, {len(self.class_names)}) "
                f"or be {UNLABELED}, got range [{int(labelled.min())}, {int(labelled.max())}]"
            )

    def __repr__(self) -> str:
        # the default dataclass repr prints every pixel
        shape = "×".join(str(d) for d in self.images.shape[1:])
        return (f"ImageDataset({self.name or 'unnamed'!r}, {len(self):,} images of {shape}, "
                f"{len(self.class_names)} classes)")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: torch.Tensor | Sequence[int], name: str | None = None) -> ImageDataset:
        """The images at ``index`` (a boolean mask or integer indices), class names unchanged."""
        index = torch.as_tensor(index)
        return ImageDataset(
            self.images[index], self.labels[index], list(self.class_names),
            name if name is not None else self.name, dict(self.meta),
        )

    def select_classes(self, classes: Sequence[int]) -> ImageDataset:
        """The images whose label is in ``classes``; labels and class names are kept as they are."""
        outside = sorted({int(c) for c in classes} - set(range(self.num_classes)))
        if outside:  # would select nothing for them, silently
            raise ValueError(f"classes {outside} are not among the {self.num_classes} classes of "
                             f"{self.name or 'the dataset'} (0 to {self.num_classes - 1})")
        mask = torch.isin(self.labels, torch.as_tensor(list(classes), dtype=torch.int64))
        return self.subset(mask)

    def relabel(self, class_names: Sequence[str]) -> ImageDataset:
        """The same images with labels re-expressed in ``class_names`` order (matched by name).

        Images whose class is not in ``class_names`` become :data:`UNLABELED`. Use it to train on a
        subset of classes (``ds.select_classes(known).relabel(names)``) or to score a dataset against
        a model's classes.
        """
        position = {name: i for i, name in enumerate(class_names)}
        lookup = torch.tensor([position.get(name, UNLABELED) for name in self.class_names] + [UNLABELED])
        # UNLABELED (-1) indexes the appended last entry, so unlabeled stays unlabeled
        return ImageDataset(self.images, lookup[self.labels], list(class_names), self.name, dict(self.meta))

    def split(self, first: int) -> tuple[ImageDataset, ImageDataset]:
        """The first ``first`` images and the rest (the BENCHMARKS 'MNIST-10k split' is ``split(8000)``)."""
        n = len(self)
        if not 0 < first < n:
            raise ValueError(f"split point must lie in (0, {n}), got {first}")
        return (self.subset(torch.arange(first), f"{self.name}[:{first}]"),
                self.subset(torch.arange(first, n), f"{self.name}[{first}:]"))

    def random_split(self, first: int, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """A seeded random split into ``first`` images and the rest."""
        n = len(self)
        if not 0 < first < n:
            raise ValueError(f"split point must lie in (0, {n}), got {first}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return self.subset(perm[:first]), self.subset(perm[first:])
