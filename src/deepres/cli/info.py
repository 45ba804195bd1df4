"""``deepres info MODEL``: parameters, multiply-adds and the output size of each stage."""

from __future__ import annotations

import argparse

from deepres.cli.options import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="parameters, multiply-adds and stage output sizes")
    info.add_argument("model")
    info.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="image side in pixels (default 224, or 32 for CIFAR nets)",
    )
    info.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from deepres.models import count_macs, count_params, create_model, stage_table

    model = create_model(args.model)
    size = args.input_size or model.default_input_size
    rows = stage_table(model, size)
    params, macs = count_params(model), count_macs(model, size)
    print(f"{args.model}: {params:,} parameters, {macs / 1e9:.3f} G multiply-adds at {size}x{size}")
    print(f"{'stage':<10} {'output':>16} {'params':>12}")
    print(f"{'input':<10} {_size((model.in_chans, size, size)):>16} {'':>12}")
    for row in rows:
        print(f"{row.name:<10} {_size(row.output_size):>16} {row.params:>12,}")


def _size(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}, {shape[0]}"
    return f"{shape[0]}"
