"""What every experiment shares: settings, CIFAR model names, resumable runs, run summaries.

An experiment is a set of trainings, each in its own run folder under the experiment folder,
and a report written from the runs' ``metrics.jsonl``. A run counts as finished when its
folder holds ``summary.json``; an unfinished run with ``state.pt`` is resumed; any other is
started afresh. So an interrupted experiment, run again, trains only what is left.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepres.errors import DeepresError
from deepres.experiments.budgets import DEFAULT_DATA, RECIPE, default_data, get_budget
from deepres.models import count_params
from deepres.train import TrainConfig, read_metrics, resolve_config, train
from deepres.train.checkpoint import MODEL_FILE, STATE_FILE, load_model

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
# Options that may differ between the first start of a run and its resumption.
RUNTIME_OPTIONS = {"out", "data_root", "threads", "device", "progress", "workers", "description"}
MODEL_NAME = re.compile(r"^(plain|resnet)(\d+)$")


@dataclass
class Settings:
    """An experiment's options, after the budget's defaults are filled in."""

    name: str
    out: Path
    data: str = DEFAULT_DATA
    data_root: str | None = None
    budget: str = "small"
    depths: list[int] = dataclasses.field(default_factory=list)
    seeds: int = 1
    source: Path | None = None  # layer-responses: reuse the runs in this folder
    threads: int | None = None
    device: str | None = None
    progress: str | None = None
    train_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    response_images: int = 500

    @classmethod
    def create(
        cls,
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
    ) -> Settings:
        spec = get_budget(budget)
        chosen = list(depths) if depths else list(spec["depths"][name])
        for depth in chosen:
            check_depth(depth)
        if seeds is not None and seeds < 1:
            raise DeepresError(f"--seeds must be at least 1, got {seeds}")
        return cls(
            name=name,
            out=Path(out) if out else Path("runs") / name,
            data=data or default_data(name, budget),
            data_root=data_root,
            budget=budget,
            depths=sorted(set(chosen)),
            seeds=seeds or spec["seeds"],
            source=Path(source) if source else None,
            threads=threads,
            device=device,
            progress=progress,
            train_options=spec["train"],
            description=spec["description"],
            response_images=spec["response_images"],
        )

    def config(self, model: str, run: str, seed: int = 0, **extra: Any) -> TrainConfig:
        """The training configuration of one run: the recipe, then the budget, then ``extra``."""
        return resolve_config(
            RECIPE,
            model=model,
            data=self.data,
            data_root=self.data_root,
            out=str(self.out / run),
            seed=seed,
            threads=self.threads,
            device=self.device,
            progress=self.progress,
            eval_every=1,
            **{**self.train_options, **extra},
        )

    def save(self) -> None:
        """Record the options in ``experiment.json`` (for the reader; reruns do not need it)."""
        self.out.mkdir(parents=True, exist_ok=True)
        values = {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}
        (self.out / "experiment.json").write_text(json.dumps(values, indent=2) + "\n")


def check_depth(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise DeepresError(
            f"--depths {depth}: a CIFAR ResNet has 6n+2 layers (8, 14, 20, 32, 44, 56, 110, ...)"
        )
    return depth


def model_name(kind: str, depth: int) -> str:
    """``plain20``, ``resnet56``, ...: a CIFAR network of the paper's §4.2."""
    if kind not in ("plain", "resnet"):
        raise DeepresError(f"unknown network kind {kind!r}: 'plain' or 'resnet'")
    return f"{kind}{check_depth(depth)}"


def parse_model(name: str) -> tuple[str, int]:
    """``"plain56"`` -> ``("plain", 56)``."""
    match = MODEL_NAME.match(name)
    if not match:
        raise DeepresError(f"{name!r} is not a CIFAR plain or ResNet model name (plain20, ...)")
    return match.group(1), int(match.group(2))


def display_name(name: str) -> str:
    """The paper's spelling: ``plain56`` -> ``plain-56``, ``resnet56`` -> ``ResNet-56``."""
    kind, depth = parse_model(name)
    return f"{'ResNet' if kind == 'resnet' else 'plain'}-{depth}"


def is_finished(run: Path) -> bool:
    return (run / SUMMARY_FILE).is_file()


def check_same_config(cfg: TrainConfig, run: Path) -> None:
    """Refuse to continue (or reuse) a run that was started with other settings."""
    saved_file = run / "config.json"
    if not saved_file.is_file():
        return
    saved = json.loads(saved_file.read_text())
    wanted = dataclasses.asdict(cfg)
    for key, value in wanted.items():
        if key in RUNTIME_OPTIONS or key not in saved or saved[key] == value:
            continue
        raise DeepresError(
            f"{run} was trained with {key}={saved.get(key)!r}, but this experiment asks for "
            f"{value!r}; use another --out (or the budget and options it was run with), or "
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


@dataclass
class RunResult:
    """The numbers of one run, read from its ``metrics.jsonl`` (errors are fractions)."""

    run: Path
    model: str
    rows: list[dict[str, Any]]
    iterations: int
    final_train_error: float
    best_train_error: float
    final_test_error: float | None
    best_test_error: float | None
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
        best_test_error=min(tested) if tested else None,
        train_time_s=rows[-1].get("time", 0.0),
        params=params,
    )


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage for a table; ``n/a`` when missing."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


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
    path = settings.out / "report.md"
    path.write_text(text.rstrip() + "\n")
    log.info("wrote %s", path)
    return path
