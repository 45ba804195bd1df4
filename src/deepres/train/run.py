"""A training run's state and its checkpoints.

``RunState`` is where a run is (step, epoch, history, the epoch's ``RunningSums``, ...);
``Learner`` is the model with what changes its weights (SGD, fp16's gradient scaler and,
with ``--ema``, the moving average of the weights). ``save_checkpoint`` writes the weights
and then ``state.pt``, the commit point; ``load_checkpoint`` continues from it bitwise
exactly (weights, momentum, moving average, RNG).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.checkpoints import (
    BEST_VAL_FILE,
    EMA_FILE,
    MODEL_FILE,
    STATE_FILE,
    load_state,
    save_state,
    save_weights,
    unwrap,
)
from deepres.errors import DeepresError
from deepres.runtime import atomic_write
from deepres.train import distributed as dist
from deepres.train.batches import TrainData
from deepres.train.checks import check_weights
from deepres.train.config import TrainConfig
from deepres.train.ema import WeightEMA

CONFIG_FILE = "config.json"


@dataclass
class RunningSums:
    """The current epoch's training loss and errors, summed over the images seen so far."""

    loss: float = 0.0  # sum of the images' losses
    errors: int = 0  # misclassified images
    images: int = 0

    def add(self, loss: float, errors: int, images: int) -> None:
        """Count a micro-batch of ``images`` images with mean loss ``loss``."""
        self.loss, self.errors, self.images = (
            self.loss + loss * images,
            self.errors + errors,
            self.images + images,
        )

    def all_reduce(self, ctx: dist.Context) -> RunningSums:
        """The sums over all processes (float64 all-reduce)."""
        loss, errors, images = dist.all_sum(self.as_list(), ctx)
        return RunningSums(loss, int(errors), int(images))

    def as_list(self) -> list[float]:
        """``[loss, errors, images]`` as floats: how ``state.pt`` stores them."""
        return [float(self.loss), float(self.errors), float(self.images)]

    @classmethod
    def from_list(cls, sums: list[float]) -> RunningSums:
        loss, errors, images = sums
        return cls(float(loss), int(errors), int(images))


@dataclass
class RunState:
    """Where a run is: what ``state.pt`` holds besides weights, optimizer and RNG state."""

    step: int = 0  # SGD steps done
    epoch: int = 0  # epochs done
    batch: int = 0  # steps done in the current epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # a metrics row per epoch
    best_top1: float = -1.0  # the best top-1 on held-out training images (--val-split)
    warmup_done: bool = False  # He et al.'s warm-up (§4.2) is over
    warm_error: float = 1.0  # the running training error that ends it
    sums: RunningSums = field(default_factory=RunningSums)  # this epoch's, this process's
    train_time: float = 0.0  # seconds, checkpoints excluded

    def where(self) -> str:
        """The step being taken, as errors name it."""
        return f"iteration {self.step + 1} (epoch {self.epoch + 1})"

    def next_epoch(self, row: dict[str, Any]) -> None:
        """The epoch is over: its metrics ``row`` joins the history, the sums start afresh."""
        self.history.append(row)
        self.epoch, self.batch, self.sums = self.epoch + 1, 0, RunningSums()

    def as_dict(self) -> dict[str, Any]:
        """The fields as ``state.pt`` stores them (``sums`` as ``[loss, errors, images]``)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**fields, "history": list(self.history), "sums": self.sums.as_list()}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> RunState:
        names = [f.name for f in dataclasses.fields(cls)]
        state = cls(**{name: saved[name] for name in names if name in saved})
        if isinstance(state.sums, list):
            state.sums = RunningSums.from_list(state.sums)
        return state


@dataclass
class Learner:
    """The model and what changes its weights; a checkpoint saves them with the
    ``RunState``. ``model`` is bare until training starts, then wrapped in DDP /
    torch.compile: ``unwrap(model)`` is the bare one (checked, averaged, saved, loaded)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # fp16's; disabled otherwise
    ema: WeightEMA | None = None  # --ema: starts from the weights before the first step
    amp: torch.dtype | None = None  # the autocast dtype of forward passes (None: float32)


def model_args(cfg: TrainConfig, data: TrainData) -> dict[str, Any]:
    args: dict[str, Any] = {
        "num_classes": cfg.num_classes or len(data.classes),
        "in_chans": data.in_chans,
    }
    if cfg.shortcut:
        args["shortcut"] = cfg.shortcut
    if cfg.zero_init_residual:
        args["zero_init_residual"] = True
    if cfg.act:
        args["act"] = cfg.act
    if cfg.blur_pool:
        args["blur_pool"] = True
    if cfg.self_attention:
        args["self_attention"] = True
    return args


def run_meta(cfg: TrainConfig, args: dict[str, Any], data: TrainData) -> dict[str, Any]:
    """The model's description in the weight files: enough to evaluate or export them."""
    return {
        "model": cfg.model,
        "model_args": args,
        "classes": data.classes,
        "mean": list(data.mean),
        "std": list(data.std),
        "input_size": data.input_size,
        "data": cfg.data,
    }


def create_run_folder(out: Path, cfg: TrainConfig, ctx: dist.Context) -> None:
    """A new run: its folder and config.json (rank 0)."""
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / CONFIG_FILE, cfg.to_json().encode())


def save_checkpoint(
    out: Path,
    ctx: dist.Context,
    meta: dict[str, Any],
    state: RunState,
    learner: Learner,
    best: bool = False,
    train_time: float | None = None,
) -> None:
    """model.safetensors (best-val.safetensors, ema.safetensors), then state.pt: the commit
    point of a checkpoint. Every rank checks the weights and adds up the sums; rank 0 writes.
    ``best``: the weights are the best so far on the images held out of training
    (``--val-split``; never set by test-split results). ``train_time``: the seconds trained
    so far, for a checkpoint inside an epoch."""
    model, ema = unwrap(learner.model), learner.ema
    weights = model.state_dict()  # the same on every rank
    check_weights(weights, f"step {state.step}", out)  # never save broken weights
    if ema is not None:
        averaged = {f"{k} (EMA)": v for k, v in ema.state_dict().items()}
        check_weights(averaged, f"step {state.step}", out)
    sums = state.sums.all_reduce(ctx) if ctx.world_size > 1 else state.sums
    if not ctx.is_main:
        return
    full = checkpoint_state(state, learner, meta, weights, sums, train_time)
    meta = {**meta, "step": state.step}
    save_weights(out / MODEL_FILE, model, meta)
    if best:
        save_weights(out / BEST_VAL_FILE, model, meta)
    if ema is not None:
        save_weights(out / EMA_FILE, ema.module, {**meta, "ema": ema.decay})
    save_state(out / STATE_FILE, full)  # written last: the commit point


def checkpoint_state(
    state: RunState,
    learner: Learner,
    meta: dict[str, Any],
    weights: dict[str, torch.Tensor],
    sums: RunningSums,
    train_time: float | None,
) -> dict[str, Any]:
    """What state.pt holds: the run's state, weights, optimizer, RNG, scaler and EMA."""
    full = {
        **state.as_dict(),
        "sums": sums.as_list(),
        "model": weights,
        "optimizer": learner.optimizer.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "meta_json": json.dumps(meta),
    }
    if train_time is not None:  # a checkpoint inside an epoch
        full["train_time"] = train_time
    if learner.scaler.is_enabled():
        full["scaler"] = learner.scaler.state_dict()
    if learner.ema is not None:
        full["ema"] = learner.ema.state_dict()
    return full


def load_checkpoint(
    out: Path, ctx: dist.Context, meta: dict[str, Any], learner: Learner
) -> RunState:
    """Continue from state.pt: rank 0 reads it and sends it to the others; the learner
    takes its weights, momentum, scaler and moving average, torch its RNG state."""
    saved = dist.broadcast(load_state(out / STATE_FILE) if ctx.is_main else None, ctx)
    check_same_model(saved, meta, out)
    unwrap(learner.model).load_state_dict(saved.pop("model"))
    learner.optimizer.load_state_dict(saved.pop("optimizer"))
    if "scaler" in saved:
        learner.scaler.load_state_dict(saved.pop("scaler"))
    load_ema(learner.ema, saved.pop("ema", None), out)
    torch.set_rng_state(saved.pop("rng_torch"))
    state = RunState.from_dict(saved)
    if not ctx.is_main:  # the saved sums are global ones: count them once, on rank 0
        state.sums = RunningSums()
    if ctx.is_main and dist.restart_count():
        print(f"torchrun restart {dist.restart_count()}: continuing from step {state.step}")
    return state


def load_ema(ema: WeightEMA | None, saved: dict[str, torch.Tensor] | None, out: Path) -> None:
    """The moving average of the weights as the checkpoint left it (``--ema``)."""
    if ema is None:
        return
    if saved is None:
        raise DeepresError(
            f"the checkpoint in {out} holds no moving average of the weights, but the "
            "run's config.json asks for --ema: resume with the run's own config.json"
        )
    ema.load_state_dict(saved)


def check_same_model(saved: dict[str, Any], meta: dict[str, Any], out: Path) -> None:
    before = json.loads(saved.get("meta_json", "{}"))
    for key in ("model", "model_args", "classes"):
        if before.get(key) != meta.get(key):
            raise DeepresError(
                f"the checkpoint in {out} was made for {key} {before.get(key)!r}, but this run "
                f"has {meta.get(key)!r}; resume with the run's own settings (config.json) or "
                "start a new run with another --out"
            )
