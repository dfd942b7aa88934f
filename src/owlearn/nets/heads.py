"""Classification heads: features ``(N, D)`` → logits ``(N, K)``.

Every head ends in one linear map, ``logits = embed(features) @ W.T + b``. ``embed`` is the vector
that map reads — the backbone features for a plain softmax, the features on the sphere of radius α
for the L2-constrained softmax, the unit-normalised features for the cosine head — and it is the
feature space owlearn's outlier detectors and Gaussian classifiers work in. ``last_layer`` returns
``(W, b)``, which ViM needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class LinearHead(nn.Module):
    """Plain softmax classifier: one linear layer."""

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(feature_dim, num_classes)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def last_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc.weight.detach(), self.fc.bias.detach()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


def l2_softmax_alpha_lower_bound(num_classes: int, p: float = 0.9) -> float:
    """Ranjan et al. 2017, eq. 4: the smallest α for which a class can reach probability ``p``."""
    return math.log(p * (num_classes - 2) / (1 - p)) if num_classes > 2 else 1.0


class L2SoftmaxHead(nn.Module):
    """L2-constrained softmax (Ranjan, Castillo, Chellappa 2017).

    Features are L2-normalised and scaled by α before the linear layer, so every image lies on a
    hypersphere of radius α. α is fixed or learned (``learn_alpha``); the default 16 is well above
    the paper's lower bound (:func:`l2_softmax_alpha_lower_bound`: 4.3 for 10 classes, 9.1 for 1,000).

    Examples
    --------
    >>> head = L2SoftmaxHead(50, 10, alpha=16.0)
    >>> head.embed(torch.randn(3, 50)).norm(dim=1)
    tensor([16.0000, 16.0000, 16.0000])
    """

    def __init__(self, feature_dim: int, num_classes: int, alpha: float = 16.0, learn_alpha: bool = False):
        super().__init__()
        if not (math.isfinite(alpha) and alpha > 0):  # α ≤ 0 puts every feature at the origin or turns it round
            raise ValueError(f"the L2-softmax radius alpha must be a positive number, got {alpha}")
        self.fc = nn.Linear(feature_dim, num_classes)
        alpha_t = torch.tensor(float(alpha))
        if learn_alpha:
            self.alpha = nn.Parameter(alpha_t)
        else:
            self.register_buffer("alpha", alpha_t)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.alpha * F.normalize(features, dim=1)

    def last_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc.weight.detach(), self.fc.bias.detach()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(features))


class CosineHead(nn.Module):
    """Cosine classifier: normalised features against normalised class weights, times a scale."""

    def __init__(self, feature_dim: int, num_classes: int, scale: float = 16.0):
        super().__init__()
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the cosine head's scale must be a positive number, got {scale}")
        self.weight = nn.Parameter(torch.randn(num_classes, feature_dim) / math.sqrt(feature_dim))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1)

    def last_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.scale * F.normalize(self.weight.detach(), dim=1)
        return weight, torch.zeros(weight.shape[0], device=weight.device)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed(features) @ (self.scale * F.normalize(self.weight, dim=1)).T


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "l2softmax": L2SoftmaxHead, "cosine": CosineHead}
