"""``deepres quantize``: int8 post-training quantization for x86 CPUs."""

from __future__ import annotations

import argparse

from deepres.cli.options import add_checkpoint, existing_folder, non_negative_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
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
    q.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from deepres.deploy.quantize import quantize_checkpoint

    quantize_checkpoint(
        args.checkpoint,
        args.calib_data,
        images=args.images,
        out=args.out,
        data_root=args.data_root,
        check=args.check,
        reduce_range=args.reduce_range,
        threads=args.threads,
    )
