"""Finding groups in unlabeled images: Invariant Information Clustering (IIC)."""

from owlearn.cluster.iic import iic_loss, joint_distribution

__all__ = ["iic_loss", "joint_distribution"]
