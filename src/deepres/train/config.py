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

from deepres.errors import DeepresError, first_line

SCHEDULES = ("step", "cosine", "onecycle", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
# randaugment / trivial: the data's own crops and flips, then RandAugment (Cubuk et al. 2020)
# or TrivialAugmentWide (Müller & Hutter 2021) per image (torchvision.transforms.v2)
# auto: the data set's own (see ``train.batches.data_augment``)
AUGMENTS = ("crop-flip", "flip", "scale-flip", "none", "randaugment", "trivial", "auto")


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
    norm_weight_decay: float | None = None  # of normalisation layers (default: weight_decay)
    schedule: str = "step"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    warmup: float = 0.0  # linear warm-up, in epochs (fraction of training for onecycle)
    warmup_lr: float | None = None  # he2016: constant low lr until train error < threshold
    warmup_until_error: float = 0.8
    warmup_min_depth: int = 110
    label_smoothing: float = 0.0
    grad_accum_steps: int = 1
    # weight averaging and batch mixing
    ema: float | None = None  # decay of an exponential moving average of the weights
    ema_warmup: bool = True  # the decay grows as min(ema, (1 + t) / (10 + t)) with step t
    mixup: float = 0.0  # alpha of mixup's Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0  # alpha of cutmix; 0 = off
    mix_prob: float = 1.0  # the share of batches that are mixed (when mixup/cutmix is on)
    # model
    num_classes: int | None = None  # default: the data set's class count
    shortcut: str | None = None
    zero_init_residual: bool = False
    init_from: str | None = None
    # data
    augment: str = "crop-flip"
    crop_padding: int = 4  # in-memory crop-flip: pixels of zero padding before the crop
    random_erasing: float = 0.0  # probability of erasing a random rectangle of an image
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
    progress_every: float = 30.0  # seconds between progress lines (--progress lines)
    detect_anomaly: bool = False
    description: str = ""

    def validate(self) -> TrainConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise DeepresError(message)

        need(self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}")
        need(self.amp in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}")
        need(self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}")
        need(
            self.ema is None or 0 < self.ema < 1,
            f"--ema is a decay in (0, 1), such as 0.999; got {self.ema}",
        )
        need(self.crop_padding >= 0, "--crop-padding must be >= 0")
        need(self.mixup >= 0 and self.cutmix >= 0, "--mixup and --cutmix alphas must be >= 0")
        need(0 <= self.mix_prob <= 1, f"--mix-prob must be in [0, 1], got {self.mix_prob}")
        need(
            0 <= self.random_erasing <= 1,
            f"--random-erasing is a probability in [0, 1], got {self.random_erasing}",
        )
        need(self.progress_every > 0, "--progress-every must be a positive number of seconds")
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
            self.norm_weight_decay is None or self.norm_weight_decay >= 0,
            "--norm-weight-decay must be >= 0",
        )
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
    """The names of the built-in recipes."""
    folder = resources.files("deepres.train") / "recipes"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


RECIPE_SUFFIXES = (".json", ".yaml", ".yml")


def load_recipe(name: str) -> dict[str, Any]:
    """A recipe's options: a built-in name (``fast-cpu``) or a JSON/YAML file of
    ``TrainConfig`` fields, such as a run's ``config.json``."""
    if name in list_recipes():
        path = resources.files("deepres.train") / "recipes" / f"{name}.json"
        return json.loads(path.read_text())
    if Path(name).suffix.lower() not in RECIPE_SUFFIXES and not Path(name).is_file():
        raise DeepresError(
            f"unknown recipe {name!r}: choose one of {', '.join(list_recipes())} "
            "(deepres recipes describes them), or give a .json/.yaml file"
        )
    return read_recipe_file(Path(name))


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The options in a recipe file; only plain data is read (``yaml.safe_load``)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise DeepresError(f"cannot read the recipe {path}: {err.strerror}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as err:  # noqa: BLE001 - JSON and YAML parsers raise their own kinds
        first = first_line(err)
        raise DeepresError(f"the recipe {path} is not valid JSON/YAML: {first}") from None
    if not isinstance(values, dict):
        raise DeepresError(f"the recipe {path} must hold a mapping of option: value")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise DeepresError(
            f"the recipe {path} has unknown option(s) {', '.join(unknown)}; the options are "
            "the fields of deepres.train.TrainConfig (see a run's config.json)"
        )
    values.pop("recipe", None)  # a run's config.json names the recipe it started from
    return values


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
    {
        "data_root",
        "threads",
        "device",
        "progress",
        "progress_every",
        "workers",
        "grad_checkpointing",
        "description",
    }
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
