"""A fixed-size exemplar memory shared equally among the classes seen so far, and iCaRL's herding.

When classes arrive the memory is re-balanced: each of the ``k`` classes keeps ``capacity // k``
exemplars (the first classes one more while there is a remainder). Each class's exemplars are stored
in priority order — herding order for iCaRL, a seeded random order for replay — so shrinking a class
means keeping its first ones (iCaRL's ReduceExemplarSet).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from owlearn.data.dataset import ImageDataset


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of ``m`` exemplars chosen by iCaRL's herding (Rebuffi et al. 2017, Algorithm 4).

    With ``φ`` the L2-normalised features and ``μ`` their mean, step ``k`` picks
    ``p_k = argmin_x ‖μ − (φ(x) + Σ_{j<k} φ(p_j)) / k‖`` among the images not picked yet: each new
    exemplar brings the exemplars' mean closest to the class mean. ``μ`` is not re-normalised, as in
    Algorithm 4 and the authors' code: a unit-length target, which no mean of several unit vectors
    reaches, would favour the most central images over ones that bring the mean closer. Returned in the
    order picked.

    Examples
    --------
    >>> feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.1]])
    >>> herding(feats, 2).tolist()
    [2, 3]
    """
    phi = F.normalize(features.double(), dim=1)  # (n, D)
    mu = phi.mean(0)  # (D,)
    m = min(m, len(phi))
    chosen: list[int] = []
    running = torch.zeros_like(mu)  # Σ_{j<k} φ(p_j)
    available = torch.ones(len(phi), dtype=torch.bool, device=phi.device)
    for k in range(1, m + 1):
        dist = (mu - (phi + running) / k).norm(dim=1)  # (n,)
        dist[~available] = float("inf")
        best = int(dist.argmin())
        chosen.append(best)
        available[best] = False
        running += phi[best]
    return torch.tensor(chosen, dtype=torch.long)


def kernel_herding(features: torch.Tensor, m: int, bandwidth: float = 0.25, block: int = 256) -> torch.Tensor:
    """Indices of ``m`` exemplars chosen by kernel herding (Chen, Welling & Smola 2010), in the order picked.

    iCaRL's :func:`herding` matches the exemplars' mean to the class mean, so its first picks are the
    most typical images, and a class shrunk to its first picks keeps no image from the edges of the
    class. Kernel herding runs the same greedy rule in the feature space of a Gaussian kernel, which
    matches the whole distribution rather than its mean: step ``t`` picks

    ``p_t = argmax_x  (1/n) Σ_i k(x, x_i) − (1/t) Σ_{j<t} k(x, p_j)``,

    a likely image far from those picked already. ``k(a, b) = exp(−‖a − b‖² / (2 h²))`` on the
    L2-normalised features, with ``h² = bandwidth ×`` the median squared distance between them (the
    median heuristic; a seeded sample of 1,000 images estimates it). The kernel matrix is never held
    whole: ``block`` rows at a time.

    Examples
    --------
    >>> feats = torch.tensor([[1.0, 0.0], [1.0, 0.05], [1.0, -0.05], [0.0, 1.0]])
    >>> kernel_herding(feats, 2).tolist()  # a typical image, then the one the first does not stand for
    [0, 3]
    """
    phi = F.normalize(features.float(), dim=1)
    n = len(phi)
    m = min(m, n)
    sample = phi[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:1000].to(phi.device)]
    distances = torch.pdist(sample)  # each pair once: no n² matrix or mask
    scale = 2 * bandwidth * float(distances.median()) ** 2 if len(distances) else 1.0
    scale = scale if scale > 0 else 1.0  # all images identical: any positive width gives the same picks

    def kernel(rows: torch.Tensor) -> torch.Tensor:  # (len(rows), n), from dot products: GEMM, not cdist
        return (rows @ phi.T).mul_(2).sub_(2).clamp_max_(0).div_(scale).exp_()

    density = torch.zeros(n, dtype=torch.float64, device=phi.device)  # (1/n) Σ_i k(x, x_i)
    for start in range(0, n, block):
        density += kernel(phi[start:start + block]).sum(0)  # float32 sums of a block, added in float64
    density /= n
    picked_sum = torch.zeros(n, dtype=torch.float64, device=phi.device)  # Σ_{j<t} k(x, p_j)
    available = torch.ones(n, dtype=torch.bool, device=phi.device)
    chosen: list[int] = []
    for t in range(1, m + 1):
        score = density - picked_sum / t
        score[~available] = -float("inf")
        best = int(score.argmax())
        chosen.append(best)
        available[best] = False
        picked_sum += kernel(phi[best:best + 1])[0]
    return torch.tensor(chosen, dtype=torch.long)


def random_order(n: int, m: int, seed: int) -> torch.Tensor:
    """``m`` of ``n`` indices in a seeded random order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:m]


class ClassBalancedMemory:
    """At most ``capacity`` exemplars, shared equally among the classes seen so far.

    A class that comes back in a later experience (a new domain of the same classes) keeps a block of
    exemplars from each experience that brought it: the memory is shared equally among these (class,
    experience) blocks, so every domain stays represented. When classes arrive only once, the blocks are
    the classes.

    Examples
    --------
    >>> ds = ImageDataset(torch.zeros(40, 1, 4, 4, dtype=torch.uint8), torch.arange(40) % 4, list("abcd"))
    >>> memory = ClassBalancedMemory(10)
    >>> memory.add_classes(ds.select_classes([0, 1]), [0, 1], lambda images, m: random_order(len(images), m, 0))
    >>> memory.sizes()
    {0: 5, 1: 5}
    >>> memory.add_classes(ds.select_classes([2, 3]), [2, 3], lambda images, m: random_order(len(images), m, 0))
    >>> memory.sizes(), len(memory.dataset())
    ({0: 3, 1: 3, 2: 2, 3: 2}, 10)
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"memory capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._blocks: dict[int, list[torch.Tensor]] = {}  # class → one uint8 block per experience, in priority order
        self._template: ImageDataset | None = None

    @property
    def classes(self) -> list[int]:
        """The classes with exemplars, in the order they arrived."""
        return list(self._blocks)

    @property
    def images(self) -> dict[int, torch.Tensor]:
        """Each class's exemplars (its blocks one after another)."""
        return {c: blocks[0] if len(blocks) == 1 else torch.cat(blocks) for c, blocks in self._blocks.items()}

    def quota(self, num_blocks: int) -> list[int]:
        base, extra = divmod(self.capacity, num_blocks)
        return [base + (1 if i < extra else 0) for i in range(num_blocks)]

    def add_classes(self, data: ImageDataset, classes: list[int],
                    select: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
        """Shrink the stored blocks to their new quota, then store a block of exemplars of each of ``classes``
        from ``data``.

        ``select(images, m)`` returns the indices of ``m`` of a class's images in priority order.
        """
        self._template = data
        kept = [(c, i) for c, blocks in self._blocks.items() for i in range(len(blocks))]
        new = [(c, len(self._blocks.get(c, ()))) for c in classes]
        if len(kept) + len(new) > self.capacity:  # a block with no exemplar: a class or domain never replayed
            raise ValueError(f"a memory of {self.capacity} exemplars cannot keep one of each of the "
                             f"{len(kept) + len(new)} classes seen (counted once per experience that brought "
                             f"them); raise the memory size to at least {len(kept) + len(new)}")
        quota = dict(zip(kept + new, self.quota(len(kept) + len(new))))
        for c, i in kept:
            self._blocks[c][i] = self._blocks[c][i][: quota[(c, i)]]
        for c, i in new:
            images = data.images[data.labels == c]
            if len(images) == 0:
                raise ValueError(f"class {c} has no images in {data.name or 'the experience'}")
            self._blocks.setdefault(c, []).append(images[select(images, quota[(c, i)])[: quota[(c, i)]]].clone())

    def sizes(self) -> dict[int, int]:
        return {c: sum(len(b) for b in blocks) for c, blocks in self._blocks.items()}

    def dataset(self) -> ImageDataset:
        """The exemplars as one dataset (labels = their classes)."""
        if self._template is None:
            raise ValueError("the memory is empty")
        images = self.images
        labels = torch.cat([torch.full((len(v),), c, dtype=torch.long) for c, v in images.items()])
        return ImageDataset(torch.cat(list(images.values())), labels, list(self._template.class_names), "memory")

    def __len__(self) -> int:
        return sum(self.sizes().values())
