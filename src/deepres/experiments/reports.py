"""An experiment's report: the runs' results read from their files, and the markdown that
shows them (tables, the training paragraph, ``report.md``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepres.checkpoints import MODEL_FILE, load_model
from deepres.errors import DeepresError
from deepres.experiments.model_names import display_name
from deepres.experiments.settings import Settings
from deepres.models import count_params
from deepres.train import TrainConfig, read_metrics

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """The numbers of one run, read from its ``metrics.jsonl`` (errors are fractions). Test
    errors are the final weights' (the last evaluated epoch): nothing here is chosen on the
    test split; ``best_train_error`` is the lowest training error over the epochs."""

    run: Path
    model: str
    rows: list[dict[str, Any]]
    iterations: int
    final_train_error: float
    best_train_error: float
    final_test_error: float | None
    train_time_s: float
    params: int | None = None

    @property
    def label(self) -> str:
        return display_name(self.model)


def read_run(run: Path, with_params: bool = True) -> RunResult:
    """A run's results from its files: metrics.jsonl for errors, model.safetensors for the
    parameter count."""
    rows = read_metrics(run)
    if not rows:
        raise DeepresError(f"{run}/metrics.jsonl is empty: the run has not finished an epoch")
    config = json.loads((run / "config.json").read_text())
    tested = [r["test_error"] for r in rows if "test_error" in r]
    params = None
    if with_params and (run / MODEL_FILE).is_file():
        model, _ = load_model(run / MODEL_FILE)
        params = count_params(model)
    return RunResult(
        run=run,
        model=config["model"],
        rows=rows,
        iterations=rows[-1]["step"],
        final_train_error=rows[-1]["train_error"],
        best_train_error=min(r["train_error"] for r in rows),
        final_test_error=tested[-1] if tested else None,
        train_time_s=rows[-1].get("time", 0.0),
        params=params,
    )


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage for a table; ``n/a`` when missing."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def count(value: int | None) -> str:
    """A count with thousands separators for a table; ``n/a`` when missing."""
    return "n/a" if value is None else f"{value:,}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def describe_training(settings: Settings, cfg: TrainConfig) -> str:
    """One paragraph saying how every run of the experiment was trained."""
    length = f"{cfg.iters} iterations" if cfg.iters else f"{cfg.epochs} epochs"
    subset = (
        f"the first {cfg.train_subset} training images of each class"
        if cfg.train_subset
        else "all training images"
    )
    if cfg.schedule == "step":
        schedule = f"lr {cfg.lr} divided by {1 / cfg.gamma:g} at {cfg.milestones} of training"
    elif cfg.schedule == "onecycle":
        schedule = f"one-cycle lr peaking at {cfg.lr} after {cfg.warmup:.0%} of training"
    else:
        schedule = f"lr {cfg.lr} ({cfg.schedule} schedule)"
    if cfg.test_subset:
        tested = f"the first {cfg.test_subset} test images of each class"
    else:
        tested = "all test images"
    return (
        f"Budget `{settings.budget}`: {settings.description}. Every run follows recipe "
        f"`{cfg.recipe}` as the budget sets it: {length} of batch {cfg.batch_size} on {subset} "
        f"of `{cfg.data}`, {schedule}, weight decay {cfg.weight_decay}, momentum {cfg.momentum}, "
        f"augmentation `{cfg.augment}`; tested on {tested} after every epoch."
    )


def write_report(settings: Settings, text: str) -> Path:
    """Write ``text`` as the experiment's ``report.md``; returns its path."""
    path = settings.out / "report.md"
    path.write_text(text.rstrip() + "\n")
    log.info("wrote %s", path)
    return path
