"""deepres ResNets as the backbones of torchvision's detectors and segmenters.

    from torchvision.models.detection import FasterRCNN
    from deepres.backbones import backbone
    model = FasterRCNN(backbone("resnet50"), num_classes=91)   # = fasterrcnn_resnet50_fpn

``backbone`` builds torchvision's own ``BackboneWithFPN`` (or, with ``fpn=False``, its
``IntermediateLayerGetter`` for ``DeepLabV3``/``FCN``) around a deepres network, with
torchvision's defaults (frozen BatchNorm, 3 trainable layers), so torchvision's detection
weight files load strictly. ``set_output_stride`` dilates the last stages (stride 16 or 8).
"""

from deepres.backbones.build import backbone, layers_to_train, set_trainable_layers
from deepres.backbones.dilation import set_output_stride, stage_stride
from deepres.backbones.models import deeplabv3, fasterrcnn, fcos, keypointrcnn, maskrcnn, retinanet
from deepres.backbones.norm import NORMS, convert_norm, freeze_batchnorm

__all__ = [
    "NORMS",
    "backbone",
    "convert_norm",
    "deeplabv3",
    "fasterrcnn",
    "fcos",
    "freeze_batchnorm",
    "keypointrcnn",
    "layers_to_train",
    "maskrcnn",
    "retinanet",
    "set_output_stride",
    "set_trainable_layers",
    "stage_stride",
]
