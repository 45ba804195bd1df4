"""The cached ONNX file of the ``onnxruntime`` and ``openvino`` runtimes: ``<cache>/onnx/
<model>-<hash>.onnx``, named by the hash of the weights, metadata, input shape, opset and
torch version; exported once, and once more when the file is found damaged."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from deepres.deploy.target import Target
from deepres.inference.onnx import OPSET, OnnxModule, OnnxRuntimeModel, OpenVinoModel, export_onnx
from deepres.runtime import atomic_write

log = logging.getLogger(__name__)


def weights_digest(model: nn.Module, target: Target) -> str:
    """The hash an exported file is named by: the weights file's bytes (else the state
    dict), the metadata, the input shape, the opset and the torch version."""
    digest = hashlib.sha256()
    header = [target.meta, type(model).__name__, target.input_shape, OPSET, torch.__version__]
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    if target.weights is not None:
        with open(target.weights, "rb") as f:
            for chunk in iter(lambda: f.read(2**20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def onnx_file(model: nn.Module, target: Target) -> Path:
    """The model's ONNX file in the cache, exported (atomically) when not there yet."""
    folder = target.cache / "onnx"
    name = str(target.meta.get("model", type(model).__name__)).replace("/", "_")
    path = folder / f"{name}-{weights_digest(model, target)[:24]}.onnx"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        example = target.example[:2]

        def write(tmp: Path) -> None:
            export_onnx(model, example, tmp, purpose="the onnxruntime runtime")

        atomic_write(path, write)
        log.info("exported %s to %s for ONNX Runtime", name, path)
    return path


def on_onnx_file(
    session: Callable[[Path, int], OnnxRuntimeModel | OpenVinoModel],
    model: nn.Module,
    target: Target,
) -> OnnxModule:
    """``session`` (ONNX Runtime's or OpenVINO's) on the model's cached ONNX file; a damaged
    file is exported again, once."""
    path = onnx_file(model, target)
    try:
        runner = session(path, target.threads)
    except Exception:  # a damaged cache file: export it again, once
        path.unlink(missing_ok=True)
        path = onnx_file(model, target)
        runner = session(path, target.threads)
    return OnnxModule(runner, path)
