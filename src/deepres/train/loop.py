"""The training loop: SGD on a ResNet, read top to bottom (paper §3.4 and §4.2).

``train(cfg)`` runs a whole training, in this order:

1. set-up: the data, the model, SGD with momentum and weight decay (§3.4), seeded by
   ``--seed``; a new run folder, or the checkpoint it continues from;
2. the epochs, each a pass of steps over the training set; a step is forward and backward
   over ``--grad-accum-steps`` micro-batches, then the update at the schedule's learning
   rate (§3.4: divided by 10 at the milestones; §4.2: ResNet-110's warm-up);
3. after every epoch: its metrics row, the test set's accuracy (``--eval-every``) and a
   checkpoint (also every ``--checkpoint-every`` steps);
4. the summary.

``train(cfg, resume=True)`` continues a run from its last checkpoint and ends with bitwise
the same weights as an uninterrupted run. Next door: ``run`` (the run's state, checkpoints),
``schedule`` (the learning rate, the run's length), ``checks`` (NaN/Inf stops,
``--detect-anomaly``), ``metrics`` (rows, files, summary), ``batches`` (data) and
``distributed`` (torchrun).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.checkpoints import STATE_FILE, unwrap
from deepres.errors import DeepresError
from deepres.models import create_model, load_pretrained
from deepres.models.pretrained import resolve_pretrained
from deepres.runtime import (
    RunLock,
    atomic_write,
    autocast_dtype,
    fault_point,
    poison,
    remove_stale_temporaries,
)
from deepres.train import distributed as dist
from deepres.train.batches import TrainData, build_data
from deepres.train.checks import backward, check_finite, check_gradients, watch_outputs
from deepres.train.config import TrainConfig
from deepres.train.ema import WeightEMA
from deepres.train.evaluate import EvalResult, evaluate
from deepres.train.finetune import set_frozen
from deepres.train.metrics import (
    ema_columns,
    format_row,
    format_summary,
    log_scalars,
    read_metrics,
    summarize,
    tensorboard_writer,
    write_metrics,
)
from deepres.train.optim import build_optimizer, set_lr
from deepres.train.progress import Progress
from deepres.train.run import (
    Learner,
    RunState,
    create_run_folder,
    load_checkpoint,
    model_args,
    run_meta,
    save_checkpoint,
)
from deepres.train.schedule import RunLength, learning_rate, lr_scale, warmup_lr

__all__ = ["learning_rate", "lr_scale", "read_metrics", "train"]

Checkpoint = Callable[..., None]  # save_checkpoint with the run's folder, state and learner


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary (also printed and saved in the run folder)."""
    ctx = dist.setup(cfg.device, cfg.threads)
    out = Path(cfg.out)
    try:
        with lock_run_folder(out, ctx):
            resume = dist.broadcast(should_resume(out, resume) if ctx.is_main else resume, ctx)
            return train_in(cfg, ctx, out, resume)
    finally:
        dist.teardown(ctx)


def train_in(cfg: TrainConfig, ctx: dist.Context, out: Path, resume: bool) -> dict[str, Any]:
    """The run in ``out``: set-up, the epochs (train, metrics, test, checkpoint), the summary."""
    # Set-up: data, model and SGD; then a new run folder, or the checkpoint's weights,
    # momentum, moving average, RNG and state
    data, meta, learner = set_up(cfg, ctx, pretrained=not resume)
    length = RunLength.of(cfg, len(data.train))
    if resume:
        state = load_checkpoint(out, ctx, meta, learner)
    else:
        state = RunState()
        create_run_folder(out, cfg, ctx)
    set_frozen(learner.model, cfg, state.epoch)  # --freeze-epochs: the head alone first
    learner.model = wrap_model(learner.model, cfg, ctx)  # from here on: in DDP / compiled

    def checkpoint(best: bool = False, train_time: float | None = None) -> None:
        save_checkpoint(out, ctx, meta, state, learner, best=best, train_time=train_time)

    # Reports (rank 0: progress, TensorBoard) and --detect-anomaly's forward checks
    progress = Progress(length.total, report_mode(cfg, ctx), every=cfg.progress_every)
    writer = tensorboard_writer(out) if ctx.is_main else None
    if ctx.is_main:
        progress.line(first_line(cfg, ctx, learner.model, data, length))
    if cfg.detect_anomaly:
        watch_outputs(unwrap(learner.model), state.where)

    # The epochs: train, then the epoch's metrics, test results and checkpoint
    with torch.autograd.set_detect_anomaly(cfg.detect_anomaly):
        while not length.done(state.step, state.epoch):
            if set_frozen(unwrap(learner.model), cfg, state.epoch):  # then the whole model
                learner.model = wrap_model(unwrap(learner.model), cfg, ctx)
            seconds, images = train_epoch(
                cfg, ctx, out, data, learner, state, length, progress, checkpoint
            )
            row = epoch_row(ctx, state, learner.optimizer, seconds, images)
            best = False
            if evaluation_due(cfg, state, length):
                best = add_test_results(row, ctx, data, learner, state)
            state.next_epoch(row)
            if ctx.is_main:
                report_row(out, state.history, row, writer, progress)
            checkpoint(best=best)
            fault_point("epoch")  # DEEPRES_FAULT=epoch:N (tests)
    return finish(cfg, ctx, out, state, writer, progress)


# --- Set-up -------------------------------------------------------------------------------


def lock_run_folder(out: Path, ctx: dist.Context) -> contextlib.AbstractContextManager[Any]:
    """One writer per run folder: rank 0 holds its lock (and clears temporary files that a
    crash left behind); the other ranks never touch the folder."""
    if not ctx.is_main:
        return contextlib.nullcontext()
    lock = RunLock(out)
    remove_stale_temporaries(out)
    return lock


def should_resume(out: Path, resume: bool) -> bool:
    """Rank 0 decides whether this run continues the one in ``out``: asked to, or restarted
    by torchrun; a folder that holds a run is never overwritten."""
    restarted = not resume and dist.restarted_run(out) and (out / STATE_FILE).exists()
    if not resume and not restarted and (out / STATE_FILE).exists():
        raise DeepresError(
            f"{out} already holds a run; continue it with --resume {out}, or choose another --out"
        )
    resume = resume or restarted
    if resume and not (out / STATE_FILE).exists():
        print(f"{out} has no checkpoint yet (stopped before its first): starting over")
        resume = False
    dist.claim_run(out)  # under torchrun: a restart of this job may continue this run
    return resume


def set_up(
    cfg: TrainConfig, ctx: dist.Context, pretrained: bool
) -> tuple[TrainData, dict[str, Any], Learner]:
    """The data, the model and its optimizer (§3.4), seeded by ``cfg.seed``, and what the
    weight files say about the model."""
    torch.manual_seed(cfg.seed)
    data = build_data(cfg, ctx.rank, ctx.world_size, ctx.device)
    args = model_args(cfg, data)
    model = build_model(cfg, args, ctx, pretrained)
    learner = Learner(
        model,
        build_optimizer(cfg, model),
        torch.amp.GradScaler(ctx.device_type, enabled=cfg.amp == "fp16"),
        WeightEMA(model, cfg.ema, cfg.ema_warmup) if cfg.ema else None,
        autocast_dtype(cfg.amp, ctx.device_type),
    )
    return data, run_meta(cfg, args, data), learner


def build_model(
    cfg: TrainConfig, args: dict[str, Any], ctx: dist.Context, pretrained: bool
) -> nn.Module:
    """``cfg.model`` on the device: ``--init-from`` weights (a new run only), gradient
    checkpointing, SyncBatchNorm and channels-last as asked."""
    model = create_model(cfg.model, **args)
    if cfg.init_from and pretrained:
        load_pretrained(model, resolve_pretrained(cfg.init_from, cfg.model).path)
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    if cfg.sync_bn:
        model = dist.convert_sync_batchnorm(model, ctx)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    return model.to(ctx.device, memory_format=memory_format)


def wrap_model(model: nn.Module, cfg: TrainConfig, ctx: dist.Context) -> nn.Module:
    """The model in DDP (several processes) and torch.compile (``--compile``)."""
    model = dist.wrap(model, ctx)
    return torch.compile(model) if cfg.compile else model


def report_mode(cfg: TrainConfig, ctx: dist.Context) -> str:
    return cfg.progress if ctx.is_main else "off"


def first_line(
    cfg: TrainConfig, ctx: dist.Context, model: nn.Module, data: TrainData, length: RunLength
) -> str:
    parameters = sum(p.numel() for p in unwrap(model).parameters())
    return (
        f"training {cfg.model} ({parameters:,} parameters) on {cfg.data}: "
        f"{len(data.classes)} classes, {length.epochs} epochs / {length.total} iterations of "
        f"batch {cfg.batch_size}, {ctx.world_size} process(es) on {ctx.device}"
        + (f", lr x {lr_scale(cfg):g} (linear scaling rule)" if cfg.lr_scale_batch else "")
    )


# --- One epoch of steps ------------------------------------------------------------------


def train_epoch(
    cfg: TrainConfig,
    ctx: dist.Context,
    out: Path,
    data: TrainData,
    learner: Learner,
    state: RunState,
    length: RunLength,
    progress: Progress,
    checkpoint: Checkpoint,
) -> tuple[float, int]:
    """One pass over the training set (what is left of it after a resume inside an epoch),
    with a checkpoint every ``--checkpoint-every`` steps; returns the seconds it trained and
    the images this process saw."""
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    bare_model = unwrap(learner.model)  # outside DDP / torch.compile: checked, poisoned
    learner.model.train()
    clock, seen_before = Stopwatch(), state.sums.images
    micro_batches = data.train.iter_epoch(state.epoch, state.batch * cfg.grad_accum_steps)
    for micro, (images, labels) in enumerate(micro_batches, start=1):
        # forward and backward; the gradients add up over --grad-accum-steps micro-batches
        images, labels = to_device(images, labels, ctx.device, cfg.channels_last)
        loss, errors = forward_backward(
            learner, criterion, images, labels, cfg.grad_accum_steps, state.where
        )
        check_finite("the loss", loss, state.where(), out)
        state.sums.add(loss, errors, len(labels))
        if micro % cfg.grad_accum_steps:
            continue
        # the update of a whole batch, at this step's learning rate
        poison(bare_model, "grad", state.step + 1)  # DEEPRES_FAULT=grad:N (tests)
        check_gradients(bare_model, learner.scaler, state.where(), out)
        lr = step_lr(cfg, ctx, state, length, errors, len(labels))
        sgd_step(learner, lr, state.step + 1)
        state.step, state.batch = state.step + 1, state.batch + 1
        poison(bare_model, "weights", state.step)  # DEEPRES_FAULT=weights:N (tests)
        fault_point("step", state.step)
        show_progress(progress, state, clock, state.sums.images - seen_before, ctx.world_size)
        if state.step >= length.total:
            break
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            with clock.paused() as trained:
                checkpoint(train_time=state.train_time + trained)
    return clock.elapsed(), state.sums.images - seen_before


def to_device(
    images: torch.Tensor, labels: torch.Tensor, device: str, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def forward_backward(
    learner: Learner,
    criterion: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    accum: int,
    where: Callable[[], str],
) -> tuple[float, int]:
    """Forward and backward of one micro-batch of ``accum`` (its gradients add to the
    others'); returns its mean loss and its number of misclassified images. ``labels``:
    int64 classes, or float B x C soft targets of mixup / cutmix (then an image counts as an
    error when its top class is not the target's largest share)."""
    amp = learner.amp
    with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = learner.model(images)
        loss = criterion(logits, labels)
    backward(learner.scaler.scale(loss / accum), where)
    classes = labels.argmax(1) if labels.dim() == 2 else labels
    return loss.item(), int((logits.argmax(1) != classes).sum().item())


def step_lr(
    cfg: TrainConfig,
    ctx: dist.Context,
    state: RunState,
    length: RunLength,
    errors: float,
    images: float,
) -> float:
    """The schedule's learning rate (§3.4), or He et al.'s warm-up lr until the running
    training error (of the last micro-batch, over all processes) falls below the threshold
    (§4.2)."""
    lr = learning_rate(cfg, state.step, length.total, length.steps_per_epoch)
    warm_lr = warmup_lr(cfg)
    if warm_lr is None or state.warmup_done:
        return lr
    if ctx.world_size > 1:  # every rank must take the same decision
        errors, images = dist.all_sum([errors, images], ctx)
    state.warm_error = 0.9 * state.warm_error + 0.1 * errors / images
    state.warmup_done = state.warm_error < cfg.warmup_until_error
    return lr if state.warmup_done else warm_lr


def sgd_step(learner: Learner, lr: float, step: int) -> None:
    """Update the weights with the gradients of a whole batch at ``lr``, then their moving
    average (``--ema``); ``step`` is the step's number (1, 2, ...)."""
    set_lr(learner.optimizer, lr)  # x each group's lr_scale (--layer-lr-decay)
    learner.scaler.step(learner.optimizer)
    learner.scaler.update()
    learner.optimizer.zero_grad(set_to_none=True)
    if learner.ema is not None:  # every rank: the weights are the same on all of them
        learner.ema.update(learner.model, step)


class Stopwatch:
    """The seconds an epoch has trained: wall time less the pauses for checkpoints."""

    def __init__(self) -> None:
        self.started, self.pauses = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.pauses

    @contextlib.contextmanager
    def paused(self) -> Iterator[float]:
        """Time inside the block does not count; yields the seconds counted so far."""
        pause = time.perf_counter()
        yield pause - self.started - self.pauses
        self.pauses += time.perf_counter() - pause


def show_progress(
    progress: Progress, state: RunState, clock: Stopwatch, images: int, world_size: int
) -> None:
    sums = state.sums
    images_per_s = images * world_size / max(clock.elapsed(), 1e-9)
    accuracy = 1 - sums.errors / sums.images
    progress.update(state.step, state.epoch + 1, sums.loss / sums.images, accuracy, images_per_s)


# --- The end of an epoch: metrics, test, report ----------------------------------------


def epoch_row(
    ctx: dist.Context,
    state: RunState,
    optimizer: torch.optim.Optimizer,
    seconds: float,
    images: int,
) -> dict[str, Any]:
    """The epoch's row of metrics: its training loss and error over all processes."""
    state.train_time += seconds
    sums = state.sums.all_reduce(ctx)
    return {
        "epoch": state.epoch + 1,
        "step": state.step,
        "lr": optimizer.param_groups[0]["lr"],
        "train_loss": sums.loss / sums.images,
        "train_error": sums.errors / sums.images,
        "time": state.train_time,
        "images_per_s": images * ctx.world_size / max(seconds, 1e-9),
    }


def evaluation_due(cfg: TrainConfig, state: RunState, length: RunLength) -> bool:
    """Every ``--eval-every`` epochs, and after the last one."""
    last = state.step >= length.total or state.epoch + 1 >= length.epochs
    return last or (state.epoch + 1) % cfg.eval_every == 0


def add_test_results(
    row: dict[str, Any], ctx: dist.Context, data: TrainData, learner: Learner, state: RunState
) -> bool:
    """Test, adding the results to ``row`` (with ``--ema``, the moving average's too:
    ``ema_test_*``); returns whether these are the best weights so far on images held out
    of training (``--val-split``). Test-split results choose nothing: always False then."""
    result = test_set_accuracy(ctx, data, learner.model, learner.amp)
    row.update(result.as_dict())
    if learner.ema is not None:
        averaged = test_set_accuracy(ctx, data, learner.ema.module, learner.amp)
        row.update(ema_columns(averaged.as_dict()))
    if not data.held_out:
        return False
    best = result.top1 > state.best_top1
    state.best_top1 = max(state.best_top1, result.top1)
    return best


def test_set_accuracy(
    ctx: dist.Context, data: TrainData, model: nn.Module, amp: torch.dtype | None
) -> EvalResult:
    """The test-set accuracy of rank 0's ``model`` (the trained one or its moving average);
    each rank evaluates its shard."""
    dist.broadcast_buffers(model, ctx)  # every rank evaluates the weights rank 0 saves
    batches = data.test.iter_epoch(0)
    acc = evaluate(model, batches, len(data.classes), amp, ctx.device)
    if ctx.world_size > 1:
        acc.load_totals(dist.all_sum_tensor(acc.totals(), ctx))
    return acc.result()


def report_row(
    out: Path, history: list[dict[str, Any]], row: dict[str, Any], writer: Any, progress: Progress
) -> None:
    """Rank 0: metrics.jsonl and metrics.csv (the whole history), TensorBoard, a printed line."""
    write_metrics(out, history)
    log_scalars(writer, row)
    progress.line(format_row(row))


def finish(
    cfg: TrainConfig,
    ctx: dist.Context,
    out: Path,
    state: RunState,
    writer: Any,
    progress: Progress,
) -> dict[str, Any]:
    """The summary: returned, written to summary.json and printed (rank 0)."""
    summary = summarize(cfg, state.history, state.train_time, out)
    if ctx.is_main:
        atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
        progress.line(format_summary(summary))
        if writer is not None:
            writer.close()
    return summary
