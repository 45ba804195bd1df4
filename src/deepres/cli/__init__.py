"""The ``deepres`` command: one module per subcommand, each with ``register(subparsers)``
and ``run(args)``. argparse lives here only; the library below takes plain parameters.

A command module imports at its top only what its parser needs (the choices in the
packages' torch-free ``options`` modules, ``deepres.train.config``); its ``run`` imports the
library. So ``deepres --help`` and every ``deepres COMMAND --help`` start without torch."""

from __future__ import annotations

import argparse
import logging
import sys

from deepres.cli import (
    average,
    bench,
    eval,
    experiment,
    export,
    info,
    plot,
    predict,
    publish,
    quantize,
    recipes,
    serve,
    train,
)
from deepres.cli.train import torchrun_command
from deepres.errors import DeepresError

COMMANDS = (
    info,
    train,
    recipes,
    eval,
    predict,
    average,
    bench,
    experiment,
    plot,
    export,
    publish,
    quantize,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepres", description="Deep residual networks: train, evaluate, ship."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
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


__all__ = ["build_parser", "main", "torchrun_command"]

if __name__ == "__main__":
    sys.exit(main())
