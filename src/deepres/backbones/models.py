"""torchvision's detectors and segmenters on a deepres ResNet, one line each: the
torchvision model class, unchanged, around ``backbone(...)``."""

from __future__ import annotations

from torch import nn
from torchvision.models import detection
from torchvision.models.segmentation import DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from deepres.backbones.build import backbone


def fasterrcnn(name: str, num_classes: int, *, detector_kwargs: dict | None = None, **kwargs):
    """``FasterRCNN(backbone(name, **kwargs), num_classes, **detector_kwargs)``."""
    return detection.FasterRCNN(backbone(name, **kwargs), num_classes, **(detector_kwargs or {}))


def maskrcnn(name: str, num_classes: int, *, detector_kwargs: dict | None = None, **kwargs):
    """``MaskRCNN(backbone(name, **kwargs), num_classes, **detector_kwargs)``."""
    return detection.MaskRCNN(backbone(name, **kwargs), num_classes, **(detector_kwargs or {}))


def keypointrcnn(
    name: str, num_keypoints: int = 17, *, detector_kwargs: dict | None = None, **kwargs
):
    """``KeypointRCNN(backbone(name, **kwargs), 2, num_keypoints=...)`` (person + background,
    as torchvision's)."""
    options = {"num_classes": 2, **(detector_kwargs or {})}
    return detection.KeypointRCNN(backbone(name, **kwargs), num_keypoints=num_keypoints, **options)


def _p6p7(kwargs: dict) -> dict:
    """RetinaNet's and FCOS's pyramid: stages 2-4 and two strided extra levels P6, P7."""
    channels = kwargs.get("fpn_channels", 256)
    return {
        "returned_layers": [2, 3, 4],
        "extra_blocks": LastLevelP6P7(channels, channels),
        **kwargs,
    }


def retinanet(name: str, num_classes: int, *, detector_kwargs: dict | None = None, **kwargs):
    """``RetinaNet`` on ``backbone(name, returned_layers=[2, 3, 4], extra_blocks=P6P7)``, the
    pyramid of torchvision's ``retinanet_resnet50_fpn``."""
    body = backbone(name, **_p6p7(kwargs))
    return detection.RetinaNet(body, num_classes, **(detector_kwargs or {}))


def fcos(name: str, num_classes: int, *, detector_kwargs: dict | None = None, **kwargs):
    """``FCOS`` on the pyramid of torchvision's ``fcos_resnet50_fpn`` (as ``retinanet``)."""
    return detection.FCOS(backbone(name, **_p6p7(kwargs)), num_classes, **(detector_kwargs or {}))


def deeplabv3(name: str, num_classes: int, aux_loss: bool = False, **kwargs) -> nn.Module:
    """torchvision's ``DeepLabV3`` on ``backbone(name, fpn=False)``, at output stride 8 by
    default (as ``deeplabv3_resnet50``), with an ``FCNHead`` on the ``aux`` map if
    ``aux_loss``."""
    body = backbone(name, fpn=False, **{"output_stride": 8, **kwargs})
    aux = FCNHead(body.aux_channels, num_classes) if aux_loss else None
    return DeepLabV3(body, DeepLabHead(body.out_channels, num_classes), aux)
