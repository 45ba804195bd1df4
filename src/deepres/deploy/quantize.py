"""``deepres quantize``: int8 post-training quantization for x86 CPUs (PT2E flow).

The model is captured with ``torch.export``, annotated by torchao's
``X86InductorQuantizer`` (int8 weights per output channel, int8 activations per tensor,
BatchNorm folded into the convolutions), calibrated on real training images and converted
to a quantize/dequantize graph. The result is saved as a ``.pt2`` program with the
checkpoint's metadata, so ``deepres eval``/``predict``/``serve`` load it like a checkpoint.

Run eagerly, that graph computes int8 numerics with fp32 kernels (slower than fp32);
``ProgramModel.compile()`` lowers it through Inductor to fused int8 oneDNN kernels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.checkpoints import (
    ProgramModel,
    load_model,
    load_program,
    resolve_weights,
    save_program,
)
from deepres.checkpoints.program import quiet_torchao
from deepres.data import check_data
from deepres.deploy.export import check_out, export_program
from deepres.deploy.inputs import check_images
from deepres.errors import DeepresError
from deepres.runtime import has_vnni

QUANTIZED = "int8-x86-pt2e"


def quantize_model(
    model: nn.Module,
    calibration: torch.Tensor,
    batch_size: int = 64,
    reduce_range: bool | None = None,
) -> torch.export.ExportedProgram:
    """An int8 program of ``model`` (any batch size), calibrated on ``calibration`` (a
    normalised float batch of real images).

    ``reduce_range`` quantizes activations to 7 bits (0..127). CPUs without VNNI multiply
    uint8 x int8 pairs with a saturating 16-bit add (AVX2 ``vpmaddubsw``), which full 8-bit
    activations overflow: on this project's AVX2 machine the fused int8 ResNet-20 lost 4.5
    points of top-1 that way. ``None``: reduce the range unless this CPU has VNNI."""
    try:
        with quiet_torchao():
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        raise DeepresError(
            "int8 quantization needs torchao: pip install 'deepres[deploy]' (or torchao)"
        ) from None
    if len(calibration) < 2:
        raise DeepresError("calibrate on at least 2 images (--images)")
    example = calibration[:2]
    # strict (dynamo) capture: it records each call of a reused module (the blocks' ReLU)
    # as its own partition, which the x86 quantizer's pattern matching requires.
    captured = export_program(model.eval(), example, dynamic_batch=True, strict=True).module()
    quantizer = x86.X86InductorQuantizer()
    if reduce_range is None:
        reduce_range = not has_vnni()
    config = x86.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
    quantizer.set_global(config)
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for chunk in calibration.split(batch_size):
            prepared(chunk)
    converted = convert_pt2e(prepared)
    drop_unused_attributes(converted)
    return export_program(converted, example, dynamic_batch=True)


def drop_unused_attributes(module: torch.fx.GraphModule) -> None:
    """Remove the fp32 weights the int8 graph no longer reads (half the file otherwise)."""
    used = {str(n.target) for n in module.graph.nodes if n.op == "get_attr"}
    for name, _ in list(module.named_parameters()) + list(module.named_buffers()):
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            parent = module.get_submodule(owner) if owner else module
            delattr(parent, leaf)


def top1(model: nn.Module, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Predicted class of each image."""
    with torch.inference_mode():
        return torch.cat([model(chunk).argmax(1) for chunk in images.split(batch_size)])


def quantize_checkpoint(
    checkpoint: str | Path,
    calib_data: str,
    *,
    images: int = 512,
    out: str | Path | None = None,
    data_root: str | None = None,
    check: int = 500,
    reduce_range: bool | None = None,
    threads: int | None = None,
) -> Path:
    """``deepres quantize``: an int8 program of ``checkpoint`` calibrated on ``images``
    training images of ``calib_data``, saved as a ``.pt2`` file; ``check`` test images
    compare it with fp32 (0: skip)."""
    if images < 2:
        raise DeepresError(f"--images {images}: calibrate on at least 2 images")
    check_data(calib_data, data_root)
    weights = resolve_weights(checkpoint)
    out = Path(out) if out else weights.with_name(weights.stem + ".int8.pt2")
    check_out(out, weights)
    if threads:
        torch.set_num_threads(threads)
    model, meta = load_model(weights)
    if isinstance(model, ProgramModel):
        raise DeepresError(f"{checkpoint} is already a program; quantize the checkpoint")
    calibration, source = check_images(
        meta,
        images,
        data=calib_data,
        split="train",
        data_root=data_root,
        allow_random=False,
    )
    reduce_range = not has_vnni() if reduce_range is None else reduce_range
    bits = "7-bit activations (no VNNI)" if reduce_range else "8-bit activations"
    print(f"calibrating on {source}; int8 weights, {bits}")
    start = time.perf_counter()
    program = quantize_model(model, calibration, reduce_range=reduce_range)
    info: dict[str, Any] = {
        **meta,
        "quantized": QUANTIZED,
        "calibration": {"data": calib_data, "images": len(calibration)},
        "reduce_range": reduce_range,
        "source": str(weights),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_program(out, program, info)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB, {time.perf_counter() - start:.1f} s)")
    if check > 0:
        quantized, _ = load_program(out)
        images, where = check_images(meta, check, data_root=data_root)
        agree = (top1(quantized, images) == top1(model, images)).float().mean().item()
        with torch.inference_mode():
            diff = (quantized(images[:64]) - model(images[:64])).abs().max().item()
        print(
            f"int8 vs fp32 on {where}: same top-1 class for {100 * agree:.1f}%, "
            f"max |logit difference| {diff:.3f}"
        )
    return out
