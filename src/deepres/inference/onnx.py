"""A model in ONNX Runtime: exported with a free batch dimension (``torch.onnx`` dynamo
exporter, opset 18, as ``deepres export --format onnx --dynamic-batch`` writes it) and run
in an ``InferenceSession`` on the CPU with all graph optimisations.

``deepres bench --against onnxruntime`` and the ``onnxruntime`` inference runtime of
``deepres eval/predict/serve`` (``deepres.deploy.runtime``) both use it; OpenVINO runs the
same file (``OpenVinoModel``, ``--against openvino`` and ``--runtime openvino``)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from deepres.errors import DeepresError, first_line

OPSET = 18
# Libraries that log each step at INFO (the CLI logs at INFO)
CHATTY_LOGGERS = (
    "onnxscript",
    "onnx_ir",
    "onnxruntime",
    "torch.onnx",
    "torch.export",
    "torch._dynamo",
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


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, purpose: str = "the runtime comparison"
) -> Path:
    """``model`` (eval mode) as an ONNX file with a free batch dimension, as ``deepres export
    --format onnx --dynamic-batch`` writes it (without the metadata). ``purpose`` names
    what the export is for in the error a failed export raises."""
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
        first = first_line(err)
        raise DeepresError(f"ONNX export for {purpose} failed: {first}") from err
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
        array = images.detach().float().contiguous().numpy()  # shares memory: no copy
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


class OpenVinoModel:
    """The ONNX file converted by ``openvino.convert_model`` and compiled for "CPU" with
    ``threads`` inference threads, fp32 precision (OpenVINO would otherwise pick bf16 on
    CPUs with AMX) and the latency hint, called like a model."""

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


class OnnxModule(nn.Module):
    """An ``OnnxRuntimeModel`` (or ``OpenVinoModel``) as an ``nn.Module``, so that
    ``eval()``, ``Ensemble`` and ``TestTimeAugmentation`` take it as they take the PyTorch
    model (it has no parameters; its weights live in the runtime)."""

    def __init__(self, runner: OnnxRuntimeModel | OpenVinoModel, path: Path) -> None:
        super().__init__()
        self.runner, self.path = runner, path

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.runner(images)


def runtime_installed(runtime: str) -> bool:
    """Whether ``runtime`` (the module ``onnxruntime`` or ``openvino``) and the exporter's
    onnxscript can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in (runtime, "onnxscript"))
