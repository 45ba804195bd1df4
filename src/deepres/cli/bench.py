"""``deepres bench``: images/s next to torchvision, ONNX Runtime, OpenVINO or a reference
training loop, in one process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepres.bench.options import TIMED
from deepres.cli.options import (
    RUN_FOLDER_WEIGHTS,
    existing_path,
    non_negative_int,
    positive_int,
)

AGAINST = [*TIMED, "none"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="images/s next to torchvision, ONNX Runtime, a reference loop")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--mode", choices=["train", "infer", "both"], default="both")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--input-size", type=positive_int, default=None)
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument(
        "--grad-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="train mode: recompute activations per block (compare peak_rss_mb)",
    )
    p.add_argument(
        "--data",
        default="synthetic",
        help="synthetic, an in-memory data set, or a folder of large images (decoded once, "
        "cropped to --input-size a batch at a time)",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        type=existing_path,
        help="infer mode: time this run folder, .safetensors or .pt2 (int8) file instead of "
        "--model; repeat to compare (speed-up against the first), or give one fp32 "
        "checkpoint with --against onnxruntime/onnxruntime-int8/openvino; "
        f"{RUN_FOLDER_WEIGHTS}",
    )
    p.add_argument(
        "--against",
        choices=AGAINST,
        nargs="+",
        default=["none"],
        metavar="NAME",
        help="references, timed in the same rounds: torchvision, onnxruntime, "
        "onnxruntime-int8 (ORT's static int8 beside deepres's), openvino (inference); "
        "reference (the tutorial training loop); none (default)",
    )
    p.add_argument(
        "--reference-workers",
        type=non_negative_int,
        nargs="+",
        default=[2, 0],
        help="DataLoader workers of the reference training loop (default 2 0)",
    )
    p.add_argument("--rounds", type=positive_int, default=5)
    p.add_argument("--steps", type=positive_int, default=5, help="timed batches per round")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from deepres.bench import BenchOptions, check_options, print_report, run_bench
    from deepres.deploy.quantize import quantize_model

    opts = BenchOptions(**{k: v for k, v in vars(args).items() if k not in ("command", "run")})
    check_options(opts)
    report = run_bench(opts, quantize=quantize_model)  # deepres's int8 path (deploy) for bench
    print_report(report)
    if opts.json:
        Path(opts.json).write_text(json.dumps(report, indent=2))
        print(f"\nsaved {opts.json}")
