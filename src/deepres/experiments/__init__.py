"""The paper's experiments as commands: ``deepres experiment NAME``.

    from deepres.experiments import run_experiment
    report = run_experiment("degradation", budget="small")   # runs/degradation/report.md

Each experiment trains its runs (resumably: finished runs are kept, interrupted ones
resumed), then writes ``report.md`` and PNG figures from the runs' metrics files.

- ``settings``: ``ExperimentOptions`` (what a caller chooses) and ``Settings`` (those
  options with the budget's defaults filled in; the training config of each run).
- ``budgets``: the budgets (tiny, small, paper) as data.
- ``runs``: training the runs, keeping finished ones and resuming interrupted ones.
- ``reports``: reading the runs' results; markdown tables and ``report.md``.
- ``model_names``: CIFAR network names (``plain20``, ``resnet56``) and their paper spelling.
- ``degradation``, ``cifar_table``, ``layer_responses``, ``shortcuts``, ``extreme_depth``,
  ``ensemble``, ``imagenette``: one experiment each; ``depth_probe``: extreme_depth's
  measurement of one network, run in its own process (``python -m
  deepres.experiments.depth_probe``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepres.errors import DeepresError
from deepres.experiments.budgets import BUDGETS, get_budget
from deepres.experiments.settings import ExperimentOptions, Settings, experiment_options
from deepres.runtime.runlock import RunLock

EXPERIMENTS = {
    "degradation": "paper Fig. 1 and Fig. 6: plain nets vs ResNets of growing depth",
    "cifar-table": "paper Table 6: CIFAR-10 test error of ResNet-20 ... 110",
    "layer-responses": "paper Fig. 7: std of layer responses, plain vs ResNet",
    "shortcuts": "paper Table 3 on CIFAR: shortcut options A, B, C",
    "extreme-depth": "ResNet-1202 vs pre-activation ResNet-1001 (and ResNet-110, pre-act 164)",
    "ensemble": "ResNets of several seeds averaged (paper §4.1, Table 5) vs their best member",
    "imagenette": "Imagenette from random weights, one run per seed, beside the leaderboard",
}


def run_experiment(name: str, options: ExperimentOptions | None = None, **fields: Any) -> Path:
    """Run (or finish) experiment ``name``; returns the path of its report.md.

    The options come as an ``ExperimentOptions``, or as its fields by keyword:
    ``run_experiment("degradation", budget="tiny", out="runs/deg")``."""
    from deepres.experiments import (
        cifar_table,
        degradation,
        ensemble,
        extreme_depth,
        imagenette,
        layer_responses,
        shortcuts,
    )

    options = experiment_options(options, **fields)
    if name not in EXPERIMENTS:
        raise DeepresError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    if options.source is not None and name != "layer-responses":
        raise DeepresError("--from is for the layer-responses experiment only")
    if options.epochs is not None and name != "imagenette":
        raise DeepresError("--epochs is for the imagenette experiment only (the others: --budget)")
    settings = Settings.create(name, options)
    with RunLock(settings.out):  # one experiment per folder (each run also locks its own)
        if name == "layer-responses":
            return layer_responses.run(settings, explicit_depths=bool(options.depths))
        if name == "ensemble":
            return ensemble.run(settings, members=options.seeds)
        if name == "imagenette":
            return imagenette.run(settings, members=options.seeds, epochs=options.epochs)
        module = {
            "degradation": degradation,
            "cifar-table": cifar_table,
            "shortcuts": shortcuts,
            "extreme-depth": extreme_depth,
        }
        return module[name].run(settings)


__all__ = [
    "BUDGETS",
    "EXPERIMENTS",
    "ExperimentOptions",
    "Settings",
    "get_budget",
    "run_experiment",
]
