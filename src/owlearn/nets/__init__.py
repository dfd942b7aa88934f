"""Networks: backbones (image → features) and heads (features → logits)."""

from owlearn.nets.backbones import BACKBONES, ConvNet, ResNet18, SimpleNet
from owlearn.nets.heads import HEADS, CosineHead, L2SoftmaxHead, LinearHead
from owlearn.nets.network import Network, NetworkSpec, to_float

__all__ = [
    "BACKBONES", "HEADS", "ConvNet", "CosineHead", "L2SoftmaxHead", "LinearHead", "Network",
    "NetworkSpec", "ResNet18", "SimpleNet", "to_float",
]
