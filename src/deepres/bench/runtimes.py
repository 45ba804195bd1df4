"""Other inference runtimes, fed the same weights as deepres: ONNX Runtime (fp32 and its own
static int8 quantization) and OpenVINO, each as a function of a float32 batch.

The model goes to ONNX the way ``deepres export`` writes it (``torch.onnx`` dynamo exporter,
opset 18, free batch dimension), into a temporary folder; the runtimes read it from there.
The export and the ONNX Runtime session live in ``deepres.inference.onnx`` (the inference
runtimes of ``deepres eval/predict/serve`` use them too); they are re-exported here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deepres.bench.options import RUNTIMES
from deepres.errors import DeepresError
from deepres.inference.onnx import OPSET, OnnxRuntimeModel, OpenVinoModel, export_onnx, quiet

__all__ = [
    "OPSET",
    "RUNTIMES",
    "BatchReader",
    "OnnxRuntimeModel",
    "OpenVinoModel",
    "Runnable",
    "check_installed",
    "export_onnx",
    "quantize_onnx",
    "quiet",
]
# (import name, how to install) that each --against needs beyond torch
REQUIREMENTS: dict[str, list[tuple[str, str]]] = {
    "onnxruntime": [
        ("onnxruntime", "pip install 'deepres[deploy]' (or onnxruntime onnx onnxscript)"),
        ("onnxscript", "pip install 'deepres[deploy]' (or onnxscript)"),
    ],
    "onnxruntime-int8": [
        ("onnxruntime", "pip install 'deepres[deploy]' (or onnxruntime onnx onnxscript)"),
        ("onnxscript", "pip install 'deepres[deploy]' (or onnxscript)"),
        ("onnx", "pip install 'deepres[deploy]' (or onnx)"),
        ("torchao", "pip install 'deepres[deploy]' (or torchao), for deepres's own int8 path"),
    ],
    "openvino": [
        ("openvino", "pip install openvino"),
        ("onnxscript", "pip install 'deepres[deploy]' (or onnxscript)"),
    ],
}

Runnable = Callable[[torch.Tensor], torch.Tensor]


def check_installed(against: str) -> None:
    """Refuse ``--against RUNTIME`` when a package it needs is missing, naming the fix."""
    for module, install in REQUIREMENTS.get(against, []):
        if importlib.util.find_spec(module) is None:
            raise DeepresError(
                f"--against {against} needs {module}, which is not installed: {install}"
            )


class BatchReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a tensor, one batch a call."""

    def __init__(self, images: torch.Tensor, batch_size: int, input_name: str = "images") -> None:
        self.batches = [chunk.contiguous().numpy() for chunk in images.split(batch_size)]
        self.input_name = input_name
        self.position = 0

    def get_next(self) -> dict[str, Any] | None:
        if self.position == len(self.batches):
            return None
        self.position += 1
        return {self.input_name: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0


def quantize_onnx(
    fp32: Path, out: Path, calibration: torch.Tensor, batch_size: int, reduce_range: bool
) -> Path:
    """ONNX Runtime's own static int8 quantization of ``fp32``: its recommended
    pre-processing (shape inference, BatchNorm folded), then QDQ format, int8 weights per
    output channel (7-bit with ``reduce_range``, for CPUs without VNNI), uint8 activations
    per tensor, MinMax calibration on ``calibration`` in batches of ``batch_size``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name(out.stem + ".pre.onnx")
    with quiet():
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(out),
            BatchReader(calibration, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
        )
    return out
