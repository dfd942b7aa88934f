"""Continual-learning scenarios: a stream of experiences, each a training set and a test set.

*Class-incremental*: every experience brings new classes; one head over all classes, no task identity
at test time (benchmark B4: Split Fashion-MNIST, 5 experiences of 2 classes). *Domain-incremental*:
every experience has the same classes drawn from another distribution (Fashion-MNIST → MNIST-10k).

Labels keep the source dataset's numbering, so class names stay meaningful and one 10-way head
serves every experience.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from owlearn.data.dataset import ImageDataset


@dataclass
class Experience:
    """One step of a stream: what the learner trains on, and what measures it afterwards."""

    index: int
    train: ImageDataset
    test: ImageDataset
    classes: list[int]
    name: str


@dataclass
class Scenario:
    """An ordered list of experiences sharing one label space of ``len(class_names)`` classes."""

    name: str
    kind: Literal["class", "domain"]
    experiences: list[Experience]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.experiences)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.experiences[0].train.shape

    def seen_classes(self, upto: int) -> list[int]:
        """Classes of experiences ``0..upto``, in order of arrival, without repeats."""
        seen: list[int] = []
        for exp in self.experiences[: upto + 1]:
            seen += [c for c in exp.classes if c not in seen]
        return seen

    def train_upto(self, upto: int) -> ImageDataset:
        """All training images of experiences ``0..upto`` (what joint training sees)."""
        return concat([e.train for e in self.experiences[: upto + 1]], name=f"{self.name} train[:{upto + 1}]")

    def test_upto(self, upto: int) -> ImageDataset:
        """All test images of experiences ``0..upto`` (after the last one: the full test set)."""
        return concat([e.test for e in self.experiences[: upto + 1]], name=f"{self.name} test[:{upto + 1}]")


def concat(parts: Sequence[ImageDataset], name: str = "") -> ImageDataset:
    """One dataset from several with the same label space (the first one's class names)."""
    if not parts:
        raise ValueError("nothing to concatenate")
    return ImageDataset(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                        list(parts[0].class_names), name or parts[0].name)


def class_order_for(num_classes: int, class_order: Sequence[int] | None = None, seed: int | None = None) -> list[int]:
    """The given order, else a permutation drawn with ``seed``, else ``0..K-1``."""
    if class_order is not None:
        order = [int(c) for c in class_order]
        if sorted(order) != sorted(set(order)) or not all(0 <= c < num_classes for c in order):
            raise ValueError(f"class_order must list distinct classes in 0..{num_classes - 1}, got {order}")
        return order
    if seed is not None:
        return torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed)).tolist()
    return list(range(num_classes))


def class_incremental(train: ImageDataset, test: ImageDataset, n_experiences: int = 5, *,
                      class_order: Sequence[int] | None = None, seed: int | None = None,
                      name: str | None = None) -> Scenario:
    """Split ``train``/``test`` into ``n_experiences`` groups of classes taken in ``class_order``.

    Parameters
    ----------
    train, test
        Datasets with the same class names.
    n_experiences
        Number of experiences; the classes are shared out as evenly as possible (earlier ones get the
        remainder).
    class_order
        Order in which classes arrive (default: natural order, or a seeded permutation with ``seed``).
        It may list a subset of the classes; the others never appear.
    seed
        Draw the class order at random with this seed (ignored when ``class_order`` is given).

    Examples
    --------
    >>> ds = ImageDataset(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), torch.arange(8) % 4, list("abcd"))
    >>> sc = class_incremental(ds, ds, 2)
    >>> [e.classes for e in sc.experiences], len(sc.experiences[1].train)
    ([[0, 1], [2, 3]], 4)
    >>> [e.classes for e in class_incremental(ds, ds, 2, class_order=[3, 1, 0, 2]).experiences]
    [[3, 1], [0, 2]]
    """
    if train.class_names != test.class_names:
        raise ValueError(f"train and test sets name their classes differently: {train.class_names} vs "
                         f"{test.class_names}")
    order = class_order_for(train.num_classes, class_order, seed)
    if not 1 <= n_experiences <= len(order):
        raise ValueError(f"cannot split {len(order)} classes into {n_experiences} experiences: each needs at least "
                         f"one class, so choose 1 to {len(order)} experiences")
    base, extra = divmod(len(order), n_experiences)
    experiences, start = [], 0
    for i in range(n_experiences):
        size = base + (1 if i < extra else 0)
        classes = order[start:start + size]
        start += size
        label = "+".join(train.class_names[c] for c in classes)
        experiences.append(Experience(i, _named(train.select_classes(classes), f"{train.name} {label}"),
                                      _named(test.select_classes(classes), f"{test.name} {label}"), classes, label))
    return Scenario(name or f"split {train.name} ({n_experiences} experiences)", "class", experiences,
                    list(train.class_names))


def domain_incremental(tasks: Sequence[tuple[str, ImageDataset, ImageDataset]], name: str | None = None) -> Scenario:
    """A sequence of (name, train, test) tasks sharing one label space ``0..K-1``.

    Class names may differ between tasks (Fashion-MNIST's ``T-shirt/top`` is MNIST's ``0``); the
    scenario names class ``k`` by joining the tasks' names for it.
    """
    if not tasks:
        raise ValueError("a domain-incremental scenario needs at least one task")
    k = tasks[0][1].num_classes
    for task_name, train, test in tasks:
        if train.num_classes != k or test.num_classes != k or train.shape != tasks[0][1].shape:
            raise ValueError(f"task {task_name!r} has {train.num_classes} classes of shape {train.shape}; every task "
                             f"needs {k} classes of shape {tasks[0][1].shape}")
    names = [" / ".join(dict.fromkeys(t[1].class_names[c] for t in tasks)) for c in range(k)]
    experiences = [Experience(i, _renamed(train, names), _renamed(test, names), list(range(k)), task_name)
                   for i, (task_name, train, test) in enumerate(tasks)]
    return Scenario(name or " → ".join(t[0] for t in tasks), "domain", experiences, names)


def split_fashion_mnist(n_experiences: int = 5, *, class_order: Sequence[int] | None = None,
                        seed: int | None = None, data_dir: str | Path | None = None,
                        train_limit: int | None = None, test_limit: int | None = None) -> Scenario:
    """Benchmark B4: Fashion-MNIST in ``n_experiences`` class groups (natural order by default).

    ``train_limit``/``test_limit`` keep only the first images of each split (for quick runs).
    """
    from owlearn.data.sources import load_dataset

    train, test = load_dataset("fashion-mnist", "train", data_dir=data_dir), load_dataset("fashion-mnist", "test",
                                                                                           data_dir=data_dir)
    train, test = _first(train, train_limit), _first(test, test_limit)
    return class_incremental(train, test, n_experiences, class_order=class_order, seed=seed,
                             name=f"split fashion-mnist ({n_experiences} experiences)")


def fashion_to_mnist(*, data_dir: str | Path | None = None, mnist_dir: str | Path | None = None,
                     train_limit: int | None = None, test_limit: int | None = None) -> Scenario:
    """Benchmark B4 domain-incremental variant: Fashion-MNIST, then the MNIST-10k split.

    MNIST's training set is not on these machines, so its test set is split: the first 8,000 digits
    train, the last 2,000 test (``MNIST-10k split``). ``mnist_dir`` is the data folder holding
    ``mnist/t10k-*.gz`` (default: ``data_dir``, i.e. ``$OWLEARN_DATA`` or ``~/.cache/owlearn``).
    """
    from owlearn.data.sources import DatasetNotFoundError, load_dataset

    f_train = _first(load_dataset("fashion-mnist", "train", data_dir=data_dir), train_limit)
    f_test = _first(load_dataset("fashion-mnist", "test", data_dir=data_dir), test_limit)
    try:
        mnist = load_dataset("mnist", "test", data_dir=mnist_dir or data_dir)
    except DatasetNotFoundError as exc:
        raise DatasetNotFoundError(f"the domain-incremental scenario needs the MNIST test set: {exc}") from None
    m_train, m_test = mnist.split(8000)
    m_train, m_test = _first(m_train, train_limit), _first(m_test, test_limit)
    return domain_incremental([("fashion-mnist", f_train, f_test), ("mnist-10k split", m_train, m_test)],
                              name="fashion-mnist → mnist-10k split")


SCENARIOS = {"split-fashion": split_fashion_mnist, "fashion-to-mnist": fashion_to_mnist}
"""Named scenarios of the CLI and the benchmarks."""


def _first(ds: ImageDataset, limit: int | None) -> ImageDataset:
    return ds if limit is None or limit >= len(ds) else ds.subset(torch.arange(limit))


def _named(ds: ImageDataset, name: str) -> ImageDataset:
    ds.name = name
    return ds


def _renamed(ds: ImageDataset, class_names: list[str]) -> ImageDataset:
    return ImageDataset(ds.images, ds.labels, list(class_names), ds.name, dict(ds.meta))
