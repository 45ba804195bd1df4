"""Shipping a trained ResNet: export (ONNX, TorchScript, torch.export) verified against
PyTorch, int8 quantization for x86 CPUs, and a small web service.

    from deepres.deploy import export_checkpoint, quantize_checkpoint, serve

Library code only: the commands that call it live in ``deepres.cli``.
"""

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
    "export_checkpoint",
    "export_model",
    "load_runner",
    "quantize_checkpoint",
    "quantize_model",
    "serve",
    "verify_export",
]
