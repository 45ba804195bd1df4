"""``deepres export``: ONNX, TorchScript or a torch.export program, verified on real images
(several ``--checkpoint``s: their ensemble as one graph; ``--ema``: the runs' EMA weights)."""

from __future__ import annotations

import argparse

from deepres.cli.options import (
    add_checkpoint,
    add_ema,
    existing_folder,
    existing_path,
    positive_int,
)
from deepres.deploy.options import DEFAULT_OPSET, FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="ONNX / TorchScript / torch.export program, verified against PyTorch",
    )
    add_checkpoint(ex, "a run folder or a .safetensors file", several=True)
    add_ema(ex)
    ex.add_argument("--format", required=True, choices=list(FORMATS))
    ex.add_argument(
        "--dynamic-batch", action="store_true", help="any batch size (default: batches of 1)"
    )
    ex.add_argument("--opset", type=positive_int, help=f"ONNX opset (default {DEFAULT_OPSET})")
    ex.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the convolutions")
    ex.add_argument("--out", help="output file (default: next to the checkpoint)")
    ex.add_argument(
        "--images",
        nargs="+",
        type=existing_path,
        help="image files or folders to verify on (default: the checkpoint's test split)",
    )
    ex.add_argument("--data-root", type=existing_folder, help="folder holding the named data sets")
    ex.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from deepres.deploy.export import export_checkpoint

    export_checkpoint(
        args.checkpoint,
        args.format,
        out=args.out,
        fold_bn=args.fold_bn,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        images=args.images,
        data_root=args.data_root,
        ema=args.ema,
    )
