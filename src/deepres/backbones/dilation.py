"""Output stride 16 or 8: dilated last stages (atrous convolution, Chen et al., DeepLab;
torchvision's ``replace_stride_with_dilation``), applied to a built network in place."""

from __future__ import annotations

import math

from torch import nn

from deepres.errors import DeepresError
from deepres.models import ResNet


def stage_names(model: nn.Module) -> list[str]:
    """The names of the network's stages, ``layer1``, ``layer2``, ... in forward order."""
    names = getattr(model, "stage_names", None)
    if names is None:
        names = [f"layer{i}" for i in range(1, 9) if hasattr(model, f"layer{i}")]
    if not names:
        raise DeepresError(
            f"{type(model).__name__} has no stages layer1, layer2, ...: a backbone needs a "
            "deepres ResNet (deepres.create_model)"
        )
    return list(names)


def _stride(module: nn.Module) -> int:
    stride = getattr(module, "stride", 1)
    return max(stride) if isinstance(stride, tuple) else int(stride)


def stage_stride(stage: nn.Module) -> int:
    """The spatial stride of a stage: that of its first block's strided modules."""
    first = stage[0] if isinstance(stage, nn.Sequential) else stage
    return max([_stride(m) for m in first.modules()] + [1])


def _is_dilated(model: nn.Module) -> bool:
    return any(
        isinstance(m, nn.Conv2d) and max(m.dilation) > 1
        for name in stage_names(model)
        for m in getattr(model, name).modules()
    )


def _unstride(block: nn.Module) -> None:
    """Stride 1 everywhere in ``block``: strided convolutions (the 3x3, or the first 1x1 of a
    paper-style bottleneck, and the projection shortcut), the zero-padding shortcut's
    subsampling, and the ResNet-D shortcut's average pool (dropped, as at stride 1)."""
    for parent in list(block.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.AvgPool2d) and _stride(child) > 1:
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.Conv2d) and max(child.stride) > 1:
                child.stride = (1, 1)
            elif _stride(child) > 1 and not list(child.children()):
                child.stride = 1  # ZeroPadShortcut and the like


def _dilate(block: nn.Module, dilation: int) -> None:
    """Dilate every spatial (k > 1) convolution of ``block``, keeping the map size."""
    for m in block.modules():
        if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1:
            m.dilation = (dilation, dilation)
            m.padding = tuple(dilation * (k - 1) // 2 for k in m.kernel_size)


def set_output_stride(model: ResNet, output_stride: int) -> ResNet:
    """Make the last feature map ``model``'s input size / ``output_stride`` by replacing the
    stride of the last stage(s) with dilation, in place, as torchvision's
    ``replace_stride_with_dilation``: each stage so changed gets stride 1; its first block
    keeps the dilation of the stage before, its other blocks double it. Works for basic and
    bottleneck blocks and every shortcut; ``feature_info`` reductions are updated. The weights
    are unchanged (a stride-32 checkpoint loads as it is). Returns ``model``."""
    names = stage_names(model)
    strides = [stage_stride(getattr(model, name)) for name in names]
    info = getattr(model, "feature_info", None)
    natural = info[-1]["reduction"] if info else 4 * math.prod(strides)
    options: dict[int, list[int]] = {natural: []}
    current, chosen = natural, []
    for index in reversed([i for i, s in enumerate(strides) if s > 1]):
        current //= strides[index]
        chosen = [index, *chosen]
        options[current] = chosen
    if output_stride not in options:
        raise DeepresError(
            f"output_stride {output_stride} is not possible for this network: choose one of "
            f"{sorted(options, reverse=True)} (its own stride is {natural})"
        )
    dilated = options[output_stride]
    if dilated and _is_dilated(model):
        raise DeepresError("this network is already dilated: build a fresh one")
    dilation = 1
    for index in range(dilated[0], len(names)) if dilated else []:
        blocks = list(getattr(model, names[index]).children())
        if index in dilated:
            _unstride(blocks[0])
            if dilation > 1:
                _dilate(blocks[0], dilation)
            dilation *= strides[index]
            blocks = blocks[1:]
        for block in blocks:
            _dilate(block, dilation)
        if info:
            info[index + 1] = {
                **info[index + 1],
                "reduction": info[index + 1]["reduction"] // dilation,
            }
    return model
