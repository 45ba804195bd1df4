"""The networks of the paper and of the families that followed it.

Modules, each importing only those above it in this list:

- ``registry``: names to builders and on-demand name patterns (a leaf: no model module).
- ``options``: the torch-free choices (``SHORTCUTS``, ``ACTIVATIONS``, ...) and their checks.
- ``layers``: activations, ``BlurPool2d``, ``SimpleSelfAttention`` (the leaderboard's layers).
- ``blocks``: basic and bottleneck blocks, shortcuts (``SHORTCUTS``), squeeze-excite.
- ``resnet``: the one ``ResNet`` class, its option checks, the paper's builders (ImageNet and
  CIFAR 6n+2, with the ``resnet{d}``/``plain{d}`` pattern).
- ``families``: pre-activation, ResNeXt, Wide ResNet, ResNet-D, SE builders and patterns.
- ``features``: ``FeatureListNet``, the per-stage feature maps of a ResNet.
- ``weights``: reading weight files (torchvision, timm, CIFAR repos) into a model.
- ``factory``: ``create_model``, which imports the families so that they register.
- ``complexity``: parameter and multiply-add counts, per-stage sizes.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "blocks": ["BasicBlock", "Bottleneck", "ResidualBlock", "SqueezeExcite", "ZeroPadShortcut"],
        "complexity": ["count_macs", "count_params", "stage_table"],
        "factory": ["create_model", "list_models", "register_model"],
        "families": [
            "cifar_preact_resnet",
            "cifar_resnext",
            "cifar_wide_resnet",
            "preact_resnet18",
            "preact_resnet20",
            "preact_resnet34",
            "preact_resnet50",
            "preact_resnet56",
            "preact_resnet101",
            "preact_resnet110",
            "preact_resnet152",
            "preact_resnet164",
            "preact_resnet200",
            "preact_resnet1001",
            "resnet50d",
            "resnet101d",
            "resnext29_8x64d",
            "resnext29_16x64d",
            "resnext50_32x4d",
            "resnext101_32x8d",
            "resnext101_64x4d",
            "seresnet50",
            "seresnext50_32x4d",
            "wide_resnet50_2",
            "wide_resnet101_2",
            "wrn16_8",
            "wrn28_10",
            "wrn40_4",
        ],
        "features": ["FeatureListNet"],
        "layers": ["BlurPool2d", "SimpleSelfAttention", "make_act"],
        "resnet": [
            "ResNet",
            "cifar_resnet",
            "plain18",
            "plain20",
            "plain32",
            "plain34",
            "plain44",
            "plain56",
            "plain110",
            "resnet18",
            "resnet20",
            "resnet32",
            "resnet34",
            "resnet44",
            "resnet50",
            "resnet56",
            "resnet101",
            "resnet110",
            "resnet152",
            "resnet1202",
        ],
        "weights": ["load_pretrained", "read_state_dict"],
    },
)
