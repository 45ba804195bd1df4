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

import argparse
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.errors import DeepresError

QUANTIZED = "int8-x86-pt2e"


@contextlib.contextmanager
def quiet_torchao() -> Iterator[None]:
    """torchao's import logs a deprecation note of torch's pytree; hide it."""
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def has_vnni() -> bool:
    """True where the CPU multiplies int8 with VNNI (AVX512-VNNI, AVX-VNNI or AMX)."""
    try:
        return bool(torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older/newer torch without the probes: assume the safe answer
        return False


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
    from deepres.deploy.export import export_program

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


def cmd_quantize(args: argparse.Namespace) -> None:
    from deepres.data import check_data
    from deepres.deploy.export import check_out
    from deepres.deploy.inputs import check_images
    from deepres.deploy.program import ProgramModel, load_program, save_program
    from deepres.train.checkpoint import load_model, resolve_weights

    if args.images < 2:
        raise DeepresError(f"--images {args.images}: calibrate on at least 2 images")
    check_data(args.calib_data, args.data_root)
    weights = resolve_weights(args.checkpoint)
    out = Path(args.out) if args.out else weights.with_name(weights.stem + ".int8.pt2")
    check_out(out, weights)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, meta = load_model(weights)
    if isinstance(model, ProgramModel):
        raise DeepresError(f"{args.checkpoint} is already a program; quantize the checkpoint")
    calibration, source = check_images(
        meta,
        args.images,
        data=args.calib_data,
        split="train",
        data_root=args.data_root,
        allow_random=False,
    )
    reduce_range = not has_vnni() if args.reduce_range is None else args.reduce_range
    bits = "7-bit activations (no VNNI)" if reduce_range else "8-bit activations"
    print(f"calibrating on {source}; int8 weights, {bits}")
    start = time.perf_counter()
    program = quantize_model(model, calibration, reduce_range=reduce_range)
    info: dict[str, Any] = {
        **meta,
        "quantized": QUANTIZED,
        "calibration": {"data": args.calib_data, "images": len(calibration)},
        "reduce_range": reduce_range,
        "source": str(weights),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_program(out, program, info)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB, {time.perf_counter() - start:.1f} s)")
    if args.check > 0:
        quantized, _ = load_program(out)
        images, where = check_images(meta, args.check, data_root=args.data_root)
        agree = (top1(quantized, images) == top1(model, images)).float().mean().item()
        with torch.inference_mode():
            diff = (quantized(images[:64]) - model(images[:64])).abs().max().item()
        print(
            f"int8 vs fp32 on {where}: same top-1 class for {100 * agree:.1f}%, "
            f"max |logit difference| {diff:.3f}"
        )


def register(sub: argparse._SubParsersAction) -> None:
    from deepres.cli import (
        add_checkpoint,
        existing_folder,
        non_negative_int,
        positive_int,
    )

    q = sub.add_parser("quantize", help="int8 post-training quantization for x86 CPUs")
    add_checkpoint(q, "a run folder or a .safetensors file")
    q.add_argument(
        "--calib-data",
        required=True,
        help="data set name or folder whose train split calibrates (e.g. cifar10-jpeg)",
    )
    q.add_argument(
        "--images", type=positive_int, default=512, help="calibration images (default 512)"
    )
    q.add_argument("--out", help="output .pt2 file (default: CHECKPOINT.int8.pt2)")
    q.add_argument("--data-root", type=existing_folder, help="folder holding the named data sets")
    q.add_argument(
        "--check",
        type=non_negative_int,
        default=500,
        help="compare int8 and fp32 top-1 on this many test images (0: skip; default 500)",
    )
    q.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="7-bit activations, needed for accuracy on CPUs without VNNI "
        "(default: on unless this CPU has VNNI)",
    )
    q.add_argument("--threads", type=positive_int, help="CPU threads")
    q.set_defaults(run=cmd_quantize)
