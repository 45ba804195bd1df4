"""Training configuration: defaults, recipes kept as data files, and command-line overrides.

Resolution order: dataclass defaults < recipe file < explicit options. The resolved
configuration is saved as ``config.json`` in the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from deepres.errors import DeepresError

SCHEDULES = ("step", "cosine", "onecycle", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
AUGMENTS = ("crop-flip", "flip", "scale-flip", "none")


@dataclass
class TrainConfig:
    model: str = "resnet20"
    data: str = "cifar10-jpeg"
    data_root: str | None = None
    out: str = "runs/train"
    recipe: str | None = None
    # length: exactly one of epochs / iters decides (iters wins when both are given)
    epochs: int | None = 10
    iters: int | None = None
    batch_size: int = 128
    # optimisation (SGD)
    lr: float = 0.1
    # linear scaling rule (Goyal et al. 2017): train with lr * batch_size / lr_scale_batch
    lr_scale_batch: int | None = None
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    warmup: float = 0.0  # linear warm-up, in epochs (fraction of training for onecycle)
    warmup_lr: float | None = None  # he2016: constant low lr until train error < threshold
    warmup_until_error: float = 0.8
    warmup_min_depth: int = 110
    label_smoothing: float = 0.0
    grad_accum_steps: int = 1
    # model
    num_classes: int | None = None  # default: the data set's class count
    shortcut: str | None = None
    zero_init_residual: bool = False
    init_from: str | None = None
    # data
    augment: str = "crop-flip"
    image_size: int | None = None  # folder data sets: crop size (default 224)
    train_subset: int | None = None  # first k images of each class
    test_subset: int | None = None
    val_split: int = 0  # hold out this many training images as the test set
    workers: int | None = None
    # speed
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    grad_checkpointing: bool = False  # recompute activations per block (less memory)
    device: str = "auto"
    threads: int | None = None
    sync_bn: bool = False
    # bookkeeping
    seed: int = 0
    eval_every: int = 1  # epochs
    checkpoint_every: int = 0  # iterations; 0 = at the end of every epoch
    progress: str = "auto"  # auto | bar | lines | off
    detect_anomaly: bool = False
    description: str = ""

    def validate(self) -> TrainConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise DeepresError(message)

        need(self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}")
        need(self.amp in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}")
        need(self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}")
        need(self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}")
        need(self.iters is None or self.iters > 0, f"--iters must be positive, got {self.iters}")
        need(
            self.epochs is None or self.epochs > 0, f"--epochs must be positive, got {self.epochs}"
        )
        need(self.iters is not None or self.epochs is not None, "give --epochs or --iters")
        need(0 < self.lr < math.inf, f"--lr must be a positive number, got {self.lr}")
        need(
            self.lr_scale_batch is None or self.lr_scale_batch > 0,
            f"--scale-lr (the reference batch) must be positive, got {self.lr_scale_batch}",
        )
        need(self.momentum >= 0, f"--momentum must be >= 0, got {self.momentum}")
        need(
            self.momentum > 0 or not self.nesterov,
            "--nesterov needs a positive --momentum (or --no-nesterov)",
        )
        need(self.weight_decay >= 0, "--weight-decay must be >= 0")
        need(
            0 <= self.warmup < 1 if self.schedule == "onecycle" else self.warmup >= 0,
            f"--warmup must be >= 0 (in epochs; for --schedule onecycle a fraction of training "
            f"in [0, 1)), got {self.warmup}",
        )
        need(0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)")
        need(self.grad_accum_steps >= 1, "--grad-accum-steps must be >= 1")
        need(
            self.batch_size % self.grad_accum_steps == 0,
            f"--batch-size {self.batch_size} must be a multiple of --grad-accum-steps "
            f"{self.grad_accum_steps}",
        )
        need(self.eval_every >= 1, "--eval-every must be >= 1")
        need(self.checkpoint_every >= 0, "--checkpoint-every must be >= 0")
        need(self.val_split >= 0, "--val-split must be >= 0")
        need(
            all(0 < m < 1 for m in self.milestones),
            "milestones are fractions of the training length, each in (0, 1)",
        )
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def list_recipes() -> list[str]:
    folder = resources.files("deepres.train") / "recipes"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def load_recipe(name: str) -> dict[str, Any]:
    path = resources.files("deepres.train") / "recipes" / f"{name}.json"
    if not path.is_file():
        raise DeepresError(f"unknown recipe {name!r}: choose one of {', '.join(list_recipes())}")
    return json.loads(path.read_text())


def resolve_config(recipe: str | None = None, **options: Any) -> TrainConfig:
    """Defaults, then the recipe, then the options that are not None."""
    values: dict[str, Any] = {}
    if recipe:
        values.update(load_recipe(recipe))
        if "iters" in values:  # a recipe's length in iterations replaces the default epochs
            values.setdefault("epochs", None)
        values["recipe"] = recipe
    given = {k: v for k, v in options.items() if v is not None}
    if "epochs" in given and "iters" not in given:
        values["iters"] = None
    values.update(given)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - names
    if unknown:
        raise DeepresError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return TrainConfig(**values).validate()


# Options that may differ between a run's first start and its resumption: where and how it
# runs, never what it computes.
RESUME_OVERRIDABLE = frozenset(
    {"data_root", "threads", "device", "progress", "workers", "grad_checkpointing", "description"}
)


def resume_conflicts(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The options in ``wanted`` that differ from a run's ``saved`` configuration and may
    not change on resume (see ``RESUME_OVERRIDABLE``)."""
    return [
        key
        for key, value in wanted.items()
        if key not in RESUME_OVERRIDABLE and value != saved.get(key)
    ]


def resume_config(run: str | Path, options: dict[str, Any]) -> TrainConfig:
    """The saved configuration of ``run`` with ``options`` applied, refusing options that
    would change what the run computes."""
    saved_file = Path(run) / "config.json"
    if not saved_file.is_file():
        raise DeepresError(
            f"nothing to resume in {run}: it has no config.json (a run stopped "
            "before it wrote one: start it again with its original command)"
        )
    values = json.loads(saved_file.read_text())
    for key in resume_conflicts(values, options):
        raise DeepresError(
            f"--{key.replace('_', '-')} {options[key]} differs from the run's {values.get(key)}"
            f" (in {saved_file}); resume with the run's own settings or start a new run"
        )
    values.update(options, out=str(run))
    return TrainConfig(**values).validate()
