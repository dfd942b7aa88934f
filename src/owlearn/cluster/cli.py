"""``owlearn cluster``: find groups in unlabeled images with IIC."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from owlearn._options import DATA_DIR_OPTION, PRECISION_OPTION, check_device, check_output_folder

console = Console()


def cluster(
    data: str = typer.Argument(..., help="Dataset name (see `owlearn data list`) or a folder of images: unlabeled "
                                         "ones directly in it, or one sub-folder per class (labels then score "
                                         "the clusters)."),
    split: str = typer.Option("all", help="Which split to cluster (train, test or all)."),
    clusters: int = typer.Option(10, min=2, help="Clusters of the main head (k)."),
    overclusters: int | None = typer.Option(None, min=0, help="Clusters of the over-clustering head "
                                                                "(default 5k; 0 turns it off)."),
    sub_heads: int = typer.Option(5, min=1, help="Sub-heads per head; the best is chosen by its loss."),
    alpha: float = typer.Option(1.0, min=0.0, help="Weight of the marginal-entropy terms (1 = mutual information)."),
    size: int = typer.Option(16, min=0, max=256,
                             help="Side images are resized to before training (0 keeps it; a folder of images of "
                                  "different sizes needs one)."),
    repeats: int = typer.Option(2, min=1, help="Augmented pairs of every image per batch."),
    epochs: int | None = typer.Option(
        None, min=1, help="Passes over the images (default: 30, or as many as give a small set 1,100 steps)."),
    restart_epochs: int = typer.Option(
        5, min=0, help="The last N epochs restart every main sub-head from k-means on the trunk's features "
                       "(escapes partitions that merge two classes; 0 never restarts)."),
    self_label_epochs: int = typer.Option(
        0, min=0, help="Epochs of self-labelling after the IIC epochs: each sub-head learns to give a strongly "
                       "augmented image the cluster it is sure of for a lightly augmented copy (0: none)."),
    self_label_threshold: float = typer.Option(
        0.99, min=0.0, max=1.0, help="How sure a sub-head must be of an image for it to be a self-labelling target."),
    self_label_lr: float = typer.Option(1e-4, min=0.0, help="Adam learning rate while self-labelling."),
    batch_size: int = typer.Option(256, min=2, help="Images per step (before repeats)."),
    lr: float = typer.Option(1e-3, min=0.0, help="Adam learning rate."),
    limit: int | None = typer.Option(None, min=1, help="Cluster only the first N images."),
    out: Path = typer.Option(Path("owlearn-cluster"), "--out", "-o", help="Output folder."),
    seed: int = typer.Option(0, help="Seed of initialisation, shuffling and augmentation."),
    device: str = typer.Option("auto", help="auto, cpu, cuda …"),
    precision: str = PRECISION_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Cluster images without labels (IIC) and write the network, scores, P and a contact sheet per cluster.

    Labels, when the dataset has them, are used only at the end to score the clusters (Hungarian
    accuracy, NMI, ARI). Example: `owlearn cluster mnist --split test --epochs 30`.
    """
    import torch

    from owlearn.cluster.report import save_cluster_net, write_cluster_report
    from owlearn.cluster.train import IICConfig, epochs_for, fit_iic
    from owlearn.data.sources import is_image_folder, load_dataset

    check_device(device)  # before the data is loaded
    check_output_folder(out, "--out")
    # a folder's images are resized as they are read, so that they need not share one size
    options = {"size": (size, size)} if size and is_image_folder(data) else {}
    dataset = load_dataset(data, split, data_dir=data_dir, **options)
    if limit:
        dataset = dataset.subset(torch.arange(min(limit, len(dataset))))
    if clusters > len(dataset):
        raise typer.BadParameter(f"{clusters} clusters of {len(dataset)} images: ask for fewer clusters or use "
                                 "more images", param_hint="--clusters")
    batch_size = min(batch_size, len(dataset))
    epochs = epochs or epochs_for(len(dataset), batch_size)
    config = IICConfig(clusters=clusters, overclusters=overclusters, sub_heads=sub_heads, alpha=alpha,
                       size=size or None, repeats=repeats, epochs=epochs, restart_epochs=restart_epochs,
                       self_label_epochs=self_label_epochs, self_label_threshold=self_label_threshold,
                       self_label_lr=self_label_lr, batch_size=batch_size,
                       lr=lr, seed=seed, device=device, precision=precision)
    console.print(f"Clustering {len(dataset):,} images of {escape(dataset.name)} into {clusters} groups "
                  f"(IIC, α={alpha:g}, {sub_heads} sub-heads, {epochs} epochs)")
    result = fit_iic(dataset, config, progress=progress)
    save_cluster_net(result.model, config, out)
    summary = write_cluster_report(result.model, config, dataset, out)
    if "accuracy" in summary:
        console.print(f"accuracy after matching clusters to classes [bold]{summary['accuracy']:.4f}[/bold], "
                      f"NMI {summary['nmi']:.3f}, ARI {summary['ari']:.3f} (sub-head {summary['chosen_head']}, "
                      f"chosen by its loss)")
    console.print(f"cluster sizes: {summary['cluster_sizes']}")
    console.print(f"Written to [bold]{escape(str(out))}[/bold]: cluster.safetensors/json, metrics.json, joint_P.png, "
                  f"clusters/cluster-NN.png. Training took {result.seconds:.0f} s.")
