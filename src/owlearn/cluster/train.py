"""IIC training: the objective for the shared training loop, the recipe, and assignment.

The recipe that converges on a 2-core CPU (measured in benchmarks/b5_cluster.py and recorded in
benchmarks/RESULTS.md) differs from a plain reading of the paper in three ways that each matter:
images are shrunk before training (digits keep their shape at 16×16 while the trunk's cost falls
about 3×), every image appears ``repeats`` times per batch with independent augmentations (more
pairs per image to agree on, as in the paper's code), and the first view gets light augmentation
too, so neither view is a privileged "clean" image.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from owlearn.cluster.iic import iic_loss
from owlearn.cluster.model import ClusterNet
from owlearn.data.augment import AugmentConfig, augment_batch
from owlearn.data.dataset import UNLABELED, ImageDataset
from owlearn.nets.network import NetworkSpec, to_float
from owlearn.train.loop import Hook, Step, TrainConfig, Trainer


def iic_views() -> AugmentConfig:
    """The second view: rotation, skew, scale, shift, noise, binarisation, contrast (the write-up's set)."""
    return AugmentConfig(rotate=25, scale=(0.8, 1.2), shear=15, translate=0.1, noise=0.1, binarize=0.2,
                         contrast=0.3)


def light_view() -> AugmentConfig:
    return AugmentConfig(scale=(0.9, 1.1), translate=0.05)


@dataclass
class IICConfig:
    """How to cluster: network, heads, objective and optimisation.

    Attributes
    ----------
    clusters
        Number of clusters of the main head (``k``).
    overclusters
        Clusters of the over-clustering head; ``None`` → ``5 * clusters``, ``0`` → no such head.
    sub_heads
        Sub-heads per head; the best main sub-head is picked by its loss in the last epoch.
    alpha
        Weight of the marginal-entropy terms (1 = plain mutual information). The write-up used 10; here
        α = 10 kept every image's prediction near uniform (about 20% accuracy on MNIST-10k against
        84-90% with α = 1, benchmarks/RESULTS.md), so the default is 1.
    size
        Side length images are resized to before training (``None`` keeps them).
    repeats
        Independent augmented pairs of every image in a batch.
    restart_epochs
        The last ``restart_epochs`` epochs start every main sub-head afresh from the centroids of k-means
        (its own seed) on the trunk's L2-normalised features, then train on with the IIC loss; ``0``
        never restarts. IIC's heads get stuck in partitions that merge two classes and split a third
        (on MNIST: 0 with 6, 1 with 7) while the trunk's features already separate them; the objective
        prefers the right partition but cannot reach it by small steps. The loss still picks the sub-head.
        Applies only when ``epochs`` is larger than ``restart_epochs``.
    self_label_epochs
        Epochs of self-labelling after the ``epochs`` of IIC (Van Gansbeke et al. 2020, SCAN's last step):
        every main sub-head is trained with cross-entropy to give the strongly augmented view of each image
        the cluster its lightly augmented view falls in, wherever that prediction is at least
        ``self_label_threshold`` sure; the clusters are weighted inversely to their share of those images
        in the batch, so a large cluster cannot swallow a small one. A fresh Adam at ``self_label_lr``
        trains trunk and main heads; the over-clustering head rests. IIC's loss of the two views still
        picks the sub-head. ``0`` (default) trains IIC only.
    self_label_threshold
        Probability a sub-head's answer for the light view must reach to make it a training target.
    self_label_lr
        Adam's learning rate while self-labelling (SCAN's 1e-4; 1e-3 made the accuracy wander on MNIST).
    precision
        ``auto`` (bfloat16 autocast on GPUs that support it), ``fp32`` or ``bf16``: see
        :attr:`owlearn.train.TrainConfig.precision`. The joint distribution of the IIC loss is always float32.
    """

    clusters: int = 10
    overclusters: int | None = None
    sub_heads: int = 5
    alpha: float = 1.0
    backbone: str = "convnet"
    backbone_args: dict = field(default_factory=dict)
    size: int | None = 16
    repeats: int = 2
    restart_epochs: int = 5
    epochs: int = 30
    self_label_epochs: int = 0
    self_label_threshold: float = 0.99
    self_label_lr: float = 1e-4
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    view: AugmentConfig = field(default_factory=iic_views)
    first_view: AugmentConfig = field(default_factory=light_view)

    def __post_init__(self) -> None:
        if self.overclusters is None:
            self.overclusters = 5 * self.clusters
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {self.size}")
        if self.restart_epochs < 0:
            raise ValueError(f"restart_epochs must be 0 or more, got {self.restart_epochs}")
        if self.self_label_epochs < 0:
            raise ValueError(f"self_label_epochs must be 0 or more, got {self.self_label_epochs}")
        if not 0 < self.self_label_threshold < 1:
            raise ValueError(f"self_label_threshold must lie between 0 and 1, got {self.self_label_threshold}")
        if self.self_label_lr <= 0:
            raise ValueError(f"self_label_lr must be positive, got {self.self_label_lr}")

    def to_json(self) -> dict:
        data = asdict(self)
        data["view"], data["first_view"] = self.view.to_json(), self.first_view.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> IICConfig:
        data = dict(data)
        data["view"] = AugmentConfig.from_json(data["view"])
        data["first_view"] = AugmentConfig.from_json(data["first_view"])
        return cls(**data)


MIN_STEPS = 1_100
"""Optimisation steps IIC needs at the least. MNIST-10k's 30 epochs are 1,170 steps of 256 images. scikit-learn's
1,797 digits get 7 steps an epoch: 30 epochs of them ended in a few large clusters (0.49 accuracy at 8×8), while
100 epochs of 128 of their 1,438 training images (1,100 steps) reached 0.90."""


def epochs_for(images: int, batch_size: int, at_least: int = 30) -> int:
    """Epochs that give a set of ``images`` at least :data:`MIN_STEPS` steps of ``batch_size`` (and at least
    ``at_least`` epochs).

    Examples
    --------
    >>> epochs_for(10_000, 256), epochs_for(1_797, 128)
    (30, 79)
    """
    steps = max(images // batch_size, 1)
    return max(at_least, -(-MIN_STEPS // steps))


def resize_images(images: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` → uint8 ``(N, C, size, size)`` (or ``(N, C, h, w)`` for ``size=(h, w)``) with
    antialiasing; unchanged if ``None``."""
    if size is None:
        return images
    h, w = (size, size) if isinstance(size, int) else size
    if tuple(images.shape[-2:]) == (h, w):
        return images
    out = []
    for chunk in images.split(4096):
        small = F.interpolate(to_float(chunk), size=(h, w), mode="bilinear", antialias=True,
                              align_corners=False)
        out.append(small.mul_(255).round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


class IICObjective:
    """IIC loss of every sub-head of both heads, for :class:`owlearn.train.Trainer`.

    Each image of the step is repeated ``repeats`` times; each copy gets a light first view and a
    strong second view, and one trunk pass computes the features of all of them. The loss is the
    mean IIC loss over main sub-heads plus the mean over over-clustering sub-heads. Each main
    sub-head's loss is accumulated per epoch (:attr:`epoch_losses`) to choose the best one.
    """

    name = "iic"

    def __init__(self, config: IICConfig):
        self.config = config
        self.epoch_losses = torch.zeros(config.sub_heads)
        self.steps = 0

    def reset(self) -> None:
        self.epoch_losses.zero_()
        self.steps = 0

    def _record(self, losses: torch.Tensor) -> None:
        """Add one step's per-sub-head losses, summed where they are: a copy to the host at every step
        would make it wait for the GPU; the sums are read once, at the end of the epoch."""
        if self.epoch_losses.device != losses.device:
            self.epoch_losses = self.epoch_losses.to(losses.device)
        self.epoch_losses += losses.detach().float()

    def views(self, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """The light and the strong view of every image of the step, each image ``repeats`` times."""
        cfg = self.config
        x = step.x_raw.repeat(cfg.repeats, 1, 1, 1)
        return augment_batch(x, cfg.first_view, step.generator), augment_batch(x, cfg.view, step.generator)

    def __call__(self, step: Step) -> torch.Tensor:
        cfg, model = self.config, step.model
        both = torch.cat(self.views(step)).contiguous(memory_format=torch.channels_last)
        f1, f2 = model.features(both).chunk(2)
        main = [iic_loss(a, b, cfg.alpha) for a, b in zip(model.main(f1), model.main(f2))]
        self._record(torch.stack(main))
        self.steps += 1
        loss = torch.stack(main).mean()
        if model.over is not None:
            over = [iic_loss(a, b, cfg.alpha) for a, b in zip(model.over(f1), model.over(f2))]
            loss = loss + torch.stack(over).mean()
        return loss


class SelfLabelObjective(IICObjective):
    """Self-labelling (:attr:`IICConfig.self_label_epochs`) of every main sub-head, for the training loop.

    Records each sub-head's IIC loss of the same two views, so that the loss keeps choosing the sub-head.
    """

    name = "self-label"

    def __call__(self, step: Step) -> torch.Tensor:
        cfg, model = self.config, step.model
        light, strong = (v.contiguous(memory_format=torch.channels_last) for v in self.views(step))
        heads = model.main.heads  # their logits: ClusterHeads itself answers probabilities
        with torch.no_grad():
            f_light = model.features(light)
            targets = [F.softmax(head(f_light).float(), dim=1) for head in heads]
        f_strong = model.features(strong)
        outputs = [head(f_strong) for head in heads]
        with torch.no_grad():
            self._record(torch.stack([iic_loss(sure, F.softmax(logits.float(), dim=1), cfg.alpha)
                                      for sure, logits in zip(targets, outputs)]))
        self.steps += 1
        return torch.stack([self_label_loss(sure, logits, cfg.self_label_threshold)
                            for sure, logits in zip(targets, outputs)]).mean()


def self_label_loss(target_probs: torch.Tensor, logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Cross-entropy of ``logits`` against the argmax of ``target_probs`` on the rows where its maximum is at
    least ``threshold``, each cluster weighted by the inverse of its share of those rows (SCAN's
    self-labelling loss); zero, still attached to ``logits``, when no row is that sure."""
    if target_probs.device.type != "cpu":  # the branch and the masked rows below would wait for the GPU
        return masked_self_label_loss(target_probs, logits, threshold)
    confidence, target = target_probs.max(dim=1)
    sure = confidence >= threshold
    if not bool(sure.any()):
        return logits.sum() * 0.0
    target = target[sure]
    counts = torch.bincount(target, minlength=logits.shape[1]).float()
    weight = torch.where(counts > 0, len(target) / counts.clamp_min(1), torch.zeros_like(counts))
    return F.cross_entropy(logits[sure].float(), target, weight=weight)


def masked_self_label_loss(target_probs: torch.Tensor, logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """:func:`self_label_loss` without reading anything back from the device: every row enters the sums, the
    unsure ones with weight 0."""
    confidence, target = target_probs.max(dim=1)
    sure = (confidence >= threshold).float()
    counts = torch.bincount(target, weights=sure, minlength=logits.shape[1])
    weight = torch.where(counts > 0, sure.sum() / counts.clamp_min(1), torch.zeros_like(counts))
    per_row = F.cross_entropy(logits.float(), target, weight=weight, reduction="none")  # weight[t] * CE
    return (per_row * sure).sum() / (weight[target] * sure).sum().clamp_min(1e-12)


class _ChooseBestHead(Hook):
    """Resets the per-head losses each epoch and records them; the lowest picks ``best_head``."""

    def __init__(self, objective: IICObjective, on_epoch=None):
        self.objective = objective
        self.on_epoch = on_epoch
        self.head_losses: list[list[float]] = []

    def on_epoch_start(self, trainer, epoch):
        self.objective.reset()

    def on_epoch_end(self, trainer, epoch, logs):
        losses = (self.objective.epoch_losses / max(self.objective.steps, 1)).tolist()
        self.head_losses.append(losses)
        trainer.model.best_head.fill_(int(np.argmin(losses)))
        logs["head_losses"] = losses
        logs["best_head"] = int(np.argmin(losses))
        if self.on_epoch is not None:
            self.on_epoch(trainer, epoch, logs)


class _RestartHeadsFromKMeans(Hook):
    """At the start of epoch ``at``, sets each main sub-head ``i`` to nearest-centroid logits of k-means
    (seed ``seed + i``) on the trunk's L2-normalised features of ``images`` (at most 20,000 of them),
    and clears the optimiser's state of the heads' parameters."""

    SAMPLE = 20_000
    SHARPNESS = 10.0  # logits = SHARPNESS * cosine to each centroid (for a feature of median norm)

    def __init__(self, images: torch.Tensor, at: int, seed: int):
        self.images, self.at, self.seed = images, at, seed

    def on_epoch_start(self, trainer, epoch):
        if epoch != self.at:
            return
        from sklearn.cluster import KMeans

        model = getattr(trainer.model, "module", trainer.model)
        some = self.images
        if len(some) > self.SAMPLE:
            g = torch.Generator().manual_seed(self.seed)
            some = some[torch.randperm(len(some), generator=g)[:self.SAMPLE].sort().values]
        device = next(model.parameters()).device
        model.eval()
        with torch.no_grad():
            feats = torch.cat([model.features(to_float(chunk.to(device)).contiguous(memory_format=torch.channels_last))
                               .float().cpu() for chunk in some.split(1024)])
        model.train()
        scale = self.SHARPNESS / float(feats.norm(dim=1).median().clamp_min(1e-12))
        unit = F.normalize(feats, dim=1).numpy()
        for i, head in enumerate(model.main.heads):
            km = KMeans(model.clusters, n_init=1, random_state=self.seed + i).fit(unit)
            centroids = F.normalize(torch.from_numpy(km.cluster_centers_).float(), dim=1)
            with torch.no_grad():
                head.weight.copy_(scale * centroids.to(head.weight))
                head.bias.zero_()
            for p in head.parameters():
                trainer.optimizer.state.pop(p, None)  # Adam's moments belonged to the old head


@dataclass
class ClusterResult:
    """A trained clustering network and how it got there."""

    model: ClusterNet
    config: IICConfig
    history: list[dict]
    seconds: float

    @property
    def best_head(self) -> int:
        return int(self.model.best_head)


def build_cluster_net(data: ImageDataset, config: IICConfig) -> ClusterNet:
    c = data.images.shape[1]
    # the images' own height and width unless a size is set: a network trained on 16 x 24 images must be
    # given 16 x 24 images when it assigns clusters, not 24 x 24
    h, w = (config.size, config.size) if config.size else tuple(data.images.shape[-2:])
    from owlearn.api import channel_stats

    mean, std = channel_stats(resize_images(data.images[:5000], config.size))
    spec = NetworkSpec(config.backbone, "linear", config.clusters, (c, h, w), mean=mean, std=std,
                       backbone_args=config.backbone_args)
    torch.manual_seed(config.seed)
    return ClusterNet(spec, config.clusters, config.overclusters or 0, config.sub_heads)


def fit_iic(data: ImageDataset, config: IICConfig | None = None, *, progress: bool = True,
            on_epoch=None, checkpoint_dir=None) -> ClusterResult:
    """Cluster ``data`` (labels ignored) with IIC; returns the trained network.

    ``on_epoch(trainer, epoch, logs)`` is called after every epoch (e.g. to evaluate against labels
    for a learning curve: the labels never reach the objective or the head choice).

    Examples
    --------
    >>> from owlearn.data.sources import load_dataset
    >>> digits = load_dataset("digits", "train")
    >>> result = fit_iic(digits, IICConfig(epochs=1, size=8, sub_heads=1, batch_size=64), progress=False)
    >>> assign(result.model, digits).shape == (len(digits),)
    True
    """
    config = config or IICConfig()
    model = build_cluster_net(data, config)
    unlabeled = ImageDataset(resize_images(data.images, config.size),
                             torch.full((len(data),), UNLABELED, dtype=torch.long), data.class_names, name=data.name)
    objective = IICObjective(config)
    hooks: list[Hook] = [_ChooseBestHead(objective, on_epoch)]
    if 0 < config.restart_epochs < config.epochs:
        hooks.insert(0, _RestartHeadsFromKMeans(unlabeled.images, config.epochs - config.restart_epochs, config.seed))
    start = time.perf_counter()
    trainer = Trainer(model, _phase_config(config, config.epochs, config.lr), objectives=[objective], hooks=hooks,
                      progress=progress, checkpoint_dir=checkpoint_dir)
    history = trainer.fit(unlabeled).epochs
    if config.self_label_epochs:
        def after_iic(trainer, epoch, logs):  # the phase's epochs continue the count
            logs["epoch"] = config.epochs + epoch + 1
            if on_epoch is not None:
                on_epoch(trainer, config.epochs + epoch, logs)

        labeller = SelfLabelObjective(config)
        trainer = Trainer(model, _phase_config(config, config.self_label_epochs, config.self_label_lr),
                          objectives=[labeller], hooks=[_ChooseBestHead(labeller, after_iic)], progress=progress,
                          checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / "self-label")
        history = history + trainer.fit(unlabeled).epochs
    return ClusterResult(model=trainer.model, config=config, history=history, seconds=time.perf_counter() - start)


def _phase_config(config: IICConfig, epochs: int, lr: float) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=config.batch_size, optimizer="adam", lr=lr, weight_decay=0.0,
                       schedule="constant", seed=config.seed, device=config.device,
                       precision=config.precision)  # type: ignore[arg-type]


@torch.inference_mode()
def cluster_probabilities(model: ClusterNet, data: ImageDataset | torch.Tensor, *, head: int | None = None,
                          batch_size: int = 1024, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Cluster probabilities ``(N, k)`` of one main sub-head (default: the chosen best)."""
    images = data.images if isinstance(data, ImageDataset) else data
    size = size if size is not None else tuple(model.spec.in_shape[-2:])
    head = int(model.best_head) if head is None else head
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for chunk in images.split(batch_size):
            x = to_float(resize_images(chunk, size).to(device)).contiguous(memory_format=torch.channels_last)
            out.append(F.softmax(model.main.heads[head](model.features(x)), dim=1).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.clusters)


def assign(model: ClusterNet, data: ImageDataset | torch.Tensor, *, head: int | None = None) -> np.ndarray:
    """Cluster index of every image (argmax of the chosen sub-head)."""
    return cluster_probabilities(model, data, head=head).argmax(1).numpy()


def all_head_assignments(model: ClusterNet, data: ImageDataset) -> list[np.ndarray]:
    """Cluster index of every image under every main sub-head (one trunk pass)."""
    size = tuple(model.spec.in_shape[-2:])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts: list[list[np.ndarray]] = [[] for _ in range(len(model.main))]
    try:
        with torch.inference_mode():
            for chunk in data.images.split(1024):
                x = to_float(resize_images(chunk, size).to(device)).contiguous(memory_format=torch.channels_last)
                for i, p in enumerate(model.main(model.features(x))):
                    parts[i].append(p.argmax(1).cpu().numpy())
    finally:
        model.train(was_training)
    return [np.concatenate(p) for p in parts]
