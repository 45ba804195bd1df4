"""``deepres experiment NAME`` and ``deepres plot RUN ...``."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_experiment(args: argparse.Namespace) -> None:
    from deepres.data import check_data
    from deepres.experiments import run_experiment
    from deepres.experiments.budgets import default_data

    if args.source is None:  # --from measures finished runs: it trains nothing
        check_data(args.data or default_data(args.name, args.budget), args.data_root)
    report = run_experiment(
        args.name,
        out=args.out,
        data=args.data,
        data_root=args.data_root,
        budget=args.budget,
        depths=args.depths,
        seeds=args.seeds,
        source=args.source,
        threads=args.threads,
        device=args.device,
        progress=args.progress,
    )
    print(f"report: {report}")


def cmd_plot(args: argparse.Namespace) -> None:
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


def register(sub: argparse._SubParsersAction) -> None:
    from deepres.cli import device_name, existing_folder, existing_path, positive_int
    from deepres.experiments import BUDGETS, EXPERIMENTS

    ex = sub.add_parser(
        "experiment",
        help="run one of the paper's experiments (resumable) and write its report",
        description="Experiments: "
        + "; ".join(f"{name}: {text}" for name, text in EXPERIMENTS.items()),
    )
    ex.add_argument("name", choices=list(EXPERIMENTS))
    ex.add_argument("--data", help="cifar10-jpeg (default), fashion-mnist, or a folder path")
    ex.add_argument("--data-root", type=existing_folder, help="folder holding the named data sets")
    ex.add_argument(
        "--budget",
        choices=list(BUDGETS),
        default="small",
        help="tiny (tests), small (a CPU, about an hour), paper (the paper's 64k iterations)",
    )
    ex.add_argument("--out", help="experiment folder (default runs/NAME)")
    ex.add_argument("--seeds", type=positive_int, help="runs per network (default: budget's)")
    ex.add_argument(
        "--depths", type=positive_int, nargs="+", help="network depths, 6n+2 (default: budget's)"
    )
    ex.add_argument(
        "--from",
        dest="source",
        type=existing_folder,
        metavar="RUNS_DIR",
        help="layer-responses: measure the finished runs in this folder instead of training",
    )
    ex.add_argument("--threads", type=positive_int, help="CPU threads for training")
    ex.add_argument("--device", type=device_name, help="auto, cpu, cuda, cuda:N")
    ex.add_argument("--progress", choices=["auto", "bar", "lines", "off"])
    ex.set_defaults(run=cmd_experiment)

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
    plot.set_defaults(run=cmd_plot)
