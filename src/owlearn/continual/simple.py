"""The bounds and the statistics-only strategy: naive fine-tuning, joint training, Gaussian.

* Naive fine-tuning (:class:`owlearn.continual.base.Strategy`) is the lower bound: it forgets.
* Joint training sees every experience's data at once: the upper bound, not a continual learner.
* The Gaussian strategy trains the network on the first experience only; every later class is added
  to a :class:`~owlearn.space.GaussianClassifier` in feature space from its statistics alone, with no
  gradient step, so nothing learnt before can be overwritten.
"""

from __future__ import annotations

import torch

from owlearn.continual.base import Context, Strategy
from owlearn.continual.scenarios import Experience
from owlearn.data.dataset import ImageDataset
from owlearn.space.gaussian import GaussianClassifier
from owlearn.train.loop import extract_features

Naive = Strategy


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

    Parameters
    ----------
    shrinkage
        Covariance shrinkage of the classifier (``"auto"``: Oracle Approximating Shrinkage).
    """

    name = "gaussian"

    def __init__(self, shrinkage: float | str = "auto"):
        self.shrinkage = shrinkage
        self._classifier: GaussianClassifier | None = None
        self._labels: list[int] = []  # the classifier's label i is the scenario's class _labels[i]

    def trains_on(self, ctx: Context, exp: Experience) -> bool:
        return exp.index == 0

    def after_training(self, ctx: Context, exp: Experience, train: ImageDataset) -> None:
        feats = extract_features(ctx.network, exp.train, ctx.config.eval_batch_size)
        names = ctx.scenario.class_names
        for c in exp.classes:
            class_feats = feats[exp.train.labels == c]
            if self._classifier is None:
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
        feats = extract_features(ctx.network, images, ctx.config.eval_batch_size)
        return torch.tensor(self._labels)[torch.from_numpy(self._classifier.predict(feats))]

    @property
    def classifier(self) -> GaussianClassifier | None:
        return self._classifier
