"""Training configuration: defaults, recipes kept as data files, and command-line overrides.

Resolution order: dataclass defaults < recipe file < explicit options. The resolved
configuration is saved as ``config.json`` in the run folder.

Each option is declared once, as a ``TrainConfig`` field made by ``option``: its type (the
annotation), default, help text, group, choices and command-line check. ``deepres train``
makes its flags from them (``deepres.cli.train``), recipe files are checked against them
(``check_recipe``) and ``deepres recipes --options`` lists them.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from deepres.errors import DeepresError, first_line
from deepres.models.options import ACTIVATIONS, SHORTCUTS

SCHEDULES = ("step", "cosine", "onecycle", "constant", "flat-cos")
# sgd: torch.optim.SGD; adamw, radam: torch.optim's, with decoupled weight decay; lamb:
# timm.optim.Lamb (timm is imported only when it is asked for)
OPTIMIZERS = ("sgd", "adamw", "radam", "lamb")
AMP_MODES = ("auto", "off", "bf16", "fp16")
# randaugment / trivial: the data's own crops and flips, then RandAugment (Cubuk et al. 2020)
# or TrivialAugmentWide (Müller & Hutter 2021) per image (torchvision.transforms.v2)
# auto: the data set's own (see ``train.batches.data_augment``)
AUGMENTS = ("crop-flip", "flip", "scale-flip", "none", "randaugment", "trivial", "auto")
PROGRESS_MODES = ("auto", "bar", "lines", "off")
# large-image folders: decoded once at --decode-size and cropped a batch at a time (cached:
# in memory; mmap: memory-mapped from the cache file), or per image by DataLoader workers
FOLDER_MODES = ("cached", "mmap", "per-image")
# deepres average: BatchNorm statistics recomputed on this many training batches of this size
DEFAULT_BN_BATCHES = 50
DEFAULT_BN_BATCH_SIZE = 128
# the groups of ``deepres train --help``; "" is the command's own (model, data, recipe)
GROUPS = ("", "optimisation", "model and data", "runtime")
# command-line checks of a value, beyond its type (``deepres.cli.train`` maps them to parsers)
CHECKS = ("positive", "non_negative", "folder", "path", "device", "weights")


def option(
    default: Any = MISSING,
    *,
    help: str,
    group: str,
    choices: tuple[str, ...] | None = None,
    check: str | None = None,
    metavar: str | None = None,
    aliases: tuple[str, ...] = (),
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A ``TrainConfig`` field that is also an option: ``help`` and ``group`` (one of
    ``GROUPS``) for ``deepres train --help``; ``choices`` (one of the tuples above, never a
    copy), ``check`` (one of ``CHECKS``), ``metavar`` and ``aliases`` (other flags, such as
    ``--scale-lr``) for the command line; ``factory`` makes a mutable default."""
    if group not in GROUPS or check not in (None, *CHECKS):
        raise ValueError(f"option: unknown group {group!r} or check {check!r}")
    metadata = dict(
        help=help, group=group, choices=choices, check=check, metavar=metavar, aliases=aliases
    )
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


OPT, DATA, RUN = "optimisation", "model and data", "runtime"


@dataclass
class TrainConfig:
    """The options of a training run; each field's ``option`` says what it does."""

    model: str = option(
        "resnet20", group="", help="a name from deepres.list_models() (default resnet20)"
    )
    data: str = option(
        "cifar10-jpeg",
        group="",
        help="cifar10-jpeg, cifar10, cifar100, fashion-mnist, imagenette-224, "
        "synthetic:CxHxW:CLASSES[:N], or a folder path",
    )
    data_root: str | None = option(
        None,
        group="",
        check="folder",
        help="folder holding the named data sets (default $DEEPRES_DATA, then ../shared/data)",
    )
    out: str = option("runs/train", group=RUN, help="run folder (default runs/MODEL-DATA)")
    recipe: str | None = option(
        None,
        group="",
        help="a built-in recipe (deepres recipes lists them) or a JSON/YAML file of "
        "options, such as a run's config.json",
    )
    # length: exactly one of epochs / iters decides (iters wins when both are given)
    epochs: int | None = option(
        10, group=OPT, check="positive", help="train this many epochs (default 10)"
    )
    iters: int | None = option(
        None,
        group=OPT,
        check="positive",
        help="train this many iterations (overrides --epochs)",
    )
    batch_size: int = option(128, group=OPT, check="positive", help="global batch size")
    lr: float = option(0.1, group=OPT, help="the learning rate (default 0.1)")
    lr_scale_batch: int | None = option(
        None,
        group=OPT,
        check="positive",
        metavar="REF_BATCH",
        aliases=("--scale-lr",),
        help="linear scaling rule (Goyal et al. 2017): lr x global batch / REF_BATCH",
    )
    momentum: float = option(0.9, group=OPT, help="SGD momentum (default 0.9)")
    nesterov: bool = option(False, group=OPT, help="Nesterov momentum")
    weight_decay: float = option(1e-4, group=OPT, help="L2 weight decay (default 1e-4)")
    norm_weight_decay: float | None = option(
        None,
        group=OPT,
        help="weight decay of the BatchNorm weights and biases (default: --weight-decay)",
    )
    optimizer: str = option(
        "sgd",
        group=OPT,
        choices=OPTIMIZERS,
        help="sgd (default; --momentum, --nesterov), adamw or radam (torch.optim, decoupled "
        "weight decay), lamb (timm.optim.Lamb; needs timm)",
    )
    betas: list[float] | None = option(
        None,
        group=OPT,
        metavar="BETA",
        help="adamw, radam, lamb: their two betas (default: the optimizer's, 0.9 0.999)",
    )
    eps: float | None = option(
        None, group=OPT, help="adamw, radam, lamb: their epsilon (default: the optimizer's)"
    )
    lookahead: bool = option(
        False,
        group=OPT,
        help="wrap the optimizer in Lookahead (Zhang et al. 2019, timm.optim.Lookahead): "
        "every --lookahead-k steps the weights go back --lookahead-alpha of the way to "
        "slow weights; radam + lookahead is fastai's Ranger",
    )
    lookahead_k: int = option(6, group=OPT, check="positive", help="Lookahead: steps (6)")
    lookahead_alpha: float = option(
        0.5, group=OPT, help="Lookahead: the slow weights' step, in (0, 1] (0.5)"
    )
    layer_lr_decay: float | None = option(
        None,
        group=OPT,
        metavar="D",
        help="layer-wise lr (as timm's --layer-decay): the classifier (and a final BN) at "
        "lr, the last stage at lr x D, the one before at lr x D^2, ..., the stem last",
    )
    freeze_epochs: int = option(
        0,
        group=OPT,
        check="non_negative",
        metavar="N",
        help="fine-tuning: for the first N epochs only the classifier and the BatchNorm "
        "layers train (as fastai's freeze), the other weights get no update, weight decay "
        "or momentum; then everything trains",
    )
    schedule: str = option(
        "step",
        group=OPT,
        choices=SCHEDULES,
        help="learning-rate schedule (default step: x --gamma at each milestone; flat-cos: "
        "constant for a --flat share of training, then a cosine to 0, as fastai's "
        "fit_flat_cos)",
    )
    flat: float = option(
        0.72, group=OPT, help="flat-cos schedule: the share of training at constant lr (0.72)"
    )
    milestones: list[float] = option(
        group=OPT, factory=lambda: [0.5, 0.75], help="step schedule: fractions of training"
    )
    gamma: float = option(
        0.1, group=OPT, help="step schedule: multiply the lr by this at each milestone (0.1)"
    )
    warmup: float = option(0.0, group=OPT, help="linear warm-up in epochs (onecycle: fraction)")
    warmup_lr: float | None = option(
        None,
        group=OPT,
        help="He et al. 2016: a constant low lr until the training error is below "
        "--warmup-until-error, for models at least --warmup-min-depth deep",
    )
    warmup_until_error: float = option(
        0.8, group=OPT, help="--warmup-lr ends once the training error is below this (0.8)"
    )
    warmup_min_depth: int = option(
        110,
        group=OPT,
        check="non_negative",
        help="--warmup-lr applies to models this deep or deeper (110)",
    )
    label_smoothing: float = option(
        0.0, group=OPT, help="label smoothing of the cross-entropy loss, in [0, 1)"
    )
    grad_accum_steps: int = option(
        1,
        group=OPT,
        check="positive",
        help="split each batch into this many steps, their gradients summed",
    )
    # weight averaging and batch mixing
    ema: float | None = option(
        None,
        group=OPT,
        metavar="DECAY",
        help="also keep an exponential moving average of the weights (and BatchNorm "
        "statistics), such as 0.999; evaluated beside them, saved as ema.safetensors",
    )
    ema_warmup: bool = option(
        True,
        group=OPT,
        help="let the EMA's decay grow as min(DECAY, (1 + t) / (10 + t)) over the steps t "
        "(default), so the initial weights fade out; --no-ema-warmup: a plain EMA",
    )
    mixup: float = option(
        0.0, group=OPT, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA); 0 = off"
    )
    cutmix: float = option(
        0.0, group=OPT, metavar="ALPHA", help="cutmix with Beta(ALPHA, ALPHA); 0 = off"
    )
    mix_prob: float = option(
        1.0, group=OPT, metavar="P", help="mix this share of the batches (default 1)"
    )
    # model
    num_classes: int | None = option(
        None, group=DATA, check="positive", help="default: the data set's class count"
    )
    shortcut: str | None = option(
        None,
        group=DATA,
        choices=SHORTCUTS,
        help="A: zero-padding, B: projections where the shape changes, C: projections "
        "everywhere, none: no shortcuts (default: the model's own)",
    )
    zero_init_residual: bool = option(
        False, group=DATA, help="start every residual branch's last BatchNorm at zero"
    )
    act: str | None = option(
        None,
        group=DATA,
        choices=ACTIVATIONS,
        help="the activation wherever the model has a ReLU: relu, mish (nn.Mish) or silu "
        "(nn.SiLU) (default: the model's own)",
    )
    blur_pool: bool = option(
        False,
        group=DATA,
        help="anti-aliased downsampling: blur-pool after each stride (Zhang 2019, as timm's "
        "resnetblur)",
    )
    self_attention: bool = option(
        False,
        group=DATA,
        help="fastai's simple self-attention in the last block of the first stage",
    )
    init_from: str | None = option(
        None,
        group=DATA,
        check="weights",
        help="start from these weights: a file (safetensors or torch), a run folder (its "
        "final weights) or deepres folder, an http(s) URL (#sha256=HEX optional) or a "
        "published name (torchvision, torchvision:IMAGENET1K_V2, timm:ARCH.TAG, "
        "hf-hub:ORG/REPO); a new classifier when the class count differs",
    )
    # data
    augment: str = option(
        "crop-flip",
        group=DATA,
        choices=AUGMENTS,
        help="randaugment / trivial: the data's crops and flips, then RandAugment or "
        "TrivialAugmentWide on each image; auto: the data set's own (flips for "
        "Fashion-MNIST, padded crops and flips for other small images)",
    )
    crop_padding: int = option(
        4,
        group=DATA,
        check="non_negative",
        metavar="PIXELS",
        help="small in-memory images: zero padding before the random crop (4, as in §4.2)",
    )
    random_erasing: float = option(
        0.0,
        group=DATA,
        metavar="P",
        help="erase a random rectangle of each training image with probability P",
    )
    image_size: int | None = option(
        None, group=DATA, check="positive", help="crop size for image-folder data (224)"
    )
    train_subset: int | None = option(
        None, group=DATA, check="positive", help="use only the first K images of each class"
    )
    test_subset: int | None = option(
        None, group=DATA, check="positive", help="test on the first K images of each class"
    )
    val_split: int = option(
        0,
        group=DATA,
        check="positive",
        help="evaluate on N images held out of the training split instead of the test split; "
        "the best epoch on them is kept as best-val.safetensors",
    )
    workers: int | None = option(
        None,
        group=DATA,
        check="non_negative",
        help="DataLoader workers for image folders of large images",
    )
    folder_mode: str = option(
        "cached",
        group=DATA,
        choices=FOLDER_MODES,
        help="large-image folders: cached (decoded once at --decode-size, kept in memory, "
        "cropped a batch at a time), mmap (the same cache file memory-mapped from disk) or "
        "per-image (decoded and cropped per image by DataLoader workers each epoch)",
    )
    decode_size: int | None = option(
        None,
        group=DATA,
        check="positive",
        metavar="PIXELS",
        help="large-image folders: the cached images' side (short side resized to it, "
        "centre-cropped square; default ceil(image size / 0.8), 160 for 128)",
    )
    crop_scale: float = option(
        0.35,
        group=DATA,
        metavar="MIN",
        help="cached large-image folders: the smallest area share of a random-resized crop "
        "(0.35 as fastai's Imagenette scripts; torchvision's default is 0.08)",
    )
    # speed
    amp: str = option(
        "off",
        group=RUN,
        choices=AMP_MODES,
        help="mixed precision (default off; auto: bf16 where the hardware has it)",
    )
    channels_last: bool = option(False, group=RUN, help="channels-last memory format")
    compile: bool = option(False, group=RUN, help="torch.compile the model")
    grad_checkpointing: bool = option(
        False,
        group=RUN,
        help="keep one activation per block and recompute the rest in the backward pass",
    )
    device: str = option("auto", group=RUN, check="device", help="auto, cpu, cuda, cuda:N")
    threads: int | None = option(
        None, group=RUN, check="positive", help="CPU threads (default: the cores per process)"
    )
    sync_bn: bool = option(
        False, group=RUN, help="BatchNorm statistics over all processes (SyncBatchNorm)"
    )
    # bookkeeping
    seed: int = option(0, group=RUN, check="non_negative", help="random seed (default 0)")
    eval_every: int = option(1, group=RUN, check="positive", help="evaluate every N epochs")
    checkpoint_every: int = option(
        0,
        group=RUN,
        check="positive",
        help="also checkpoint every N iterations",  # 0: at the end of every epoch only
    )
    progress: str = option(
        "auto",
        group=RUN,
        choices=PROGRESS_MODES,
        help="auto: a bar on a terminal, else lines (step, loss, img/s, ETA) every "
        "--progress-every seconds",
    )
    progress_every: float = option(
        30.0, group=RUN, metavar="SECONDS", help="between progress lines (30)"
    )
    detect_anomaly: bool = option(
        False, group=RUN, help="torch.autograd anomaly detection (slow; finds a NaN's source)"
    )
    description: str = option(
        "", group=RUN, metavar="TEXT", help="a note on the run, kept in its config.json"
    )

    def validate(self) -> TrainConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise DeepresError(message)

        for spec in option_specs():
            value = getattr(self, spec.name)
            if spec.choices is not None and value is not None:
                need(value in spec.choices, f"{spec.flag} {choice_problem(spec.choices, value)}")
        need(
            self.ema is None or 0 < self.ema < 1,
            f"--ema is a decay in (0, 1), such as 0.999; got {self.ema}",
        )
        need(self.crop_padding >= 0, "--crop-padding must be >= 0")
        need(0 < self.crop_scale <= 1, f"--crop-scale must be in (0, 1], got {self.crop_scale}")
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
        check_optimizer_options(self)
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


def check_optimizer_options(cfg: TrainConfig) -> None:
    """Refuse values of the optimizer's and fine-tuning's options that no run could use."""
    betas, decay = cfg.betas, cfg.layer_lr_decay
    checks = [
        (
            betas is None or (len(betas) == 2 and all(0 <= b < 1 for b in betas)),
            f"--betas takes two numbers in [0, 1), such as 0.9 0.999; got {betas}",
        ),
        (cfg.eps is None or cfg.eps > 0, f"--eps must be positive, got {cfg.eps}"),
        (cfg.lookahead_k >= 1, f"--lookahead-k must be positive, got {cfg.lookahead_k}"),
        (
            0 < cfg.lookahead_alpha <= 1,
            f"--lookahead-alpha must be in (0, 1], got {cfg.lookahead_alpha}",
        ),
        (
            decay is None or 0 < decay <= 1,
            f"--layer-lr-decay must be in (0, 1], such as 0.75; got {decay}",
        ),
        (cfg.freeze_epochs >= 0, f"--freeze-epochs must be >= 0, got {cfg.freeze_epochs}"),
        (0 <= cfg.flat < 1, f"--flat is a share of training in [0, 1), got {cfg.flat}"),
    ]
    for ok, message in checks:
        if not ok:
            raise DeepresError(message)


@dataclass(frozen=True)
class OptionSpec:
    """A ``TrainConfig`` field as an option: what the command line and recipe files see."""

    name: str
    kind: type  # bool, int, float or str (of each item, for a list)
    optional: bool  # None is allowed
    many: bool  # a list of values
    default: Any
    help: str
    group: str
    check: str | None
    metavar: str | None
    aliases: tuple[str, ...]
    choices: tuple[str, ...] | None  # the allowed values, or None for any of the type

    @property
    def flag(self) -> str:
        """The command-line flag: the name with dashes (``--lr-scale-batch``)."""
        return "--" + self.name.replace("_", "-")

    def expected(self) -> str:
        """The values allowed, in words: ``an integer or null``, ``one of A, B``."""
        plural, single = KIND_WORDS[self.kind]
        if self.choices is not None:
            single = "one of " + ", ".join(self.choices)
        elif self.many:
            single = f"a list of {plural}"
        return single + (" or null" if self.optional else "")


# the kind of a value, in words: a list of one (plural) and a single one
KIND_WORDS: dict[type, tuple[str, str]] = {
    bool: ("true or false", "true or false"),
    int: ("integers", "an integer"),
    float: ("numbers", "a number"),
    str: ("strings", "a string"),
}


@functools.cache
def option_specs() -> tuple[OptionSpec, ...]:
    """Every ``TrainConfig`` field as an option, in declaration order."""
    hints = typing.get_type_hints(TrainConfig)
    specs = []
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        optional = type(None) in typing.get_args(hint)
        if optional:
            (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        many = typing.get_origin(hint) is list
        kind = typing.get_args(hint)[0] if many else hint
        default = f.default_factory() if f.default is MISSING else f.default
        described = {key: f.metadata[key] for key in ("help", "group", "check", "metavar")}
        specs.append(
            OptionSpec(
                f.name,
                kind,
                optional,
                many,
                default,
                aliases=f.metadata["aliases"],
                choices=f.metadata["choices"],
                **described,
            )
        )
    return tuple(specs)


def choice_problem(allowed: Iterable[str], value: Any) -> str:
    """The message for a value that is not one of ``allowed``."""
    return f"must be one of {', '.join(allowed)}; got {value!r}"


def value_problem(spec: OptionSpec, value: Any) -> str | None:
    """What is wrong with ``value`` for the option ``spec`` (its type, its choices), or
    None when nothing is."""
    if value is None and spec.optional:
        return None
    items = value if spec.many and isinstance(value, list) else [value]
    fits = (spec.many == isinstance(value, list)) and all(_is_a(spec.kind, item) for item in items)
    if fits and spec.choices is not None and value not in spec.choices:
        return f"{spec.name} {choice_problem(spec.choices, value)}"
    if fits:
        return None
    hint = ""
    if spec.kind is float and isinstance(value, str) and _is_number(value):
        hint = " (YAML reads 1e-4 as text: write 1.0e-4)"
    return f"{spec.name} must be {spec.expected()}, got {value!r}{hint}"


def _is_a(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def unknown_names(keys: Iterable[Any]) -> str:
    """The keys that are not options, each with the close options it may mean, such as
    ``batchsize (did you mean batch_size?)``; empty when every key is an option."""
    names = [spec.name for spec in option_specs()]
    unknown = sorted(str(key) for key in keys if key not in names)
    described = []
    for key in unknown:
        close = difflib.get_close_matches(key, names, n=3)
        described.append(f"{key} (did you mean {' or '.join(close)}?)" if close else key)
    return ", ".join(described)


def check_recipe(values: dict[Any, Any], source: str) -> None:
    """Refuse a recipe's unknown options, values of the wrong type and values that are not
    among an option's choices, naming ``source`` (the recipe's name or file)."""
    unknown = unknown_names(values)
    if unknown:
        raise DeepresError(
            f"the recipe {source} has unknown option(s) {unknown}; the options are the "
            "fields of deepres.train.TrainConfig (deepres recipes --options lists them)"
        )
    specs = {spec.name: spec for spec in option_specs()}
    for key, value in values.items():
        problem = value_problem(specs[key], value)
        if problem:
            raise DeepresError(f"the recipe {source}: {problem}")


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
        values = json.loads(path.read_text())
        check_recipe(values, name)
        return values
    if Path(name).suffix.lower() not in RECIPE_SUFFIXES and not Path(name).is_file():
        raise DeepresError(
            f"unknown recipe {name!r}: choose one of {', '.join(list_recipes())} "
            "(deepres recipes describes them), or give a .json/.yaml file"
        )
    return read_recipe_file(Path(name))


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The options in a recipe file; only plain data is read (``yaml.safe_load``), and
    checked (``check_recipe``)."""
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
    check_recipe(values, str(path))
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
    unknown = unknown_names(values)
    if unknown:
        raise DeepresError(f"unknown training option(s): {unknown}")
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
    values.setdefault("folder_mode", "per-image")  # a run from before the cache continues so
    for key in resume_conflicts(values, options):
        raise DeepresError(
            f"--{key.replace('_', '-')} {options[key]} differs from the run's {values.get(key)}"
            f" (in {saved_file}); resume with the run's own settings or start a new run"
        )
    values.update(options, out=str(run))
    return TrainConfig(**values).validate()
