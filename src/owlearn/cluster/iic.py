"""The IIC objective (Ji, Henriques, Vedaldi 2019): mutual information between two views' clusters.

For a batch of images and an augmented copy of each, a network's cluster probabilities ``p1``, ``p2``
``(N, K)`` give the joint distribution of the two assignments, ``P = 1/N Σ p1ᵀ p2``, symmetrised and
normalised. IIC maximises its mutual information ``I = Σ P log(P / (Pi Pj))``: each image must land
in the same cluster as its copy (low conditional entropy) while clusters are used evenly (high
marginal entropy). The write-up's α weights the marginal-entropy terms,
``loss = -Σ P (log P - α log Pi - α log Pj)`` (α = 1 is exactly −I); α > 1 pushes harder against
degenerate solutions where everything falls into a few clusters.
"""

from __future__ import annotations

import torch

EPS = torch.finfo(torch.float32).eps


def joint_distribution(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Symmetrised joint distribution ``(K, K)`` of two views' cluster probabilities ``(N, K)``."""
    if p1.shape != p2.shape or p1.dim() != 2:
        raise ValueError(f"the two views' probabilities must have the same shape (N, K), got "
                         f"{tuple(p1.shape)} and {tuple(p2.shape)}")
    with torch.autocast(p1.device.type, enabled=False):  # a bf16 product would round P's small entries
        joint = p1.float().T @ p2.float() / p1.shape[0]  # (K, K)
    joint = (joint + joint.T) / 2
    return joint / joint.sum()


def iic_loss(p1: torch.Tensor, p2: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """IIC loss of two views' cluster probabilities; ``-mutual information`` when ``alpha`` is 1.

    Examples
    --------
    >>> p = torch.eye(4)  # four images, each certainly in its own cluster, identical in both views
    >>> round(float(-iic_loss(p, p)), 4) == round(float(torch.log(torch.tensor(4.0))), 4)  # I = log K
    True
    """
    joint = joint_distribution(p1, p2).clamp_min(EPS)  # clamped as in the paper's code: log 0 is never taken
    pi = joint.sum(dim=1, keepdim=True)  # (K, 1) marginal of view 1
    pj = joint.sum(dim=0, keepdim=True)  # (1, K) marginal of view 2
    return -(joint * (joint.log() - alpha * pi.log() - alpha * pj.log())).sum()
