"""Shipping a trained ResNet: export (ONNX, TorchScript, torch.export) verified against
PyTorch, int8 quantization for x86 CPUs, a small web service, and the evaluation of
ensembles and test-time augmentation.

    from deepres.deploy import evaluate_checkpoints, export_checkpoint, quantize_checkpoint, serve

Library code only: the commands that call it live in ``deepres.cli``.

- ``export``, ``quantize``, ``serve``, ``evaluate``, ``inputs``: the commands' library code;
- ``runtime``: ``--runtime`` of eval/predict/serve: a model, members or Predictor prepared;
- ``runtimes``: each runtime's builder; ``target``: what one is built for; ``onnx_cache``:
  the cached ONNX file; ``auto``: the measured choice; ``choices``: the remembered one.
"""

from deepres.deploy.evaluate import evaluate_checkpoints
from deepres.deploy.export import (
    FORMATS,
    export_checkpoint,
    export_model,
    load_runner,
    verify_export,
)
from deepres.deploy.quantize import quantize_checkpoint, quantize_model
from deepres.deploy.serve import create_app, serve

__all__ = [
    "FORMATS",
    "create_app",
    "evaluate_checkpoints",
    "export_checkpoint",
    "export_model",
    "load_runner",
    "quantize_checkpoint",
    "quantize_model",
    "serve",
    "verify_export",
]
