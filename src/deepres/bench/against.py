"""The inference references of ``deepres bench --against``, built from the same weights as
deepres's model, and the checks that they compute the same thing.

- ``torchvision``: torchvision's model as most people run it (NCHW, fp32, eval);
- ``onnxruntime``: the model exported to ONNX, in an ONNX Runtime session;
- ``onnxruntime-int8``: ONNX Runtime's static int8 quantization of that file, beside
  deepres's int8 program (``deepres quantize``), both calibrated on the bench's images;
- ``openvino``: the ONNX file compiled by OpenVINO for the CPU (``pip install openvino``).

Ratios are ours ÷ reference images/s, per round and as the median.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from deepres.bench.runtimes import (
    OnnxRuntimeModel,
    OpenVinoModel,
    Runnable,
    export_onnx,
    quantize_onnx,
)
from deepres.checkpoints import ProgramModel
from deepres.errors import DeepresError
from deepres.inference import Agreement, agreement
from deepres.runtime import has_vnni

# deepres's int8 path: (fp32 model, normalised calibration batch) -> int8 program.
# ``deepres.deploy.quantize.quantize_model``; passed in by the CLI (bench sits beside deploy).
Quantizer = Callable[[nn.Module, torch.Tensor], torch.export.ExportedProgram]

# reference variant -> the deepres variants measured against it
COUNTERPARTS = {
    "torchvision": ("ours_fp32", "ours_bf16"),
    "onnxruntime": ("ours_fp32", "ours_bf16"),
    "openvino": ("ours_fp32", "ours_bf16"),
    "onnxruntime_int8": ("ours_int8",),
}
# what the 7-bit setting for CPUs without VNNI narrows in each int8 model
SEVEN_BITS = {"ours_int8": "activations", "onnxruntime_int8": "weights"}
CALIBRATION_BATCHES = 4
CALIBRATION_LIMITS = (64, 512)  # at least / at most this many calibration images


def calibration_count(batch_size: int) -> int:
    """Images to calibrate the int8 models on: a few whole batches (so a compiled model
    sees one shape), at least 64 images and at most 512 unless one batch is larger."""
    low, high = CALIBRATION_LIMITS
    batches = max(CALIBRATION_BATCHES, math.ceil(low / batch_size))
    return batch_size * min(batches, max(1, high // batch_size))


def torchvision_model(name: str, model: nn.Module) -> nn.Module:
    """torchvision's ``name`` holding ``model``'s weights, in eval mode."""
    if not hasattr(torchvision.models, name):
        raise DeepresError(f"torchvision has no {name}; use --against reference")
    reference = getattr(torchvision.models, name)().eval()
    reference.load_state_dict(model.state_dict())
    return reference


def ours_int8(
    model: nn.Module, calibration: torch.Tensor, quantize: Quantizer, compile: bool
) -> nn.Module:
    """deepres's int8 program of ``model`` as ``deepres quantize`` writes it, compiled to
    fused int8 kernels with ``compile`` (as ``bench --checkpoint X.int8.pt2 --compile``)."""
    program = ProgramModel(quantize(model.eval(), calibration)).eval()
    return program.compile() if compile else program


def runtime_models(
    model: nn.Module,
    against: list[str],
    calibration: torch.Tensor,
    batch_size: int,
    quantize: Quantizer | None = None,
    compile: bool = False,
) -> dict[str, Runnable]:
    """The ONNX Runtime / OpenVINO references of ``model`` that ``against`` names (and, for
    ``onnxruntime-int8``, deepres's int8 model beside ONNX Runtime's), ready to call."""
    if "onnxruntime-int8" in against and quantize is None:
        raise DeepresError(
            "--against onnxruntime-int8 needs deepres's quantizer: run it from the CLI "
            "(deepres bench) or pass quantize=deepres.deploy.quantize.quantize_model"
        )
    threads = torch.get_num_threads()
    models: dict[str, Runnable] = {}
    with tempfile.TemporaryDirectory(prefix="deepres-bench-") as folder:
        onnx_file = export_onnx(model, calibration, Path(folder) / "model.onnx")
        if "onnxruntime" in against:
            models["onnxruntime"] = OnnxRuntimeModel(onnx_file, threads)
        if "openvino" in against:
            models["openvino"] = OpenVinoModel(onnx_file, threads)
        if "onnxruntime-int8" in against:
            assert quantize is not None
            models["ours_int8"] = ours_int8(model, calibration, quantize, compile)
            int8_file = Path(folder) / "model.int8.onnx"
            quantize_onnx(onnx_file, int8_file, calibration, batch_size, not has_vnni())
            models["onnxruntime_int8"] = OnnxRuntimeModel(int8_file, threads)
    return models


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Each deepres variant's images/s ÷ each reference's, per round and the median."""
    for reference, ours_names in COUNTERPARTS.items():
        if reference not in results:
            continue
        theirs = results[reference]["rounds_images_per_s"]
        for name in ours_names:
            if name in results:
                ratios = [
                    o / t for o, t in zip(results[name]["rounds_images_per_s"], theirs, strict=True)
                ]
                results[name].setdefault("ratio_vs", {})[reference] = {
                    "per_round": ratios,
                    "median": statistics.median(ratios),
                }


def agreement_fields(found: Agreement) -> dict[str, Any]:
    return {
        "max_abs_diff": found.max_diff,
        "tolerance": found.tolerance,
        "same_top5": found.top5,
        "exact": found.exact,
    }


def top1(model: Runnable, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted class of each image, in batches of ``batch_size``."""
    with torch.inference_mode():
        return torch.cat([model(chunk).argmax(1) for chunk in images.split(batch_size)])


def add_checks(
    results: dict[str, dict[str, Any]],
    models: dict[str, Runnable],
    fp32: nn.Module,
    images: torch.Tensor,
    calibration: torch.Tensor,
) -> None:
    """Exactness of each fp32 reference against ``ours_fp32`` on the timed batch; for int8,
    the share of ``calibration`` images whose top-1 class each int8 model keeps from fp32."""
    with torch.inference_mode():
        ours = models["ours_fp32"](images)
        for name in ("torchvision", "onnxruntime", "openvino"):
            if name in models:
                found = agreement(ours, models[name](images))
                results[name]["agreement_vs_ours_fp32"] = agreement_fields(found)
    int8 = [name for name in ("ours_int8", "onnxruntime_int8") if name in models]
    if int8:
        batch_size = len(images)
        expected = top1(fp32.eval(), calibration, batch_size)
        for name in int8:
            same = top1(models[name], calibration, batch_size) == expected
            results[name]["top1_agreement_vs_fp32"] = same.float().mean().item()
            results[name]["agreement_images"] = len(calibration)
            results[name]["seven_bit"] = "none" if has_vnni() else SEVEN_BITS[name]
