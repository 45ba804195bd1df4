"""The learning rate at every step: pure functions of the step, so resuming needs no
scheduler state (paper §3.4: start at 0.1, divide by 10 at the milestones; §4.2: the
warm-up of ResNet-110); and the run's length in steps and epochs (``RunLength``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from deepres.train.config import TrainConfig


@dataclass(frozen=True)
class RunLength:
    """How long a run is: ``--iters``, or ``--epochs`` of whole SGD steps."""

    steps_per_epoch: int
    total: int  # SGD steps of the whole run
    epochs: int  # the last one may stop inside (--iters)

    @classmethod
    def of(cls, cfg: TrainConfig, micro_batches: int) -> RunLength:
        """The length of a run whose epoch has ``micro_batches`` micro-batches."""
        steps_per_epoch = micro_batches // cfg.grad_accum_steps
        total: int = cfg.iters or cfg.epochs * steps_per_epoch  # type: ignore[operator]
        return cls(steps_per_epoch, total, math.ceil(total / steps_per_epoch))

    def done(self, step: int, epoch: int) -> bool:
        return epoch >= self.epochs or step >= self.total


def lr_scale(cfg: TrainConfig) -> float:
    """The linear scaling rule of Goyal et al. (2017), opt-in with ``--scale-lr REF``: the
    learning rate is multiplied by global batch / REF (1 when off)."""
    return cfg.batch_size / cfg.lr_scale_batch if cfg.lr_scale_batch else 1.0


def learning_rate(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """The learning rate at ``step`` of ``total``: a pure function, so resuming needs no
    scheduler state."""
    peak = cfg.lr * lr_scale(cfg)
    warmup = int(cfg.warmup * (total if cfg.schedule == "onecycle" else steps_per_epoch))
    if cfg.schedule == "onecycle":  # linear up from lr/25 to lr, then linear down to 0
        if step < warmup:
            return peak * (0.04 + 0.96 * step / warmup)
        return peak * max(0.0, (total - step) / max(total - warmup, 1))
    if step < warmup:
        return peak * (step + 1) / warmup
    if cfg.schedule == "step":  # divide by 10 at each milestone (fractions of training)
        passed = sum(step >= round(m * total) for m in cfg.milestones)
        return peak * cfg.gamma**passed
    if cfg.schedule == "cosine":
        t = (step - warmup) / max(total - warmup, 1)
        return peak * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "flat-cos":  # fastai's fit_flat_cos: flat, then a cosine to 0
        t = max(0.0, (step / total - cfg.flat) / (1 - cfg.flat))
        return peak * 0.5 * (1 + math.cos(math.pi * t))
    return peak


def warmup_lr(cfg: TrainConfig) -> float | None:
    """He et al.'s warm-up learning rate, held until the training error falls below
    ``--warmup-until-error`` (§4.2: 0.01 for ResNet-110 until the error is below 80%), or
    None when the run has no such warm-up (none set, or the model is shallower than
    ``--warmup-min-depth``)."""
    if cfg.warmup_lr is None or _depth(cfg.model) < cfg.warmup_min_depth:
        return None
    return cfg.warmup_lr * lr_scale(cfg)


def _depth(name: str) -> int:
    """The depth a model name states: its first number (``resnet110``, ``wrn28_10``,
    ``resnext29_8x64d``); 0 when it has none."""
    found = re.search(r"\d+", name)
    return int(found[0]) if found else 0
