"""Finding groups in unlabeled images: Invariant Information Clustering (IIC)."""

from typing import TYPE_CHECKING

from owlearn._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {"iic": ("iic_loss", "joint_distribution")})

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name is imported on first use
    from owlearn.cluster.iic import iic_loss, joint_distribution
