"""A clustering network: one trunk, a main head of ``k`` clusters and an over-clustering head, each
with several sub-heads (Ji et al. 2019).

Sub-heads are independent linear+softmax maps on the same features; they start from different random
weights and land in different optima of the (non-convex) IIC objective, so training several costs
little and the best one — chosen by its own loss, never by labels — is more reliable than any single
head. The over-clustering head (default ``5k`` clusters) only shapes the trunk: it asks for finer
distinctions than the task needs, which IIC found to give better features for the main head.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from owlearn.nets.network import Network, NetworkSpec


class ClusterHeads(nn.Module):
    """``sub_heads`` linear heads of ``clusters`` outputs each."""

    def __init__(self, feature_dim: int, clusters: int, sub_heads: int):
        super().__init__()
        if clusters < 2:
            raise ValueError(f"a clustering head needs at least 2 clusters, got {clusters}")
        if sub_heads < 1:
            raise ValueError(f"need at least one sub-head, got {sub_heads}")
        self.clusters = clusters
        self.heads = nn.ModuleList(nn.Linear(feature_dim, clusters) for _ in range(sub_heads))

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Cluster probabilities ``(N, clusters)`` of every sub-head."""
        return [F.softmax(head(features), dim=1) for head in self.heads]

    def __len__(self) -> int:
        return len(self.heads)


class ClusterNet(nn.Module):
    """Network trunk (any owlearn backbone, with its input normalisation) plus clustering heads.

    ``head`` is the chosen main sub-head, so the training loop's accuracy and ``forward`` work as for a
    classifier: ``forward`` returns that sub-head's logits.

    Examples
    --------
    >>> net = ClusterNet(NetworkSpec("convnet", "linear", 10, (1, 16, 16)), clusters=10, sub_heads=2)
    >>> probs = net.cluster_probs(torch.rand(3, 1, 16, 16))
    >>> len(probs), probs[0].shape
    (2, torch.Size([3, 10]))
    """

    def __init__(self, spec: NetworkSpec, clusters: int, overclusters: int = 0, sub_heads: int = 5):
        super().__init__()
        self.spec = spec
        self.net = Network(spec)
        dim = self.net.feature_dim
        self.main = ClusterHeads(dim, clusters, sub_heads)
        self.over = ClusterHeads(dim, overclusters, sub_heads) if overclusters else None
        self.register_buffer("best_head", torch.zeros((), dtype=torch.long))

    @property
    def clusters(self) -> int:
        return self.main.clusters

    @property
    def head(self) -> nn.Linear:
        return self.main.heads[int(self.best_head)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def cluster_probs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Main-head cluster probabilities of every sub-head."""
        return self.main(self.features(x))
