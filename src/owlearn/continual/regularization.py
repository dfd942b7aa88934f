"""EWC and online EWC: keep the weights that mattered for old experiences near their old values.

Elastic weight consolidation (Kirkpatrick et al. 2017) adds ``λ/2 Σ_i F_i (θ_i − θ*_i)²`` to the loss,
with ``F`` the diagonal of the Fisher information at the old optimum ``θ*``. The Fisher here is the
mean over the experience's images of the squared gradient of each image's own log-likelihood — true
per-sample gradients from :func:`torch.func.vmap` over :func:`torch.func.grad`, not the square of a
batch's mean gradient, which underestimates ``F`` by mixing samples' signs.

Online EWC (Schwarz et al. 2018) keeps one running Fisher ``F ← γ F + F_new`` and one anchor (the
latest weights) instead of one penalty per experience.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from owlearn.continual.base import Context, Strategy
from owlearn.continual.scenarios import Experience
from owlearn.data.dataset import UNLABELED, ImageDataset
from owlearn.nets.network import to_float
from owlearn.train.loop import CrossEntropy, Objective, Step, TrainConfig

_FISHER_GRADIENT_BYTES = 64 * 2**20
"""Budget of one batch of per-image gradients in :func:`diagonal_fisher` when no batch size is given."""


def diagonal_fisher(network: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int | None = None,
                    max_samples: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher: mean over images of the squared per-image gradient of ``-log p(y|x)``.

    Computed in eval mode (BatchNorm uses its running statistics, so each image's gradient is its own).

    Parameters
    ----------
    network
        Module mapping float images in [0, 1] to logits.
    images, labels
        uint8 (or float) images ``(N, C, H, W)`` and their labels; unlabeled images are skipped.
    batch_size
        Images whose gradients are held at once. ``None``: as many as keep one copy of the
        per-image gradients within 64 MB, at most 64 (SimpleNet: 64; ResNet-18: 1). Larger batches
        are barely faster on a CPU (B4's SimpleNet: 4.5 s against 5.5 s for 12,000 images) but their
        temporaries are not small (+120 MB at 256 against +54 MB at 64).
    max_samples
        Use a seeded random subset of this many images (the Fisher is an average: a few thousand
        images estimate it well).

    Examples
    --------
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> fisher = diagonal_fisher(net, torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1]))
    >>> sorted(fisher), fisher["1.weight"].shape
    (['1.bias', '1.weight'], torch.Size([3, 4]))
    """
    keep = labels != UNLABELED
    images, labels = images[keep], labels[keep]
    if max_samples is not None and len(labels) > max_samples:
        pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:max_samples]
        images, labels = images[pick], labels[pick]
    if len(labels) == 0:
        raise ValueError("the Fisher needs labelled images")
    device = next(network.parameters()).device
    params = {n: p.detach() for n, p in network.named_parameters() if p.requires_grad}
    if batch_size is None:
        per_image_bytes = 4 * sum(p.numel() for p in params.values())
        batch_size = max(1, min(64, _FISHER_GRADIENT_BYTES // per_image_bytes))
    buffers = {n: b.detach() for n, b in network.named_buffers()}

    def image_loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(network, (p, buffers), (x.unsqueeze(0),))  # (1, K)
        return F.cross_entropy(logits, y.unsqueeze(0))

    per_image_grads = vmap(grad(image_loss), in_dims=(None, 0, 0))
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = network.training
    network.eval()
    try:
        for i in range(0, len(labels), batch_size):
            x = to_float(images[i:i + batch_size].to(device))
            g = per_image_grads(params, x, labels[i:i + batch_size].to(device))  # name → (B, *shape)
            for n in fisher:
                fisher[n] += g[n].square().sum(0)
    finally:
        network.train(was_training)
    return {n: f / len(labels) for n, f in fisher.items()}


class EWCPenalty:
    """The objective ``λ/2 Σ_anchors Σ_i F_i (θ_i − θ*_i)²`` over (Fisher, anchor weights) pairs.

    ``max_curvature`` caps the stiffness of each weight, ``λ Σ_anchors F_i``: the penalty is a spring of
    that stiffness on weight ``i``, and explicit (momentum) SGD oscillates and diverges once it passes
    its stability limit. The anchors' springs add up, so the cap applies to their sum (each anchor's
    ``F_i`` scaled by the same factor): capped one by one, k anchors could reach k times the limit and
    diverge silently. Capping keeps the most important weights held by the stiffest spring the
    optimiser can follow instead of letting the loss become NaN.
    """

    name = "ewc"

    def __init__(self, network: nn.Module, anchors: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]],
                 strength: float, max_curvature: float | None = None):
        params = dict(network.named_parameters())
        cap = None if max_curvature is None or strength <= 0 else max_curvature / strength
        scale: dict[str, torch.Tensor | float] = {}
        for n in {n for fisher, _ in anchors for n in fisher}:
            total = sum(fisher[n] for fisher, _ in anchors if n in fisher)
            # one factor per weight for every anchor: their summed stiffness stays within the cap
            scale[n] = 1.0 if cap is None else (cap / total.clamp(min=cap)).clamp(max=1.0)
        # one (parameter, Fisher, anchor) triple per tensor, resolved once instead of every step
        self.terms = [(params[n], fisher[n] * scale[n], anchor[n]) for fisher, anchor in anchors for n in fisher]
        self.strength = strength

    def __call__(self, step: Step) -> torch.Tensor:
        total = sum((f * (p - a).square()).sum() for p, f, a in self.terms)
        return 0.5 * self.strength * total


def stable_curvature(config: TrainConfig) -> float | None:
    """Half the largest curvature SGD with ``config``'s learning rate and momentum follows stably.

    Heavy-ball momentum ``μ`` is stable on a quadratic of curvature ``h`` while ``lr·h < 2(1+μ)``,
    Nesterov's while ``lr·h < 2(1+μ)/(1+2μ)``; half leaves room for the data term's own curvature.
    ``None`` for adaptive optimisers, which rescale steps themselves.
    """
    if config.optimizer != "sgd" or config.lr <= 0:
        return None
    mu = config.momentum
    limit = 2 * (1 + mu) / (1 + 2 * mu) if mu > 0 else 2.0  # owlearn's loop uses Nesterov when μ > 0
    return 0.5 * limit / config.lr


class EWC(Strategy):
    """Elastic weight consolidation, one penalty per past experience.

    Parameters
    ----------
    strength
        ``λ``. Its scale depends on how the Fisher is normalised (here: a mean over images). The penalty
        adds curvature ``λ F_i`` to weight ``i``, so SGD stays stable only while ``lr · λ · max F``
        is of order one (see :func:`stable_curvature`); beyond that each ``λ F_i`` is capped. The
        default 30 was measured on the
        domain-incremental variant (Fashion-MNIST → MNIST-10k split, 12,000 Fashion images, seed 0):
        task-1 accuracy after task 2 0.232 naive, 0.391 / 0.594 / 0.643 with λ = 1 / 10 / 30, task 2
        still learnt (0.98).
    fisher_samples
        Images per experience used for the Fisher (a seeded random subset; ``None``: all).
    """

    name = "ewc"

    def __init__(self, strength: float = 30.0, fisher_samples: int | None = 4000):
        self.strength, self.fisher_samples = strength, fisher_samples
        self._anchors: list[tuple[dict, dict]] = []

    def objectives(self, ctx: Context, exp: Experience, train: ImageDataset) -> list[Objective]:
        objectives: list[Objective] = [CrossEntropy(ctx.config.label_smoothing)]
        if self._anchors:
            objectives.append(EWCPenalty(ctx.network, self._anchors, self.strength, stable_curvature(ctx.config)))
        return objectives

    def after_training(self, ctx: Context, exp: Experience, train: ImageDataset) -> None:
        fisher = diagonal_fisher(ctx.network, train.images, train.labels, max_samples=self.fisher_samples,
                                 seed=ctx.config.seed)
        self._consolidate(fisher, {n: p.detach().clone() for n, p in ctx.network.named_parameters()
                                   if p.requires_grad})

    def _consolidate(self, fisher: dict, anchor: dict) -> None:
        self._anchors.append((fisher, anchor))


class OnlineEWC(EWC):
    """Online EWC: one running Fisher ``F ← γ F + F_new`` anchored at the latest weights."""

    name = "online-ewc"

    def __init__(self, strength: float = 30.0, decay: float = 0.9, fisher_samples: int | None = 4000):
        super().__init__(strength, fisher_samples)
        self.decay = decay

    def _consolidate(self, fisher: dict, anchor: dict) -> None:
        if self._anchors:
            old, _ = self._anchors[0]
            fisher = {n: self.decay * old[n] + f for n, f in fisher.items()}
        self._anchors = [(fisher, anchor)]
