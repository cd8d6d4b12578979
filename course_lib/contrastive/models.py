"""Encoders and the projection head for SimCLR: ResNet-18 with the CIFAR stem, a small CNN, the head.

    encoder = build_encoder("resnet18")          # (B, 3, 32, 32) floats in [0, 1] -> h (B, 512)
    model = SimCLRModel(encoder, ProjectionHead(encoder.out_dim))
    h, z = model(x)                              # h: features for evaluation, z: projections for the loss

Every encoder takes images as float tensors in [0, 1] and normalises them itself (per-channel CIFAR-10
mean and standard deviation, stored as buffers), so training, feature extraction and baselines all feed
it the same thing. Each encoder has `out_dim`, the size of h.

Why a CIFAR stem: torchvision's ResNet-18 starts with a 7x7 stride-2 convolution and a max-pool, built
for 224-pixel ImageNet images. On 32-pixel CIFAR images that throws away 15/16 of the positions before
the first residual block; it is a known reason SimCLR reproductions on CIFAR land 5-10 points short.
The CIFAR stem is one 3x3 stride-1 convolution and no max-pool, so the 4 stages see 32, 16, 8, 4 pixels.
"""

from __future__ import annotations

import torch
import torch.nn as nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the training images, in [0, 1]
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """(B, 3, H, W) in [0, 1] -> standardised per channel. No parameters: buffers move with .to()."""

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}.")
        if not x.is_floating_point():
            raise TypeError(f"expected float images in [0, 1], got {x.dtype}; convert uint8 with x.float() / 255.")
        return (x - self.mean) / self.std


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias: BatchNorm adds one), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (a 1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem. (B, 3, H, W) in [0, 1] -> h (B, 8 * width), 512 for width 64."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.normalize = Normalize()
        self.stem = conv_bn_relu(3, width)                       # 3x3, stride 1, no max-pool
        stages, c_in = [], width
        for i, stride in enumerate((1, 2, 2, 2)):                # 32 -> 32 -> 16 -> 8 -> 4 pixels
            c_out = width * 2**i
            stages += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(self.normalize(x)))).flatten(1)


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU layers, two 2x2 max-pools, global average pool: (B, 3, H, W) -> h (B, 8 * width).

    For the smoke and laptop tiers: about 0.3 M parameters at width 32, roughly 20x less compute than
    ResNet-18 at the same input size, so it trains on a CPU in minutes.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        self.normalize = Normalize()
        self.features = nn.Sequential(
            conv_bn_relu(3, width),
            conv_bn_relu(width, 2 * width), nn.MaxPool2d(2),
            conv_bn_relu(2 * width, 4 * width), nn.MaxPool2d(2),
            conv_bn_relu(4 * width, 8 * width),
            nn.AdaptiveAvgPool2d(1),
        )
        self.out_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x)).flatten(1)


ENCODERS = {"resnet18": ResNet18, "small_cnn": SmallCNN}


def build_encoder(arch: str = "resnet18", width: int | None = None) -> nn.Module:
    """An encoder by name ("resnet18" or "small_cnn"); `width` defaults to 64 and 32 respectively."""
    if arch not in ENCODERS:
        raise ValueError(f"unknown encoder {arch!r}; expected one of {', '.join(ENCODERS)}.")
    return ENCODERS[arch]() if width is None else ENCODERS[arch](width)


class ProjectionHead(nn.Module):
    """SimCLR's 2-layer MLP head g: h (B, in_dim) -> z (B, out_dim). Linear, BatchNorm, ReLU, Linear.

    The loss is computed on z, and evaluation uses h: the head absorbs the invariances the loss
    demands (colour, crop position), so h keeps information that z throws away.
    """

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128):
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.out_dim = out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class SimCLRModel(nn.Module):
    """Encoder f and head g: x (B, 3, H, W) in [0, 1] -> (h, z) = (f(x), g(f(x)))."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.head = head if head is not None else ProjectionHead(encoder.out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)          # (B, D_h)
        return h, self.head(h)       # (B, D_h), (B, D_z)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "Normalize", "BasicBlock", "ResNet18", "SmallCNN", "ENCODERS",
    "build_encoder", "ProjectionHead", "SimCLRModel", "count_parameters",
]
