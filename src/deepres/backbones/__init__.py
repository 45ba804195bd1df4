"""deepres ResNets as the backbones of torchvision's detectors and segmenters.

    from torchvision.models.detection import FasterRCNN
    from deepres.backbones import backbone
    model = FasterRCNN(backbone("resnet50"), num_classes=91)   # = fasterrcnn_resnet50_fpn

``backbone`` builds torchvision's own ``BackboneWithFPN`` (or, with ``fpn=False``, its
``IntermediateLayerGetter`` for ``DeepLabV3``/``FCN``) around a deepres network, with
torchvision's defaults (frozen BatchNorm, 3 trainable layers), so torchvision's detection
weight files load strictly. ``set_output_stride`` dilates the last stages (stride 16 or 8).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "build": ["backbone", "layers_to_train", "set_trainable_layers"],
        "dilation": ["set_output_stride", "stage_stride"],
        "models": ["deeplabv3", "fasterrcnn", "fcos", "keypointrcnn", "maskrcnn", "retinanet"],
        "norm": ["NORMS", "convert_norm", "freeze_batchnorm"],
    },
)
