"""``deepres plot RUN...``: training and test curves of runs on one figure."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepres.cli.options import existing_path


def register(sub: argparse._SubParsersAction) -> None:
    plot = sub.add_parser("plot", help="training and test curves of runs on one figure")
    plot.add_argument(
        "runs",
        nargs="+",
        type=existing_path,
        metavar="RUN",
        help="run folders (with metrics.jsonl)",
    )
    plot.add_argument("--out", help="PNG file (default curves-METRIC.png)")
    plot.add_argument("--metric", choices=["error", "loss"], default="error")
    plot.add_argument("--x", choices=["step", "epoch"], default="step")
    plot.add_argument("--title")
    plot.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from deepres.plots import plot_training_curves
    from deepres.train import read_metrics

    runs = {}
    for run in args.runs:
        label = Path(run).resolve().name
        while label in runs:
            label += "'"
        runs[label] = read_metrics(run)
    out = Path(args.out) if args.out else Path(f"curves-{args.metric}.png")
    if out.parent != Path("."):
        out.parent.mkdir(parents=True, exist_ok=True)
    plot_training_curves(runs, out, metric=args.metric, x=args.x, title=args.title or "")
    print(f"saved {out}")
