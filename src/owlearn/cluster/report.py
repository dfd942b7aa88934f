"""Saving a clustering network, and what a user looks at after clustering: scores, P, contact sheets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from owlearn._atomic import atomic_open
from owlearn.cluster.iic import joint_distribution
from owlearn.cluster.model import ClusterNet
from owlearn.cluster.train import IICConfig, all_head_assignments, cluster_probabilities
from owlearn.data.augment import augment_batch
from owlearn.data.dataset import ImageDataset
from owlearn.metrics import ari, confusion_matrix, hungarian_accuracy, nmi
from owlearn.nets.network import NetworkSpec

FORMAT = "owlearn-cluster/1"


def save_cluster_net(model: ClusterNet, config: IICConfig, folder: str | Path) -> Path:
    """Write ``cluster.safetensors`` and ``cluster.json`` into ``folder`` (each atomically)."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_open(folder / "cluster.safetensors", "wb") as fh:
        fh.write(save_tensors(tensors))
    header = {"format": FORMAT, "spec": model.spec.to_json(), "config": config.to_json(),
              "best_head": int(model.best_head)}
    with atomic_open(folder / "cluster.json", "w") as fh:
        json.dump(header, fh, indent=2)
    return folder / "cluster.json"


def load_cluster_net(folder: str | Path) -> tuple[ClusterNet, IICConfig]:
    """Read what :func:`save_cluster_net` wrote (no unpickling)."""
    folder = Path(folder)
    header_path = folder / "cluster.json"
    if not header_path.exists():
        raise FileNotFoundError(f"{header_path} not found: is {folder} the output folder of `owlearn cluster`?")
    header = json.loads(header_path.read_text())
    if header.get("format") != FORMAT:
        raise ValueError(f"{header_path}: expected format {FORMAT!r}, found {header.get('format')!r}")
    config = IICConfig.from_json(header["config"])
    model = ClusterNet(NetworkSpec.from_json(header["spec"]), config.clusters, config.overclusters or 0,
                       config.sub_heads)
    model.load_state_dict(load_tensors((folder / "cluster.safetensors").read_bytes()))
    model.eval()
    return model, config


def cluster_scores(labels: np.ndarray, assignments: list[np.ndarray], chosen: int) -> dict:
    """Hungarian accuracy, NMI and ARI of the chosen sub-head; accuracy of every sub-head."""
    accs = [hungarian_accuracy(labels, a)[0] for a in assignments]
    return {"accuracy": accs[chosen], "nmi": nmi(labels, assignments[chosen]), "ari": ari(labels, assignments[chosen]),
            "chosen_head": chosen, "sub_head_accuracies": accs, "best_sub_head_accuracy": max(accs),
            "mean_sub_head_accuracy": float(np.mean(accs))}


@torch.inference_mode()
def view_joint(model: ClusterNet, data: ImageDataset, config: IICConfig, max_images: int = 4096,
               seed: int = 0) -> np.ndarray:
    """IIC's joint distribution ``P`` (k × k) of the chosen head over clean and augmented views."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:max_images]
    images = data.images[idx]
    p1 = cluster_probabilities(model, images)
    from owlearn.cluster.train import resize_images
    from owlearn.nets.network import to_float

    x = to_float(resize_images(images, tuple(model.spec.in_shape[-2:])))
    aug = (augment_batch(x, config.view, g) * 255).round().to(torch.uint8)
    p2 = cluster_probabilities(model, aug)
    return joint_distribution(p1, p2).numpy()


def write_cluster_report(model: ClusterNet, config: IICConfig, data: ImageDataset, folder: str | Path,
                         *, per_cluster: int = 36) -> dict:
    """Scores (when ``data`` has labels), P, matched confusion matrix and one contact sheet per cluster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from owlearn.viz import contact_sheet, plot_confusion_matrix

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    assignments = all_head_assignments(model, data)
    chosen = int(model.best_head)
    clusters = assignments[chosen]
    summary: dict = {"images": len(data), "clusters": config.clusters, "chosen_head": chosen,
                     "cluster_sizes": np.bincount(clusters, minlength=config.clusters).tolist()}
    labelled = data.labels.numpy() >= 0
    if labelled.all() and len(data.class_names) > 0:
        labels = data.labels.numpy()
        summary.update(cluster_scores(labels, assignments, chosen))
        _, mapping = hungarian_accuracy(labels, clusters)
        mapped = np.array([mapping.get(int(c), -1) for c in clusters])
        k = len(data.class_names)
        matched = mapped >= 0  # with more clusters than classes, the surplus ones match no class
        cm = confusion_matrix(labels[matched], mapped[matched], k)
        plot_confusion_matrix(cm, data.class_names, folder / "confusion_matched.png",
                              title="clusters matched to classes (Hungarian)")
        summary["mapping"] = {int(c): data.class_names[m] if m >= 0 else None for c, m in mapping.items()}
        summary["unmatched_images"] = int((~matched).sum())
    joint = view_joint(model, data, config)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(joint, cmap="viridis")
    ax.set_xlabel("cluster of augmented view")
    ax.set_ylabel("cluster of image")
    ax.set_title("IIC joint distribution P")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(folder / "joint_P.png", dpi=120)
    plt.close(fig)
    sheets = folder / "clusters"
    rng = np.random.default_rng(0)
    for c in range(config.clusters):
        members = np.flatnonzero(clusters == c)
        if len(members) == 0:
            continue
        pick = rng.choice(members, size=min(per_cluster, len(members)), replace=False)
        contact_sheet(data.images[torch.as_tensor(pick)].numpy(), sheets / f"cluster-{c:02d}.png")
    with atomic_open(folder / "metrics.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary
