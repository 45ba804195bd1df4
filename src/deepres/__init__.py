"""deepres: deep residual networks (He et al., CVPR 2016) in PyTorch."""

from deepres.errors import DeepresError
from deepres.models import (
    FeatureListNet,
    ResNet,
    count_macs,
    count_params,
    create_model,
    list_models,
    load_pretrained,
)

__version__ = "0.1.0"

__all__ = [
    "DeepresError",
    "FeatureListNet",
    "ResNet",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "load_pretrained",
]
