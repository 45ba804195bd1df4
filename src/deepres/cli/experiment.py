"""``deepres experiment NAME``: one of the paper's experiments, resumable, with its report."""

from __future__ import annotations

import argparse
import dataclasses

from deepres.cli.options import device_name, existing_folder, positive_int
from deepres.experiments import BUDGETS, EXPERIMENTS, ExperimentOptions
from deepres.experiments.budgets import default_data
from deepres.train.config import PROGRESS_MODES


def register(sub: argparse._SubParsersAction) -> None:
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
    ex.add_argument("--epochs", type=positive_int, help="imagenette: epochs per run (budget's)")
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
    ex.add_argument("--progress", choices=PROGRESS_MODES)
    ex.set_defaults(run=run)


def options_from(args: argparse.Namespace) -> ExperimentOptions:
    """The parsed flags as experiment options (each flag's dest is the option's name)."""
    names = [field.name for field in dataclasses.fields(ExperimentOptions)]
    return ExperimentOptions(**{name: getattr(args, name) for name in names})


def run(args: argparse.Namespace) -> None:
    from deepres.data import check_data
    from deepres.experiments import run_experiment

    options = options_from(args)
    if options.source is None:  # --from measures finished runs: it trains nothing
        check_data(options.data or default_data(args.name, options.budget), options.data_root)
    report = run_experiment(args.name, options)
    print(f"report: {report}")
