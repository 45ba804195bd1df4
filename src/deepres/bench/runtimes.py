"""Other inference runtimes, fed the same weights as deepres: ONNX Runtime (fp32 and its own
static int8 quantization) and OpenVINO, each as a function of a float32 batch.

The model goes to ONNX the way ``deepres export`` writes it (``torch.onnx`` dynamo exporter,
opset 18, free batch dimension), into a temporary folder; the runtimes read it from there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.errors import DeepresError

RUNTIMES = ("onnxruntime", "onnxruntime-int8", "openvino")
OPSET = 18
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
CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "onnxruntime", "torch.onnx", "torch.export")

Runnable = Callable[[torch.Tensor], torch.Tensor]


def check_installed(against: str) -> None:
    """Refuse ``--against RUNTIME`` when a package it needs is missing, naming the fix."""
    for module, install in REQUIREMENTS.get(against, []):
        if importlib.util.find_spec(module) is None:
            raise DeepresError(
                f"--against {against} needs {module}, which is not installed: {install}"
            )


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters' and quantizer's INFO logs and warnings."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """``model`` (eval mode) as an ONNX file with a free batch dimension, as ``deepres export
    --format onnx --dynamic-batch`` writes it (without the metadata)."""
    try:
        with quiet():
            program = torch.onnx.export(
                model.eval(),
                (example[:2].clone(),),
                dynamo=True,
                opset_version=OPSET,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: "batch"},),
                verbose=False,
            )
            program.save(str(path), external_data=False)
    except Exception as err:  # exporters raise many types; name the step and the cause
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DeepresError(f"ONNX export for the runtime comparison failed: {first}") from err
    return path


class OnnxRuntimeModel:
    """An ONNX file in an ONNX Runtime session (CPU, all graph optimisations, ``threads``
    intra-op threads), called like a model: float32 batch in, logits out."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.version = ort.__version__

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().contiguous().numpy()  # shares memory: no copy
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


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


class OpenVinoModel:
    """UNTESTED (OpenVINO is not installed where deepres is developed; only the missing-
    package error is tested). The ONNX file converted by ``openvino.convert_model`` and
    compiled for "CPU" with ``threads`` inference threads, fp32 precision (OpenVINO would
    otherwise pick bf16 on CPUs with AMX) and the latency hint, called like a model."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(ov.convert_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.version = ov.__version__

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.request.infer({0: images.detach().contiguous().numpy()})
        return torch.from_numpy(outputs[0].copy())
