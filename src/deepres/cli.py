"""The ``deepres`` command: one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys

from deepres.errors import DeepresError


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def cmd_info(args: argparse.Namespace) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepres", description="Deep residual networks: train, evaluate, ship."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="parameters, multiply-adds and stage output sizes")
    info.add_argument("model")
    info.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="image side in pixels (default 224, or 32 for CIFAR nets)",
    )
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except DeepresError as err:
        print(f"deepres: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepres: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
