"""The paper's experiments as commands: ``deepres experiment NAME``.

    from deepres.experiments import run_experiment
    report = run_experiment("degradation", budget="small")   # runs/degradation/report.md

Each experiment trains its runs (resumably: finished runs are kept, interrupted ones
resumed), then writes ``report.md`` and PNG figures from the runs' metrics files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deepres.errors import DeepresError
from deepres.experiments.budgets import BUDGETS, get_budget
from deepres.experiments.common import Settings
from deepres.train.runlock import RunLock

EXPERIMENTS = {
    "degradation": "paper Fig. 1 and Fig. 6: plain nets vs ResNets of growing depth",
    "cifar-table": "paper Table 6: CIFAR-10 test error of ResNet-20 ... 110",
    "layer-responses": "paper Fig. 7: std of layer responses, plain vs ResNet",
    "shortcuts": "paper Table 3 on CIFAR: shortcut options A, B, C",
}


def run_experiment(
    name: str,
    *,
    out: str | Path | None = None,
    data: str | None = None,
    data_root: str | None = None,
    budget: str = "small",
    depths: Sequence[int] | None = None,
    seeds: int | None = None,
    source: str | Path | None = None,
    threads: int | None = None,
    device: str | None = None,
    progress: str | None = None,
) -> Path:
    """Run (or finish) experiment ``name``; returns the path of its report.md."""
    from deepres.experiments import cifar_table, degradation, layer_responses, shortcuts

    if name not in EXPERIMENTS:
        raise DeepresError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    if source is not None and name != "layer-responses":
        raise DeepresError("--from is for the layer-responses experiment only")
    settings = Settings.create(
        name,
        out=out,
        data=data,
        data_root=data_root,
        budget=budget,
        depths=depths,
        seeds=seeds,
        source=source,
        threads=threads,
        device=device,
        progress=progress,
    )
    with RunLock(settings.out):  # one experiment per folder (each run also locks its own)
        if name == "layer-responses":
            return layer_responses.run(settings, explicit_depths=bool(depths))
        module = {"degradation": degradation, "cifar-table": cifar_table, "shortcuts": shortcuts}
        return module[name].run(settings)


__all__ = ["BUDGETS", "EXPERIMENTS", "Settings", "get_budget", "run_experiment"]
