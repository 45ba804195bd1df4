"""The inference runtimes themselves: their names, a builder each (``eager``, ``torch``,
``onnxruntime``, ``openvino``: model and ``Target`` in, a function of a batch out) and the
``PreparedModel`` that wraps the one chosen."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import nn

from deepres.deploy.onnx_cache import on_onnx_file
from deepres.deploy.options import RUNTIMES
from deepres.deploy.target import Runner, Target
from deepres.errors import DeepresError, first_line
from deepres.inference import optimize_for_inference
from deepres.inference.onnx import OnnxRuntimeModel, OpenVinoModel, runtime_installed

Source = Literal["asked", "measured", "remembered"]  # how a PreparedModel's runtime was chosen

Builder = Callable[[nn.Module, Target], Runner]


class PreparedModel(nn.Module):
    """A model in its inference runtime: batch in, fp32 logits out; ``runtime`` names the
    runtime, ``reason`` says why it was chosen and ``source`` how: ``asked`` (named by the
    user), ``measured`` (by ``auto``, now) or ``remembered`` (``auto``'s earlier choice)."""

    def __init__(self, runner: Runner, runtime: str, reason: str, source: Source = "asked") -> None:
        super().__init__()
        self.runner, self.runtime, self.reason, self.source = runner, runtime, reason, source

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.runner(images).float()


def build_eager(model: nn.Module, target: Target) -> Runner:
    return model


def build_torch(model: nn.Module, target: Target) -> Runner:
    return optimize_for_inference(model, dtype="fp32")


def build_onnxruntime(model: nn.Module, target: Target) -> Runner:
    require("onnxruntime", "pip install 'deepres[deploy]', or choose --runtime torch")
    return on_onnx_file(OnnxRuntimeModel, model, target)


def build_openvino(model: nn.Module, target: Target) -> Runner:
    require("openvino", "pip install openvino onnxscript, or choose --runtime onnxruntime or torch")
    return on_onnx_file(OpenVinoModel, model, target)


def require(runtime: str, fix: str) -> None:
    """Refuse ``runtime`` when it (or the exporter's onnxscript) is not installed."""
    if not runtime_installed(runtime):
        raise DeepresError(f"the {runtime} runtime needs {runtime} and onnxscript: {fix}")


BUILDERS: dict[str, Builder] = {
    "eager": build_eager,
    "torch": build_torch,
    "onnxruntime": build_onnxruntime,
    "openvino": build_openvino,
}


def check_runtime(runtime: str, candidates: Mapping[str, Builder] | None = None) -> None:
    """Refuse an unknown runtime name, listing the known ones."""
    known = [*RUNTIMES, *(candidates or {})]
    if runtime not in known:
        raise DeepresError(f"unknown runtime {runtime!r}: choose one of {', '.join(known)}")


def build_asked(name: str, builder: Builder, model: nn.Module, target: Target) -> Runner:
    """The runtime the user named; one that cannot run this model is a clear error."""
    try:
        return builder(model, target)
    except Exception as err:
        first = first_line(err)
        raise DeepresError(
            f"runtime {name} cannot run {target.meta.get('model', 'this model')}: {first}; "
            "choose --runtime eager (the model as loaded) or auto"
        ) from err
