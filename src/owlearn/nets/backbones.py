"""Backbones: networks that map an image batch to feature vectors.

Every backbone takes float images ``(N, C, H, W)`` already normalised by the model's preprocessing
and returns features ``(N, D)``; ``feature_dim`` is ``D``. The classification head is separate
(:mod:`owlearn.nets.heads`) so that feature-space methods can swap or drop it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SimpleNet(nn.Module):
    """The small network of the EWC write-up.

    conv(C→10, k5) → maxpool2 → relu → conv(10→20, k5) → maxpool2 → relu → fc(→50) → relu.
    The classifier head (fc 50→K) sits on top of these 50-d features.

    Examples
    --------
    >>> net = SimpleNet(in_shape=(1, 28, 28))
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 50])
    """

    def __init__(self, in_shape: tuple[int, int, int] = (1, 28, 28), feature_dim: int = 50):
        super().__init__()
        c, h, w = in_shape
        if min(h, w) < 16:
            raise ValueError(f"SimpleNet needs images of at least 16×16 pixels, got {h}×{w}; the convnet backbone "
                             f"takes smaller ones")
        self.conv1 = nn.Conv2d(c, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        flat_h, flat_w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        self.fc = nn.Linear(20 * flat_h * flat_w, feature_dim)  # 320 for 28×28
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (N, 10, 12, 12) for 28×28
        x = F.relu(F.max_pool2d(self.conv2(x), 2))  # (N, 20, 4, 4)
        return F.relu(self.fc(x.flatten(1)))  # (N, 50)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each stage: two feature maps and the final feature vector."""
        a = F.relu(F.max_pool2d(self.conv1(x), 2))
        b = F.relu(F.max_pool2d(self.conv2(a), 2))
        return [a, b, F.relu(self.fc(b.flatten(1)))]


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ConvNet(nn.Module):
    """Four conv3×3+BN+ReLU blocks (32, 64, 128, 256), max-pool after the first three, global average pool.

    The trunk of the IIC write-up; 256-d features.

    Examples
    --------
    >>> ConvNet(in_shape=(1, 28, 28))(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 256])
    """

    def __init__(self, in_shape: tuple[int, int, int] = (1, 28, 28), widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_shape[0]
        for i, width in enumerate(widths):
            layers += _conv_bn_relu(c, width)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))  # global average pool → (N, 256)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map after each block's ReLU (before its max-pool), ``[(N, 32, 28, 28), ...]``."""
        maps = []
        for layer in self.body:
            if isinstance(layer, nn.MaxPool2d):
                maps.append(x)
            x = layer(x)
        return [*maps, x]


class _BasicBlock(nn.Module):
    fusable_pairs = (("conv1", "bn1"), ("conv2", "bn2"))  # forward applies each batch norm right after its conv

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3×3 conv, stride 1, no max-pool); 512-d features.

    Examples
    --------
    >>> ResNet18(in_shape=(3, 32, 32))(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 512])
    """

    def __init__(self, in_shape: tuple[int, int, int] = (3, 32, 32), width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(in_shape[0], width))
        blocks: list[nn.Module] = []
        c = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            for i in range(2):
                blocks.append(_BasicBlock(c, c_out, stride=2 if stage > 0 and i == 0 else 1))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map after each of the four stages (two basic blocks each)."""
        x = self.stem(x)
        maps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i % 2 == 1:
                maps.append(x)
        return maps


BACKBONES: dict[str, type[nn.Module]] = {"simplenet": SimpleNet, "convnet": ConvNet, "resnet18": ResNet18}
