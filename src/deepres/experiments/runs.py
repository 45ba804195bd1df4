"""An experiment's runs, trained resumably.

Each run is a training in its own folder under the experiment folder. A run counts as
finished when its folder holds ``summary.json``; an unfinished run with ``state.pt`` is
resumed; any other is started afresh. So an interrupted experiment, run again, trains only
what is left.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from deepres.checkpoints import STATE_FILE
from deepres.errors import DeepresError
from deepres.train import TrainConfig, train
from deepres.train.config import resume_conflicts

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def is_finished(run: Path) -> bool:
    """Whether the run in folder ``run`` trained to its end."""
    return (run / SUMMARY_FILE).is_file()


def check_same_config(cfg: TrainConfig, run: Path) -> None:
    """Refuse to continue (or reuse) a run that was started with other settings."""
    saved_file = run / "config.json"
    if not saved_file.is_file():
        return
    saved = json.loads(saved_file.read_text())
    wanted = {k: v for k, v in dataclasses.asdict(cfg).items() if k in saved and k != "out"}
    for key in resume_conflicts(saved, wanted):
        raise DeepresError(
            f"{run} was trained with {key}={saved.get(key)!r}, but this experiment asks for "
            f"{wanted[key]!r}; use another --out (or the budget and options it was run with), or "
            f"delete {run} to train it again"
        )


def ensure_run(cfg: TrainConfig) -> str:
    """Train the run ``cfg`` describes unless it is finished; resume it if it was
    interrupted. Returns ``"finished"``, ``"resumed"`` or ``"trained"``."""
    run = Path(cfg.out)
    check_same_config(cfg, run)
    if is_finished(run):
        log.info("%s: finished earlier, kept", run)
        return "finished"
    if (run / STATE_FILE).is_file():
        log.info("%s: resuming from its last checkpoint", run)
        train(cfg, resume=True)
        return "resumed"
    log.info("%s: training", run)
    train(cfg)
    return "trained"


def run_all(configs: Sequence[TrainConfig]) -> dict[str, str]:
    """Every run in order (see ``ensure_run``); returns run folder -> what was done."""
    return {cfg.out: ensure_run(cfg) for cfg in configs}
