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

The names below are the public API; each loads on first use. Training is
``from deepres.train import train, TrainConfig`` (``deepres.train`` is the subpackage).
"""

import lazy_loader

from deepres.errors import DeepresError

__version__ = "0.1.0"

# Each name loads its subpackage on first use, so ``import deepres`` (and the command line's
# ``--help``) does not import torch.
__getattr__, __dir__, _lazy_names = lazy_loader.attach(
    __name__,
    submod_attrs={
        "models": [
            "FeatureListNet",
            "ResNet",
            "count_macs",
            "count_params",
            "create_model",
            "list_models",
            "load_pretrained",
        ],
        "backbones": ["backbone"],
        "checkpoints": ["load_model"],
        "inference": ["optimize_for_inference", "Predictor"],
        "train": ["TrainConfig"],
    },
)
__all__ = ["DeepresError", *_lazy_names]
