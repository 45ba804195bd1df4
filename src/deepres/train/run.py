"""A training run's objects and state, and its checkpoints.

``RunState`` is where a run is (step, epoch, history, ...); ``Run`` holds it with the data,
model, optimizer and (``--ema``) the moving average of the weights. ``save_checkpoint`` writes
the weights and then ``state.pt``, the commit point; ``load_checkpoint`` continues from it
bitwise exactly (weights, momentum, moving average, RNG).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.checkpoints import (
    BEST_FILE,
    EMA_FILE,
    MODEL_FILE,
    STATE_FILE,
    load_state,
    save_state,
    save_weights,
    unwrap,
)
from deepres.errors import DeepresError
from deepres.runtime import atomic_write, autocast_dtype
from deepres.train import distributed as dist
from deepres.train.batches import TrainData
from deepres.train.checks import check_weights
from deepres.train.config import TrainConfig
from deepres.train.ema import WeightEMA
from deepres.train.progress import Progress
from deepres.train.schedule import warmup_lr

CONFIG_FILE = "config.json"


@dataclass
class RunState:
    """Where a run is: what ``state.pt`` holds besides weights, optimizer and RNG state."""

    step: int = 0  # SGD steps done
    epoch: int = 0  # epochs done
    batch: int = 0  # steps done in the current epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # a metrics row per epoch
    best_top1: float = -1.0
    warmup_done: bool = False  # He et al.'s warm-up (§4.2) is over
    warm_error: float = 1.0  # the running training error that ends it
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss, errors, images
    train_time: float = 0.0  # seconds, checkpoints excluded

    def where(self) -> str:
        """The step being taken, as errors name it."""
        return f"iteration {self.step + 1} (epoch {self.epoch + 1})"

    def add(self, loss: float, errors: int, images: int) -> None:
        """Count a micro-batch in this epoch's sums."""
        loss_sum, error_sum, seen = self.sums
        self.sums = [loss_sum + loss * images, error_sum + errors, seen + images]


@dataclass
class Run:
    """Everything a training run works with; ``state`` is what changes step by step."""

    cfg: TrainConfig
    ctx: dist.Context
    out: Path
    data: TrainData
    model: nn.Module  # the bare model: checked, saved and loaded
    optimizer: torch.optim.Optimizer
    meta: dict[str, Any]  # what the weight files say about the model
    state: RunState = field(default_factory=RunState)
    writer: Any = None  # TensorBoard's, on rank 0 when it is installed

    def __post_init__(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.net: nn.Module = self.model  # what runs: the model, in DDP / torch.compile
        self.amp_dtype = autocast_dtype(cfg.amp, ctx.device_type)
        self.scaler = torch.amp.GradScaler(ctx.device_type, enabled=cfg.amp == "fp16")
        self.steps_per_epoch = len(self.data.train) // cfg.grad_accum_steps
        self.total: int = cfg.iters or cfg.epochs * self.steps_per_epoch  # type: ignore[operator]
        self.epochs = math.ceil(self.total / self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.warmup_lr = warmup_lr(cfg)
        mode = cfg.progress if ctx.is_main else "off"
        self.progress = Progress(self.total, mode, every=cfg.progress_every)
        # --ema: the moving average starts from the model's weights before the first step
        self.ema = WeightEMA(self.model, cfg.ema, cfg.ema_warmup) if cfg.ema else None

    @property
    def finished(self) -> bool:
        return self.state.epoch >= self.epochs or self.state.step >= self.total


def model_args(cfg: TrainConfig, data: TrainData) -> dict[str, Any]:
    args: dict[str, Any] = {
        "num_classes": cfg.num_classes or len(data.classes),
        "in_chans": data.in_chans,
    }
    if cfg.shortcut:
        args["shortcut"] = cfg.shortcut
    if cfg.zero_init_residual:
        args["zero_init_residual"] = True
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


def create_run_folder(run: Run) -> None:
    """A new run: its folder and config.json (rank 0)."""
    if run.ctx.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        atomic_write(run.out / CONFIG_FILE, run.cfg.to_json().encode())


def save_checkpoint(run: Run, best: bool = False, train_time: float | None = None) -> None:
    """model.safetensors (best.safetensors, ema.safetensors), then state.pt: the commit point
    of a checkpoint. Every rank checks the weights and adds up the sums; rank 0 writes."""
    state, ctx = run.state, run.ctx
    weights = unwrap(run.model).state_dict()  # the same on every rank
    check_weights(weights, f"step {state.step}", run.out)  # never save broken weights
    if run.ema is not None:
        averaged = {f"{k} (EMA)": v for k, v in run.ema.state_dict().items()}
        check_weights(averaged, f"step {state.step}", run.out)
    sums = dist.all_sum(state.sums, ctx) if ctx.world_size > 1 else state.sums
    if not ctx.is_main:
        return
    full = checkpoint_state(run, weights, sums, train_time)
    meta = {**run.meta, "step": state.step}
    save_weights(run.out / MODEL_FILE, run.model, meta)
    if best:
        save_weights(run.out / BEST_FILE, run.model, meta)
    if run.ema is not None:
        save_weights(run.out / EMA_FILE, run.ema.module, {**meta, "ema": run.ema.decay})
    save_state(run.out / STATE_FILE, full)  # written last: the commit point


def checkpoint_state(
    run: Run, weights: dict[str, torch.Tensor], sums: list[float], train_time: float | None
) -> dict[str, Any]:
    """What state.pt holds: the run's state, weights, optimizer, RNG, scaler and EMA."""
    full = {
        **dataclasses.asdict(run.state),
        "sums": sums,
        "model": weights,
        "optimizer": run.optimizer.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "meta_json": json.dumps(run.meta),
    }
    if train_time is not None:  # a checkpoint inside an epoch
        full["train_time"] = train_time
    if run.scaler.is_enabled():
        full["scaler"] = run.scaler.state_dict()
    if run.ema is not None:
        full["ema"] = run.ema.state_dict()
    return full


def load_checkpoint(run: Run) -> None:
    """Continue from state.pt: rank 0 reads it and sends it to the others."""
    ctx = run.ctx
    saved = dist.broadcast(load_state(run.out / STATE_FILE) if ctx.is_main else None, ctx)
    check_same_model(saved, run.meta, run.out)
    unwrap(run.model).load_state_dict(saved.pop("model"))
    run.optimizer.load_state_dict(saved.pop("optimizer"))
    if "scaler" in saved:
        run.scaler.load_state_dict(saved.pop("scaler"))
    load_ema(run, saved.pop("ema", None))
    torch.set_rng_state(saved.pop("rng_torch"))
    names = [f.name for f in dataclasses.fields(RunState)]
    run.state = RunState(**{name: saved[name] for name in names if name in saved})
    if not ctx.is_main:  # the saved sums are global ones: count them once, on rank 0
        run.state.sums = [0.0, 0.0, 0.0]
    if ctx.is_main and dist.restart_count():
        print(f"torchrun restart {dist.restart_count()}: continuing from step {run.state.step}")


def load_ema(run: Run, saved: dict[str, torch.Tensor] | None) -> None:
    """The moving average of the weights as the checkpoint left it (``--ema``)."""
    if run.ema is None:
        return
    if saved is None:
        raise DeepresError(
            f"the checkpoint in {run.out} holds no moving average of the weights, but the "
            "run's config.json asks for --ema: resume with the run's own config.json"
        )
    run.ema.load_state_dict(saved)


def check_same_model(saved: dict[str, Any], meta: dict[str, Any], out: Path) -> None:
    before = json.loads(saved.get("meta_json", "{}"))
    for key in ("model", "model_args", "classes"):
        if before.get(key) != meta.get(key):
            raise DeepresError(
                f"the checkpoint in {out} was made for {key} {before.get(key)!r}, but this run "
                f"has {meta.get(key)!r}; resume with the run's own settings (config.json) or "
                "start a new run with another --out"
            )
