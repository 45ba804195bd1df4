"""Residual building blocks and shortcuts (He et al., 2016, §3.2-§3.3, Fig. 2 and Fig. 5).

A block computes y = relu(F(x) + shortcut(x)). The shortcut follows the paper's Table 3:

- ``"A"``: identity; where the shape changes, subsample by the stride and zero-pad the new
  channels (no parameters). The padding is split evenly, half before and half after the old
  channels, as the widely used CIFAR reproduction code does, so its weight files load.
- ``"B"``: identity; a 1x1 strided convolution + BN projection only where the shape changes.
- ``"C"``: a 1x1 convolution + BN projection on every block.
- ``"none"``: no shortcut at all: y = relu(F(x)), the *plain* network (§4.1).

Options shared by both blocks, one for each later paper:

- ``preact``: pre-activation (He et al., "Identity Mappings in Deep Residual Networks",
  ECCV 2016, §4, Fig. 4e): BN and ReLU before each convolution, y = x + F(x) with nothing
  after the addition.
- ``attention="se"``: squeeze-and-excitation on F(x) before the addition (Hu et al.,
  "Squeeze-and-Excitation Networks", CVPR 2018, §3 and Fig. 3).
- ``dropout``: dropout before the block's last convolution, between the two 3x3 convolutions
  of a basic block (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016, §2.4).
- ``avg_down``: a projection shortcut that averages 2x2 before an unstrided 1x1 convolution
  (ResNet-D of He et al., "Bag of Tricks for Image Classification", CVPR 2019, §4.2, Fig. 2c).
- ``act``: the activation (``"relu"``, ``"mish"``, ``"silu"``) of every place above that says
  ReLU, SE's included (as fastai's xresnet does); the module keeps the name ``relu``.
- ``blur_pool``: the strided convolution runs at stride 1 and a ``BlurPool2d`` (``aa``) does
  the subsampling, after the activation that follows it (Zhang, ICML 2019; where timm's
  ``aa_layer`` puts it: before the next convolution). The shortcut is unchanged.
- ``self_attention``: fastai's ``SimpleSelfAttention`` (``sa``) on F(x), after SE.

Bottlenecks also take ``groups`` and ``base_width`` for the grouped 3x3 convolution of ResNeXt
(Xie et al., "Aggregated Residual Transformations", CVPR 2017, §3.3, Fig. 3c) and the wider
bottleneck of Wide ResNet-50-2.

Module names follow torchvision and timm (``conv1``, ``bn1``, ..., ``se.fc1``,
``downsample.0``/``downsample.1``) so state dicts from torchvision, timm and common CIFAR code
load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepres.models.layers import BlurPool2d, SimpleSelfAttention, make_act


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


def se_channels(channels: int, ratio: int = 16) -> int:
    """Width of the SE bottleneck: ``channels / ratio`` with r = 16 (the paper's default), rounded
    to the nearest multiple of 8 and at least 8 (the widths of timm's weight files)."""
    return max(8, int(channels / ratio / 8 + 0.5) * 8)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018, §3, Fig. 3): global average pooling (squeeze),
    two 1x1 layers with a ReLU (or ``act``) between (excitation), and a sigmoid gate per
    channel."""

    def __init__(self, channels: int, act: str = "relu") -> None:
        super().__init__()
        reduced = se_channels(channels)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.relu = make_act(act)
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.relu(self.fc1(squeezed))))


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def make_shortcut(
    shortcut: str,
    in_channels: int,
    out_channels: int,
    stride: int,
    preact: bool = False,
    avg_down: bool = False,
) -> nn.Module | None:
    """The ``downsample`` module of a block, or None for a plain identity (or no shortcut).

    A projection is a 1x1 convolution + BN; pre-activation blocks leave out the BN (their
    projection reads the already normalised input). ``avg_down`` replaces the strided 1x1
    convolution, which skips three inputs in four, by a 2x2 average pool and an unstrided
    1x1 convolution (ResNet-D).
    """
    reshape = stride != 1 or in_channels != out_channels
    if shortcut == "none" or (shortcut in ("A", "B") and not reshape):
        return None
    if shortcut == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    layers: list[nn.Module] = []
    if avg_down:
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
        layers += [pool if stride > 1 else nn.Identity(), conv1x1(in_channels, out_channels)]
    else:
        layers.append(conv1x1(in_channels, out_channels, stride))
    if not preact:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """A residual unit made of ``conv1``, ``conv2``, ... each with its BN ``bn1``, ``bn2``, ...

    Post-activation (He et al., 2016a): conv-BN-ReLU, ..., conv-BN, then
    y = relu(F(x) + shortcut(x)). Pre-activation (He et al., 2016b, Fig. 4e): BN-ReLU-conv, ...,
    then y = F(x) + shortcut(x) with a clean identity path; a projection shortcut shares the
    first BN-ReLU with F (as in the authors' code).
    """

    expansion = 1
    downsample: nn.Module | None
    has_shortcut: bool
    preact: bool
    num_convs: int

    def _assemble(
        self,
        convs: list[nn.Conv2d],
        in_channels: int,
        stride: int,
        shortcut: str,
        *,
        preact: bool,
        attention: str | None,
        dropout: float,
        avg_down: bool,
        act: str,
        blur_before: int,
        self_attention: bool,
    ) -> None:
        """Register the convolutions and BNs in forward order, then SE and the shortcut;
        ``blur_before``: the convolution whose input is blurred and subsampled (0: none).
        The options are not checked here: ``ResNet`` checks them once (``check_options``)."""
        self.preact = preact
        self.num_convs = len(convs)
        for i, conv in enumerate(convs, start=1):
            bn = nn.BatchNorm2d(conv.in_channels if preact else conv.out_channels)
            pair = [(f"conv{i}", conv), (f"bn{i}", bn)]
            for name, module in reversed(pair) if preact else pair:
                self.add_module(name, module)
        out_channels = convs[-1].out_channels
        self.relu = make_act(act)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.blur_before = blur_before
        self.aa: nn.Module = nn.Identity()
        if blur_before:  # on the output of the convolution before it
            self.aa = BlurPool2d(convs[blur_before - 2].out_channels, stride)
        self.se = SqueezeExcite(out_channels, act) if attention == "se" else nn.Identity()
        self.sa = SimpleSelfAttention(out_channels) if self_attention else nn.Identity()
        self.downsample = make_shortcut(
            shortcut, in_channels, out_channels, stride, preact, avg_down
        )
        self.has_shortcut = shortcut != "none"
        # Pre-activation: a projection reads the normalised input; identity and zero-padding
        # (option A) keep the raw one, so the identity path stays clean.
        self.shortcut_preact = preact and isinstance(self.downsample, nn.Sequential)

    def _layer(self, i: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
        return getattr(self, f"conv{i}"), getattr(self, f"bn{i}")

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the block's output before the addition (and, post-activation, its ReLU).
        A pre-activation block takes x already through ``bn1`` and ReLU (see ``forward``)."""
        last = self.num_convs
        for i in range(1, last + 1):
            conv, bn = self._layer(i)
            if self.preact and i > 1:
                x = self.relu(bn(x))
            if i == self.blur_before:  # the previous convolution's stride
                x = self.aa(x)
            x = conv(self.drop(x) if i == last else x)
            if not self.preact:
                x = bn(x) if i == last else self.relu(bn(x))
        return self.sa(self.se(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            activated = self.relu(self.bn1(x))
            out = self.residual(activated)
            if not self.has_shortcut:
                return out
            if self.downsample is None:
                return out + x
            return out + self.downsample(activated if self.shortcut_preact else x)
        out = self.residual(x)
        if self.has_shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def zero_init_last(self) -> None:
        """Start F(x) at zero, so the block begins as the identity: the last BN's scale
        (Goyal et al., 2017) or, in a pre-activation block, the last convolution."""
        conv, bn = self._layer(self.num_convs)
        nn.init.zeros_(conv.weight if self.preact else bn.weight)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (Fig. 5 left): ResNet-18/34 and the CIFAR nets, Wide ResNets."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "B",
        *,
        preact: bool = False,
        attention: str | None = None,
        dropout: float = 0.0,
        avg_down: bool = False,
        act: str = "relu",
        blur_pool: bool = False,
        self_attention: bool = False,
    ) -> None:
        super().__init__()
        blur = blur_pool and stride > 1
        convs = [
            conv3x3(in_channels, planes, 1 if blur else stride),
            conv3x3(planes, planes * self.expansion),
        ]
        options = dict(preact=preact, attention=attention, dropout=dropout, avg_down=avg_down)
        options.update(act=act, blur_before=2 if blur else 0, self_attention=self_attention)
        self._assemble(convs, in_channels, stride, shortcut, **options)


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 restore (Fig. 5 right): ResNet-50/101/152, ResNeXt, WRN-50-2.

    The 3x3 convolution has ``groups`` groups of ``planes * base_width / 64`` channels each
    (ResNeXt's cardinality C and width d: 32x4d is groups=32, base_width=4; a plain
    bottleneck is groups=1, base_width=64; Wide ResNet-50-2 is base_width=128).
    ``stride_in_1x1=False`` puts the stride on the 3x3 convolution, as torchvision does
    ("ResNet v1.5"); ``True`` is the paper's original placement on the first 1x1.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "B",
        stride_in_1x1: bool = False,
        *,
        groups: int = 1,
        base_width: int = 64,
        preact: bool = False,
        attention: str | None = None,
        dropout: float = 0.0,
        avg_down: bool = False,
        act: str = "relu",
        blur_pool: bool = False,
        self_attention: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * base_width / 64) * groups
        strided = 1 if stride_in_1x1 else 2  # which convolution has the stride
        blur = blur_pool and stride > 1
        conv_stride = 1 if blur else stride
        convs = [
            conv1x1(in_channels, width, conv_stride if strided == 1 else 1),
            conv3x3(width, width, conv_stride if strided == 2 else 1, groups),
            conv1x1(width, planes * self.expansion),
        ]
        options = dict(preact=preact, attention=attention, dropout=dropout, avg_down=avg_down)
        options.update(act=act, blur_before=strided + 1 if blur else 0)
        options.update(self_attention=self_attention)
        self._assemble(convs, in_channels, stride, shortcut, **options)
