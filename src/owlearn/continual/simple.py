"""The bounds and the statistics-only strategy: naive fine-tuning, joint training, Gaussian.

* Naive fine-tuning (:class:`owlearn.continual.base.Strategy`) is the lower bound: it forgets.
* Joint training sees every experience's data at once: the upper bound, not a continual learner.
* The Gaussian strategy trains the network on the first experience only; every later class is added
  to a :class:`~owlearn.space.GaussianClassifier` in feature space from its statistics alone, with no
  gradient step, so nothing learnt before can be overwritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from owlearn.continual.base import Context, Strategy
from owlearn.continual.scenarios import Experience
from owlearn.data.dataset import ImageDataset
from owlearn.train.loop import batched_forward

if TYPE_CHECKING:  # scikit-learn (under the classifier) is imported only when the strategy runs
    from owlearn.space.gaussian import GaussianClassifier

Naive = Strategy
# images per feature pass and classification in GaussianStrategy.predict: the float64 temporaries of
# classifying a chunk are about 10 KB an image (SimpleNet's 320-d features), 5 MB for 512 images
PREDICT_CHUNK = 512


class Joint(Strategy):
    """Train once on the data of all experiences together (after the last one arrives).

    Only the final row of its accuracy matrix is measured: before the last experience it has not trained.
    """

    name = "joint"
    final_only = True

    def trains_on(self, ctx: Context, exp: Experience) -> bool:
        return exp.index == len(ctx.scenario) - 1

    def training_set(self, ctx: Context, exp: Experience) -> ImageDataset:
        return ctx.scenario.train_upto(exp.index) if self.trains_on(ctx, exp) else exp.train


class GaussianStrategy(Strategy):
    """Train on the first experience, then grow a shared-covariance Gaussian classifier by statistics.

    Classes seen again later (domain-incremental streams) have their statistics updated exactly with
    the new images (:meth:`GaussianClassifier.update_class`).

    Which features: a network trained on two classes has squeezed its last feature layer into what
    tells those two apart; the layer below is more general. On B4 (SimpleNet after experience 1, seed 0)
    the Gaussian classifier reaches 0.718 on the 50-d output features and 0.831 on the 320-d pooled
    conv maps that feed them (with the square-root transform).

    Parameters
    ----------
    layer
        ``"pre-fc"`` (default): the input of the backbone's last linear layer (SimpleNet's 320-d conv
        maps; backbones without one use their output); ``"features"``: the backbone's output.
    power
        Features are raised to this power (sign kept) before the Gaussian fit: 0.5, Tukey's
        square root, makes skewed non-negative ReLU features more Gaussian (Yang et al. 2021); 1 = off.
    shrinkage
        Covariance shrinkage of the classifier (``"auto"``: Oracle Approximating Shrinkage).
    """

    name = "gaussian"

    def __init__(self, layer: str = "pre-fc", power: float = 0.5, shrinkage: float | str = "auto"):
        if layer not in ("pre-fc", "features"):
            raise ValueError(f"layer must be 'pre-fc' or 'features', got {layer!r}")
        self.layer, self.power, self.shrinkage = layer, power, shrinkage
        self._classifier: GaussianClassifier | None = None
        self._labels: list[int] = []  # the classifier's label i is the scenario's class _labels[i]

    def trains_on(self, ctx: Context, exp: Experience) -> bool:
        return exp.index == 0

    def after_training(self, ctx: Context, exp: Experience, train: ImageDataset) -> None:
        names = ctx.scenario.class_names
        for c in exp.classes:
            # one class's features at a time: the experience's whole feature matrix is never held
            class_feats = None  # nor two classes' at once, while the next one's are extracted
            class_feats = self.features(ctx, exp.train.images[exp.train.labels == c])
            if self._classifier is None:
                from owlearn.space.gaussian import GaussianClassifier

                self._classifier = GaussianClassifier(shrinkage=self.shrinkage)
            if c in self._labels:
                self._classifier.update_class(self._labels.index(c), class_feats)
            else:
                self._classifier.add_class(class_feats, name=names[c])
                self._labels.append(c)

    @torch.inference_mode()
    def predict(self, ctx: Context, images: torch.Tensor) -> torch.Tensor:
        if self._classifier is None:
            return super().predict(ctx, images)
        labels = torch.tensor(self._labels)
        # in chunks, so that the features of a whole test set and their float64 whitening are never held at once
        return torch.cat([labels[torch.from_numpy(self._classifier.predict(self.features(ctx, chunk)))]
                          for chunk in images.split(PREDICT_CHUNK)])

    def features(self, ctx: Context, images: torch.Tensor) -> torch.Tensor:
        """The features the classifier works on (see ``layer`` and ``power``), on the CPU."""
        return layer_features(ctx, images, self.layer, self.power)

    @property
    def classifier(self) -> GaussianClassifier | None:
        return self._classifier


def layer_features(ctx: Context, images: torch.Tensor, layer: str, power: float) -> torch.Tensor:
    """Features of ``images`` on the CPU for a feature-space classifier: the backbone's output
    (``layer="features"``) or the input of its last linear layer (``"pre-fc"``; backbones without one
    give their output), each entry raised to ``power`` with its sign kept."""
    pre_fc = layer == "pre-fc" and hasattr(ctx.network, "backbone") and \
        any(isinstance(m, nn.Linear) for m in ctx.network.backbone.modules())
    of_layer = input_of_last_linear if pre_fc else (lambda network, x: network.features(x))
    if power == 1:
        return batched_forward(ctx.network, images, ctx.config.eval_batch_size, fn=of_layer)

    def powered(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # batch by batch: the transform of the whole feature matrix would need a temporary of its size
        feats = of_layer(network, x)
        return feats.abs().pow_(power).copysign_(feats)

    return batched_forward(ctx.network, images, ctx.config.eval_batch_size, fn=powered)


def input_of_last_linear(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the backbone's last linear layer reads, flattened."""
    last = [m for m in network.backbone.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda m, inputs, out: captured.append(inputs[0]))
    try:
        network.features(x)
    finally:
        handle.remove()
    return captured[0].flatten(1)
