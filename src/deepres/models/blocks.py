"""Residual building blocks and shortcuts (He et al., 2016, §3.2-§3.3, Fig. 2 and Fig. 5).

A block computes y = relu(F(x) + shortcut(x)). The shortcut follows the paper's Table 3:

- ``"A"``: identity; where the shape changes, subsample by the stride and zero-pad the new
  channels (no parameters). The padding is split evenly, half before and half after the old
  channels, as the widely used CIFAR reproduction code does, so its weight files load.
- ``"B"``: identity; a 1x1 strided convolution + BN projection only where the shape changes.
- ``"C"``: a 1x1 convolution + BN projection on every block.
- ``"none"``: no shortcut at all: y = relu(F(x)), the *plain* network (§4.1).

Module names follow torchvision (``conv1``, ``bn1``, ..., ``downsample.0``/``downsample.1``)
so state dicts from torchvision, timm and common CIFAR code load unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepres.errors import DeepresError

Shortcut = Literal["A", "B", "C", "none"]
SHORTCUTS: tuple[str, ...] = ("A", "B", "C", "none")


def check_shortcut(shortcut: str) -> str:
    if shortcut not in SHORTCUTS:
        raise DeepresError(
            f"unknown shortcut {shortcut!r}: choose one of "
            + ", ".join(repr(s) for s in SHORTCUTS)
            + " (A zero-pad, B projection where the shape changes, C projection everywhere,"
            " none for the plain network)"
        )
    return shortcut


class ZeroPadShortcut(nn.Module):
    """Option A: parameter-free identity that subsamples and zero-pads new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_before = extra // 2
        self.pad_after = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def make_shortcut(
    shortcut: str, in_channels: int, out_channels: int, stride: int
) -> nn.Module | None:
    """The ``downsample`` module of a block, or None for a plain identity (or no shortcut)."""
    reshape = stride != 1 or in_channels != out_channels
    if shortcut == "none" or (shortcut in ("A", "B") and not reshape):
        return None
    if shortcut == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class ResidualBlock(nn.Module):
    """y = relu(F(x) + shortcut(x)); subclasses define F as ``residual`` and name its last BN."""

    expansion = 1
    downsample: nn.Module | None
    has_shortcut: bool

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.has_shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (Fig. 5 left): ResNet-18/34 and every CIFAR net."""

    expansion = 1

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, shortcut: Shortcut = "B"
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)
        self.has_shortcut = shortcut != "none"

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the block's output before the addition and the last ReLU."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 restore (Fig. 5 right): ResNet-50/101/152.

    ``stride_in_1x1=False`` puts the stride on the 3x3 convolution, as torchvision does
    ("ResNet v1.5"); ``True`` is the paper's original placement on the first 1x1.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        shortcut: Shortcut = "B",
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, planes, stride_1x1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)
        self.has_shortcut = shortcut != "none"

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3
