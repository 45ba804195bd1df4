"""``deepres serve``: a web page and JSON API that classify uploaded images."""

from __future__ import annotations

import argparse

from deepres.cli.options import (
    add_checkpoint,
    add_ema,
    add_pretrained,
    add_runtime,
    add_tta,
    checkpoint_or_pretrained,
    port_number,
    positive_float,
    positive_int,
)
from deepres.deploy.options import MAX_UPLOAD_BYTES


def register(sub: argparse._SubParsersAction) -> None:
    sv = sub.add_parser("serve", help="a web page and JSON API that classify uploaded images")
    add_checkpoint(sv, several=True, required=False)
    add_pretrained(sv)
    add_tta(sv)
    add_ema(sv)
    add_runtime(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sv.add_argument(
        "--port", type=port_number, default=8000, help="port (default 8000; 0: any free)"
    )
    sv.add_argument("--threads", type=positive_int, default=4, help="request threads (4)")
    sv.add_argument(
        "--max-mb",
        type=positive_float,
        default=MAX_UPLOAD_BYTES / 2**20,
        help="upload limit (10 MB)",
    )
    sv.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    checkpoint_or_pretrained(args)
    from deepres.deploy.serve import serve

    serve(
        args.checkpoint,
        args.host,
        args.port,
        args.threads,
        int(args.max_mb * 2**20),
        tta=args.tta,
        ema=args.ema,
        runtime=args.runtime,
        model=args.model,
        pretrained=args.pretrained,
    )
