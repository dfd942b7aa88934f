"""Virtual Adversarial Training (Miyato et al. 2018) as an objective of the training loop.

VAT asks the prediction for ``x`` to stay the same under the small perturbation ``r_adv`` that would
change it most. ``r_adv`` is found without labels, so VAT also learns from unlabeled images: starting
from a random unit direction ``d``, power iteration replaces ``d`` by the normalised gradient of
``KL(p(y|x) ‖ p(y|x + ξd))`` with respect to ``d``; then ``r_adv = ε d``. The loss is
``KL(p(y|x) ‖ p(y|x + r_adv))`` with no gradient through the clean prediction ``p(y|x)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

# The power iteration's finite-difference step. The paper's ξ = 1e-6 assumes exact arithmetic: in float32
# a step of 1e-6 along a unit direction over a 28×28 image moves each pixel by about 4e-8, which the input
# normalisation rounds to one or two units in the last place, so the direction found is mostly rounding
# noise (cosine 0.11 to the float64 power iteration, on a ConvNet trained briefly on Fashion-MNIST).
# ξ = 1e-2 (pixels in [0, 1]) is resolved in float32 and still local: cosine 0.975 to the float64 direction
# at ξ = 1e-6, against 0.89 at ξ = 0.1 and 0.43 at ξ = 1.
DEFAULT_XI = 1e-2

# The perturbation's L2 radius on [0, 1] pixels: 8 won benchmark B6's selection on held-out Fashion-MNIST
# images (28×28) over 2.5, 5, 12 and 16; `owlearn train --vat-eps` has the same default. The radius scales
# with the square root of the pixel count, so other image sizes may want another.
DEFAULT_EPS = 8.0


def _unit(d: torch.Tensor) -> torch.Tensor:
    """Each sample's perturbation scaled to unit L2 norm (a sample whose ``d`` is all zero stays zero).

    Divides by the largest entry first, as Miyato et al.'s own code does: the power iteration's gradient is
    of the order of ξ² (1e-12 for ξ = 1e-6), and a norm taken directly, with a floor against division by
    zero, would take that floor for the norm and return a direction of norm far below one."""
    flat = d.flatten(1)
    flat = flat / flat.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)  # ≥ 1 unless the row is all zero
    return flat.view_as(d)


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Perturbed inputs must not move BatchNorm's running statistics: freeze them for the block."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in saved:
            m.momentum = momentum


def _kl(clean_logits: torch.Tensor, perturbed_logits: torch.Tensor) -> torch.Tensor:
    """Mean over samples of KL(p_clean ‖ p_perturbed)."""
    p = F.softmax(clean_logits, dim=1)
    return (p * (F.log_softmax(clean_logits, dim=1) - F.log_softmax(perturbed_logits, dim=1))).sum(1).mean()


def adversarial_direction(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                          clean_logits: torch.Tensor, *, xi: float = DEFAULT_XI, iterations: int = 1,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Unit direction (per sample) in which the prediction for ``x`` changes fastest, by power iteration.

    Under bfloat16 autocast the iteration runs in float32 against a float32 clean prediction: bf16 would
    round the ξ-sized step away, and the rounding difference between a bf16 clean prediction and the
    perturbed one would outweigh the change that the step causes."""
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False), torch.no_grad():
            clean32 = forward(x.float()).float()
        with torch.autocast(x.device.type, enabled=False):
            return adversarial_direction(forward, x.float(), clean32, xi=xi, iterations=iterations,
                                         generator=generator)
    clean = clean_logits.detach()
    d = _unit(torch.randn(x.shape, generator=generator).to(x.device, x.dtype))
    for _ in range(iterations):
        d.requires_grad_(True)
        distance = _kl(clean, forward(x + xi * d))
        (grad,) = torch.autograd.grad(distance, d)
        d = _unit(grad.detach())
    return d


def vat_loss(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, clean_logits: torch.Tensor, *,
             eps: float = DEFAULT_EPS, xi: float = DEFAULT_XI, iterations: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """``KL(p(y|x) ‖ p(y|x + ε d_adv))``, no gradient through the clean prediction.

    ``forward`` maps inputs to logits; ``x`` are the inputs it takes (normalised or not, consistently
    with ``eps``, which is an L2 radius per sample in that input space).
    """
    d = adversarial_direction(forward, x, clean_logits, xi=xi, iterations=iterations, generator=generator)
    return _kl(clean_logits.detach(), forward(x + eps * d))


class VAT:
    """Objective for :class:`owlearn.train.Trainer`: weight · VAT loss on every image of the step.

    Labelled and unlabeled images alike (labels are not used); optionally plus entropy minimisation
    of the predictions (``entropy_weight``), as in the VAT paper's "VAT + EntMin".
    """

    name = "vat"

    def __init__(self, weight: float = 1.0, eps: float = DEFAULT_EPS, xi: float = DEFAULT_XI, iterations: int = 1,
                 entropy_weight: float = 0.0):
        self.weight, self.eps, self.xi, self.iterations = weight, eps, xi, iterations
        self.entropy_weight = entropy_weight

    def __call__(self, step) -> torch.Tensor:
        model = step.model
        with frozen_batchnorm_stats(model):
            loss = vat_loss(model, step.x, step.logits, eps=self.eps, xi=self.xi, iterations=self.iterations,
                            generator=step.generator)
        total = self.weight * loss
        if self.entropy_weight:
            p = F.softmax(step.logits, dim=1)
            total = total + self.entropy_weight * -(p * F.log_softmax(step.logits, dim=1)).sum(1).mean()
        return total
