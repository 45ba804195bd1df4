"""deepres: deep residual networks (He et al., CVPR 2016) in PyTorch.

The package is layered; each layer imports only the layers below it (pyproject.toml's
import-linter contract checks it):

    cli                                   the ``deepres`` command (argparse lives here only)
    deploy | experiments | bench          export/quantize/serve, the paper's experiments, timing
    train | inference                     the training loop, evaluation; Predictor, fast path
    checkpoints                           every saved-model kind; load_model
    models | data | plots                 the networks, data sets, figures
    runtime                               atomic files, fault injection, run lock, hardware
    errors                                DeepresError

The names below are the public API; the heavier ones load on first use. Training is
``from deepres.train import train, TrainConfig`` (``deepres.train`` is the subpackage).
"""

from importlib import import_module
from typing import Any

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

_LAZY = {
    "backbone": "deepres.backbones",
    "load_model": "deepres.checkpoints",
    "optimize_for_inference": "deepres.inference",
    "Predictor": "deepres.inference",
    "TrainConfig": "deepres.train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepres' has no attribute {name!r}")


__all__ = [
    "backbone",
    "DeepresError",
    "FeatureListNet",
    "Predictor",
    "ResNet",
    "TrainConfig",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "load_model",
    "load_pretrained",
    "optimize_for_inference",
]
