"""Shipping a trained ResNet: export (ONNX, TorchScript, torch.export) verified against
PyTorch, int8 quantization for x86 CPUs, and a small web service.

    from deepres.deploy import fold_batchnorm, export_model, quantize_model, create_app
"""

from deepres.deploy.export import FORMATS, export_model, load_runner, verify_export
from deepres.deploy.program import ProgramModel, load_program, save_program
from deepres.deploy.quantize import quantize_model
from deepres.deploy.serve import create_app
from deepres.inference import fold_batchnorm

__all__ = [
    "FORMATS",
    "ProgramModel",
    "create_app",
    "export_model",
    "fold_batchnorm",
    "load_program",
    "load_runner",
    "quantize_model",
    "save_program",
    "verify_export",
]
