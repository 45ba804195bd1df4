"""The deployment subcommands: ``deepres export``, ``deepres quantize``, ``deepres serve``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from deepres.deploy import export, quantize, serve

    export.register(sub)
    quantize.register(sub)
    serve.register(sub)
