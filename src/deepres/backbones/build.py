"""``backbone``: a deepres ResNet as the feature extractor of torchvision's detectors
(with a feature pyramid) and segmenters (without), built from torchvision's own parts."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool

from deepres.backbones.dilation import set_output_stride, stage_names
from deepres.backbones.norm import check_norm, convert_norm
from deepres.errors import DeepresError
from deepres.models import ResNet, create_model, load_pretrained


def layers_to_train(model: nn.Module, trainable_layers: int) -> list[str]:
    """The top-level modules left trainable, counted as torchvision counts them: the last
    stage first (``layer4``, ``layer3``, ..., ``layer1``), then ``conv1``; all of them
    also trains ``bn1``. A pre-activation net's ``final_bn`` goes with its last stage."""
    order = [*reversed(stage_names(model)), "conv1"]
    if not 0 <= trainable_layers <= len(order):
        raise DeepresError(
            f"trainable_layers must be in [0, {len(order)}] for this network ({len(order)} = "
            f"all: {', '.join(order)} and bn1), got {trainable_layers}"
        )
    train = order[:trainable_layers]
    if trainable_layers == len(order):
        train.append("bn1")
    if order[0] in train:
        train.append("final_bn")
    return train


def set_trainable_layers(model: nn.Module, trainable_layers: int) -> list[str]:
    """Freeze (``requires_grad=False``) every parameter outside the ``trainable_layers``
    last layers (see ``layers_to_train``), as torchvision's ``resnet_fpn_backbone`` does.
    Returns the names of the top-level modules left trainable."""
    train = layers_to_train(model, trainable_layers)
    for name, parameter in model.named_parameters():
        if name.split(".")[0] not in train:
            parameter.requires_grad_(False)
    return train


def check_returned_layers(returned_layers: Sequence[int], num_stages: int) -> list[int]:
    layers = [int(k) for k in returned_layers]
    if not layers or sorted(set(layers)) != layers or not all(1 <= k <= num_stages for k in layers):
        raise DeepresError(
            f"returned_layers {list(returned_layers)} must be increasing stage numbers in "
            f"[1, {num_stages}]: this network has {num_stages} stages (layer1..layer{num_stages})"
            + ("; CIFAR nets have no layer4" if num_stages == 3 else "")
        )
    return layers


def output_module(model: nn.Module, stage: int) -> str:
    """The top-level module whose output is stage ``stage``'s feature map (``layerK``, or the
    final BN-ReLU after the last stage of a pre-activation network)."""
    info = getattr(model, "feature_info", None)
    return info[stage]["module"] if info else stage_names(model)[stage - 1]


def stage_channels(model: nn.Module, stage: int) -> int:
    info = getattr(model, "feature_info", None)
    if info:
        return int(info[stage]["num_chs"])
    convs = [m for m in getattr(model, f"layer{stage}").modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def segmentation_names(layers: list[int]) -> dict[int, str]:
    """Output names for a body without FPN: ``out`` (deepest), ``aux`` (next), then the
    stage numbers ("1", "2") as torchvision's segmentation models expect."""
    names = {stage: str(stage) for stage in layers}
    names[layers[-1]] = "out"
    if len(layers) > 1:
        names[layers[-2]] = "aux"
    return names


def build_network(
    name: str | nn.Module,
    norm: str,
    output_stride: int | None,
    pretrained: str | Path | None,
    model_kwargs: dict,
) -> nn.Module:
    """A deepres ResNet with its weights, output stride and normalisation set."""
    check_norm(norm)
    if isinstance(name, nn.Module):
        if model_kwargs:
            raise DeepresError(f"options {sorted(model_kwargs)} need a model name, not a model")
        model = name
        if pretrained is not None:
            load_pretrained(model, pretrained)
    else:
        model = create_model(name, pretrained=pretrained, **model_kwargs)
    if not isinstance(model, ResNet):
        raise DeepresError(
            f"{type(model).__name__} is not a ResNet: a backbone needs a deepres ResNet"
        )
    if output_stride is not None:
        set_output_stride(model, output_stride)
    return convert_norm(model, norm)


def backbone(
    name: str | nn.Module,
    *,
    fpn: bool = True,
    trainable_layers: int | None = None,
    norm: str | None = None,
    output_stride: int | None = None,
    returned_layers: Sequence[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    pretrained: str | Path | None = None,
    fpn_channels: int = 256,
    **model_kwargs,
) -> nn.Module:
    """A deepres ResNet as the backbone of torchvision's detection or segmentation models.

    With ``fpn=True`` (detection: ``FasterRCNN``, ``MaskRCNN``, ``KeypointRCNN``,
    ``RetinaNet``, ``FCOS``) it is torchvision's ``BackboneWithFPN``; the defaults are those
    of torchvision's detection builders (``resnet_fpn_backbone``): frozen BatchNorm, the last
    3 layers trainable, stages 1-4 into the FPN, a max-pooled extra level, 256 channels. So
    ``FasterRCNN(backbone("resnet50"), 91)`` has the modules and state-dict keys of
    torchvision's ``fasterrcnn_resnet50_fpn`` and loads its weight files strictly.

    With ``fpn=False`` (segmentation: ``DeepLabV3``, ``FCN``) it is torchvision's
    ``IntermediateLayerGetter`` returning ``{"aux": layer3, "out": layer4}`` (the last two
    stages; ``returned_layers`` chooses others: the deepest is ``out``, the next ``aux``,
    earlier ones their stage number); the defaults are those of torchvision's segmentation
    builders: BatchNorm trained, every layer trainable.

    Args:
        name: a deepres model name (``"resnet18"``, ``"resnet50"``, ``"resnext50_32x4d"``,
            ``"resnet20"`` for a 3-stage CIFAR net, ...) or a built deepres ``ResNet``
            (changed in place: dilated, its BatchNorms converted, layers frozen).
        trainable_layers: how many layers to train, from the last stage back to ``conv1``
            (5 = all for a 4-stage net, 4 for a CIFAR net); default 3 with FPN, all without.
        norm: ``"frozen_bn"`` (torchvision's ``FrozenBatchNorm2d``), ``"bn"`` or
            ``"sync_bn"``; default ``"frozen_bn"`` with FPN, ``"bn"`` without.
        output_stride: None (the net's own: 32, or 4 for a CIFAR net), or 16 / 8 to dilate
            the last stage(s) instead of striding them (see ``set_output_stride``).
        returned_layers: stage numbers (1-based) whose maps the backbone returns.
        extra_blocks: the FPN's extra levels (default ``LastLevelMaxPool``; RetinaNet and
            FCOS use ``LastLevelP6P7(256, 256)`` with ``returned_layers=[2, 3, 4]``).
        pretrained: a weight file of the classification network (torchvision, timm or
            deepres names) loaded before anything is frozen.
        fpn_channels: channels of every pyramid level (the detector's ``out_channels``).
        **model_kwargs: options of ``deepres.create_model`` (``in_chans``, ``shortcut``...).

    The result has ``out_channels`` (and without FPN ``aux_channels`` where ``aux`` is
    returned), as torchvision's detection and segmentation heads expect.
    """
    norm = norm or ("frozen_bn" if fpn else "bn")
    model = build_network(name, norm, output_stride, pretrained, model_kwargs)
    num_stages = len(stage_names(model))
    if trainable_layers is None:
        trainable_layers = 3 if fpn else num_stages + 1
    set_trainable_layers(model, trainable_layers)
    if returned_layers is None:
        returned_layers = range(1, num_stages + 1) if fpn else range(num_stages - 1, num_stages + 1)
    layers = check_returned_layers(returned_layers, num_stages)
    if fpn:
        return_layers = {output_module(model, k): str(i) for i, k in enumerate(layers)}
        in_channels = [stage_channels(model, k) for k in layers]
        extra = extra_blocks if extra_blocks is not None else LastLevelMaxPool()
        return BackboneWithFPN(model, return_layers, in_channels, fpn_channels, extra_blocks=extra)
    if extra_blocks is not None:
        raise DeepresError("extra_blocks are levels of the FPN: pass fpn=True")
    names = segmentation_names(layers)
    body = IntermediateLayerGetter(model, {output_module(model, k): names[k] for k in layers})
    body.out_channels = stage_channels(model, layers[-1])
    if len(layers) > 1:
        body.aux_channels = stage_channels(model, layers[-2])
    body.channels = OrderedDict((names[k], stage_channels(model, k)) for k in layers)
    return body
