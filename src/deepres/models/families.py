"""The families that followed the paper, as options of the one ``ResNet`` class.

- Pre-activation ResNets: He et al., "Identity Mappings in Deep Residual Networks",
  ECCV 2016 (``preact=True``; Fig. 4e).
- ResNeXt: Xie et al., "Aggregated Residual Transformations for Deep Neural Networks",
  CVPR 2017 (``groups``, ``base_width``; Fig. 3c, Table 1).
- Wide ResNets: Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (wider stages;
  CIFAR WRN-d-k pre-activated with optional ``dropout``; Table 1).
- ResNet-D: He et al., "Bag of Tricks for Image Classification with Convolutional Neural
  Networks", CVPR 2019 (``stem="deep"``, ``avg_down=True``; §4.2, Fig. 2).
- SE-ResNets: Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018 (``attention="se"``).

Every option is a keyword of ``create_model`` and works in every family, e.g.
``create_model("resnext50_32x4d", attention="se")`` or ``create_model("wrn28_10", dropout=0.3)``.
Keyword arguments override a family's defaults. ImageNet builders follow torchvision's and
timm's layouts (state-dict keys included); CIFAR builders default to 10 classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from deepres.errors import DeepresError
from deepres.models.blocks import BasicBlock, Bottleneck, ResidualBlock
from deepres.models.registry import register_model, register_pattern
from deepres.models.resnet import CIFAR_WIDTHS, IMAGENET_WIDTHS, ResNet

PREACT_BOTTLENECK_FROM = 164  # the paper's CIFAR nets: basic blocks up to 110, bottlenecks from 164


def _imagenet(
    block: type[ResidualBlock], layers: list[int], kwargs: dict[str, Any], **family: Any
) -> ResNet:
    """An ImageNet network with the family's options, which ``kwargs`` may override."""
    return ResNet(block, layers, IMAGENET_WIDTHS, **{"stem": "imagenet", **family, **kwargs})


def _cifar(
    block: type[ResidualBlock],
    layers: list[int],
    widths: tuple[int, ...],
    kwargs: dict[str, Any],
    **family: Any,
) -> ResNet:
    """A CIFAR network (3x3 stem, 10 classes, projection shortcuts) with the family's options."""
    options = {"stem": "cifar", "num_classes": 10, "shortcut": "B", **family, **kwargs}
    return ResNet(block, layers, widths, **options)


def preact_blocks(depth: int) -> tuple[type[ResidualBlock], int]:
    """Block type and blocks per stage of a pre-activation CIFAR ResNet of ``depth`` layers:
    basic blocks (6n+2) below 164 layers, bottlenecks (9n+2) from 164, as in the paper."""
    block: type[ResidualBlock] = BasicBlock if depth < PREACT_BOTTLENECK_FROM else Bottleneck
    per_stage = 6 if block is BasicBlock else 9
    if depth < 2 + per_stage or (depth - 2) % per_stage:
        raise DeepresError(
            f"pre-activation CIFAR ResNet depth must be 6n+2 below {PREACT_BOTTLENECK_FROM} "
            f"(basic blocks: 20, 56, 110, ...) or 9n+2 from {PREACT_BOTTLENECK_FROM} "
            f"(bottlenecks: 164, 272, 1001, ...), got {depth}"
        )
    return block, (depth - 2) // per_stage


def cifar_preact_resnet(depth: int, **kwargs: Any) -> ResNet:
    """Pre-activation CIFAR ResNet: a 16-filter 3x3 conv, three stages of 16/32/64-d blocks
    (bottlenecks end in 64/128/256 channels), final BN-ReLU, projection shortcuts."""
    block, n = preact_blocks(depth)
    return _cifar(block, [n, n, n], CIFAR_WIDTHS, kwargs, preact=True)


def _preact_on_demand(match: re.Match[str]) -> Callable[..., ResNet]:
    """``preact_resnet{d}`` for any depth of the paper's rule; another depth is refused
    with the rule."""
    depth = int(match[1])
    preact_blocks(depth)
    return lambda **kwargs: cifar_preact_resnet(depth, **kwargs)


register_pattern(r"preact_resnet(\d+)", _preact_on_demand)


def check_wide_resnet(depth: int, width: int) -> None:
    """Refuse, with the rule, a WRN-d-k that is not d = 6n+4, k >= 1."""
    if depth < 10 or (depth - 4) % 6 or width < 1:
        raise DeepresError(
            f"WRN-d-k needs depth d = 6n+4 (10, 16, 22, 28, 40, ...) and width k >= 1, "
            f"got d={depth}, k={width}"
        )


def cifar_wide_resnet(depth: int, width: int, **kwargs: Any) -> ResNet:
    """WRN-d-k (Table 1): a 16-filter 3x3 conv, three stages of (d-4)/6 pre-activation basic
    blocks of 16k/32k/64k filters, final BN-ReLU; ``dropout`` between the convolutions."""
    check_wide_resnet(depth, width)
    n = (depth - 4) // 6
    widths = (16 * width, 32 * width, 64 * width)
    return _cifar(BasicBlock, [n, n, n], widths, kwargs, preact=True, stem_width=16)


def _wide_on_demand(match: re.Match[str]) -> Callable[..., ResNet]:
    """``wrn{d}_{k}`` for any WRN-d-k; a bad depth or width is refused with the rule."""
    depth, width = int(match[1]), int(match[2])
    check_wide_resnet(depth, width)
    return lambda **kwargs: cifar_wide_resnet(depth, width, **kwargs)


register_pattern(r"wrn(\d+)_(\d+)", _wide_on_demand)


def cifar_resnext(cardinality: int, width: int, **kwargs: Any) -> ResNet:
    """ResNeXt-29 for CIFAR: a 64-filter 3x3 conv, three stages of three bottlenecks with
    ``cardinality`` groups of ``width`` (doubling each stage) and 256/512/1024 outputs."""
    family = {"groups": cardinality, "base_width": width}
    return _cifar(Bottleneck, [3, 3, 3], (64, 128, 256), kwargs, **family)


# --- Pre-activation ResNets (He et al., ECCV 2016) ---------------------------------------


@register_model
def preact_resnet18(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-18 (ImageNet): basic blocks [2, 2, 2, 2]."""
    return _imagenet(BasicBlock, [2, 2, 2, 2], kwargs, preact=True)


@register_model
def preact_resnet34(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-34 (ImageNet): basic blocks [3, 4, 6, 3]."""
    return _imagenet(BasicBlock, [3, 4, 6, 3], kwargs, preact=True)


@register_model
def preact_resnet50(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-50 (ImageNet): bottlenecks [3, 4, 6, 3]; timm's resnetv2_50."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], kwargs, preact=True)


@register_model
def preact_resnet101(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-101 (ImageNet): bottlenecks [3, 4, 23, 3]."""
    return _imagenet(Bottleneck, [3, 4, 23, 3], kwargs, preact=True)


@register_model
def preact_resnet152(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-152 (ImageNet): bottlenecks [3, 8, 36, 3]."""
    return _imagenet(Bottleneck, [3, 8, 36, 3], kwargs, preact=True)


@register_model
def preact_resnet200(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-200 (ImageNet): bottlenecks [3, 24, 36, 3]."""
    return _imagenet(Bottleneck, [3, 24, 36, 3], kwargs, preact=True)


@register_model
def preact_resnet20(**kwargs: Any) -> ResNet:
    """Pre-activation CIFAR ResNet-20: basic blocks, n=3."""
    return cifar_preact_resnet(20, **kwargs)


@register_model
def preact_resnet56(**kwargs: Any) -> ResNet:
    """Pre-activation CIFAR ResNet-56: basic blocks, n=9."""
    return cifar_preact_resnet(56, **kwargs)


@register_model
def preact_resnet110(**kwargs: Any) -> ResNet:
    """Pre-activation CIFAR ResNet-110: basic blocks, n=18, 1.7M parameters."""
    return cifar_preact_resnet(110, **kwargs)


@register_model
def preact_resnet164(**kwargs: Any) -> ResNet:
    """Pre-activation CIFAR ResNet-164: bottlenecks, n=18, 1.7M parameters."""
    return cifar_preact_resnet(164, **kwargs)


@register_model
def preact_resnet1001(**kwargs: Any) -> ResNet:
    """Pre-activation CIFAR ResNet-1001: bottlenecks, n=111, 10.2M parameters."""
    return cifar_preact_resnet(1001, **kwargs)


# --- ResNeXt (Xie et al., CVPR 2017) -----------------------------------------------------


@register_model
def resnext50_32x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-50 (32x4d): bottlenecks [3, 4, 6, 3] with 32 groups of 4 channels."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], kwargs, groups=32, base_width=4)


@register_model
def resnext101_32x8d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 (32x8d): bottlenecks [3, 4, 23, 3] with 32 groups of 8 channels."""
    return _imagenet(Bottleneck, [3, 4, 23, 3], kwargs, groups=32, base_width=8)


@register_model
def resnext101_64x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 (64x4d): bottlenecks [3, 4, 23, 3] with 64 groups of 4 channels."""
    return _imagenet(Bottleneck, [3, 4, 23, 3], kwargs, groups=64, base_width=4)


@register_model
def resnext29_8x64d(**kwargs: Any) -> ResNet:
    """CIFAR ResNeXt-29 (8x64d), 34.4M parameters."""
    return cifar_resnext(8, 64, **kwargs)


@register_model
def resnext29_16x64d(**kwargs: Any) -> ResNet:
    """CIFAR ResNeXt-29 (16x64d), 68.1M parameters."""
    return cifar_resnext(16, 64, **kwargs)


# --- Wide ResNets (Zagoruyko & Komodakis, BMVC 2016) -------------------------------------


@register_model
def wide_resnet50_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-50-2 (ImageNet): ResNet-50 with bottlenecks twice as wide inside."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], kwargs, base_width=128)


@register_model
def wide_resnet101_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-101-2 (ImageNet): ResNet-101 with bottlenecks twice as wide inside."""
    return _imagenet(Bottleneck, [3, 4, 23, 3], kwargs, base_width=128)


@register_model
def wrn16_8(**kwargs: Any) -> ResNet:
    """CIFAR WRN-16-8, 11.0M parameters."""
    return cifar_wide_resnet(16, 8, **kwargs)


@register_model
def wrn28_10(**kwargs: Any) -> ResNet:
    """CIFAR WRN-28-10, 36.5M parameters."""
    return cifar_wide_resnet(28, 10, **kwargs)


@register_model
def wrn40_4(**kwargs: Any) -> ResNet:
    """CIFAR WRN-40-4, 8.9M parameters."""
    return cifar_wide_resnet(40, 4, **kwargs)


# --- ResNet-D (He et al., CVPR 2019) and SE (Hu et al., CVPR 2018) ------------------------


@register_model
def resnet50d(**kwargs: Any) -> ResNet:
    """ResNet-50-D: deep 3x3 stem (32, 32, 64) and average-pool projection shortcuts."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], kwargs, stem="deep", avg_down=True)


@register_model
def resnet101d(**kwargs: Any) -> ResNet:
    """ResNet-101-D: deep 3x3 stem (32, 32, 64) and average-pool projection shortcuts."""
    return _imagenet(Bottleneck, [3, 4, 23, 3], kwargs, stem="deep", avg_down=True)


@register_model
def seresnet50(**kwargs: Any) -> ResNet:
    """SE-ResNet-50: ResNet-50 with squeeze-and-excitation in every block."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], kwargs, attention="se")


@register_model
def seresnext50_32x4d(**kwargs: Any) -> ResNet:
    """SE-ResNeXt-50 (32x4d): ResNeXt-50 with squeeze-and-excitation in every block."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], kwargs, groups=32, base_width=4, attention="se")
