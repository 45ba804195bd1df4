"""An experiment's settings: the options a caller chooses (``ExperimentOptions``, the flags of
``deepres experiment``) and the ``Settings`` they give once the budget fills in the rest."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepres.errors import DeepresError
from deepres.experiments.budgets import DEFAULT_DATA, RECIPE, default_data, get_budget
from deepres.experiments.model_names import check_depth
from deepres.train import TrainConfig, resolve_config


@dataclass(frozen=True)
class ExperimentOptions:
    """What a caller chooses for an experiment; ``None`` leaves it to the budget."""

    out: str | Path | None = None  # default runs/NAME
    data: str | None = None
    data_root: str | None = None
    budget: str = "small"
    depths: Sequence[int] | None = None
    seeds: int | None = None
    epochs: int | None = None  # imagenette: the runs' length (default: the budget's)
    source: str | Path | None = None  # layer-responses: measure the finished runs in this folder
    threads: int | None = None
    device: str | None = None
    progress: str | None = None


def experiment_options(
    options: ExperimentOptions | None = None, **fields: Any
) -> ExperimentOptions:
    """``options`` (the defaults when ``None``) with ``fields`` changed; an unknown field is a
    TypeError."""
    return dataclasses.replace(options or ExperimentOptions(), **fields)


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
    def create(cls, name: str, options: ExperimentOptions | None = None, **fields: Any) -> Settings:
        """The settings of experiment ``name``: ``options`` (or ``fields``, the same options by
        keyword), then the budget's defaults."""
        chosen = experiment_options(options, **fields)
        spec = get_budget(chosen.budget)
        depths = list(chosen.depths) if chosen.depths else list(spec["depths"][name])
        for depth in depths:
            check_depth(depth)
        if chosen.seeds is not None and chosen.seeds < 1:
            raise DeepresError(f"--seeds must be at least 1, got {chosen.seeds}")
        return cls(
            name=name,
            out=Path(chosen.out) if chosen.out else Path("runs") / name,
            data=chosen.data or default_data(name, chosen.budget),
            data_root=chosen.data_root,
            budget=chosen.budget,
            depths=sorted(set(depths)),
            seeds=chosen.seeds or spec["seeds"],
            source=Path(chosen.source) if chosen.source else None,
            threads=chosen.threads,
            device=chosen.device,
            progress=chosen.progress,
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
