"""The training loop: SGD on a ResNet, read top to bottom (paper §3.4 and §4.2).

``train(cfg)`` runs a whole training: it builds the data and the model, then for each step
sets the learning rate, runs forward/backward/update, and at the end of every epoch
evaluates, writes metrics and a checkpoint. ``train(cfg, resume=True)`` continues a run
from its last checkpoint and ends with bitwise the same weights as an uninterrupted run.

The steps are named functions below; what they use lives next door: ``run`` (the run's
objects and state, checkpoints), ``schedule`` (the learning rate), ``checks`` (NaN/Inf
stops, ``--detect-anomaly``), ``metrics`` (rows, files, summary) and ``batches`` (data).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.ops._utils import split_normalization_params

from deepres.checkpoints import STATE_FILE, unwrap
from deepres.errors import DeepresError
from deepres.models import create_model, load_pretrained
from deepres.runtime import RunLock, atomic_write, fault_point, poison, remove_stale_temporaries
from deepres.train import distributed as dist
from deepres.train.batches import build_data
from deepres.train.checks import backward, check_finite, check_gradients, watch_outputs
from deepres.train.config import TrainConfig
from deepres.train.evaluate import EvalResult, evaluate
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
from deepres.train.run import (
    Run,
    create_run_folder,
    load_checkpoint,
    model_args,
    run_meta,
    save_checkpoint,
)
from deepres.train.schedule import learning_rate, lr_scale

__all__ = ["learning_rate", "lr_scale", "read_metrics", "train"]


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary (also printed and saved in the run folder)."""
    ctx = dist.setup(cfg.device, cfg.threads)
    out = Path(cfg.out)
    try:
        with lock_run_folder(out, ctx):
            resume = dist.broadcast(should_resume(out, resume) if ctx.is_main else resume, ctx)
            run = set_up(cfg, ctx, out, pretrained=not resume)
            if resume:
                load_checkpoint(run)
            else:
                create_run_folder(run)
            start(run)
            with torch.autograd.set_detect_anomaly(cfg.detect_anomaly):
                while not run.finished:
                    seconds, images = train_epoch(run)
                    row = epoch_row(run, seconds, images)
                    best = evaluate_if_due(run, row)
                    record_epoch(run, row)
                    save_checkpoint(run, best=best)
            return finish(run)
    finally:
        dist.teardown(ctx)


# --- Setting up -----------------------------------------------------------------------


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


def set_up(cfg: TrainConfig, ctx: dist.Context, out: Path, pretrained: bool) -> Run:
    """The data, the model and its optimizer (§3.4), seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    data = build_data(cfg, ctx.rank, ctx.world_size, ctx.device)
    args = model_args(cfg, data)
    model = build_model(cfg, args, ctx, pretrained)
    return Run(cfg, ctx, out, data, model, sgd(cfg, model), run_meta(cfg, args, data))


def build_model(
    cfg: TrainConfig, args: dict[str, Any], ctx: dist.Context, pretrained: bool
) -> nn.Module:
    """``cfg.model`` on the device: ``--init-from`` weights (a new run only), gradient
    checkpointing, SyncBatchNorm and channels-last as asked."""
    model = create_model(cfg.model, **args)
    if cfg.init_from and pretrained:
        load_pretrained(model, cfg.init_from)
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    if cfg.sync_bn:
        model = dist.convert_sync_batchnorm(model, ctx)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    return model.to(ctx.device, memory_format=memory_format)


def sgd(cfg: TrainConfig, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum and weight decay (§3.4: 0.9 and 1e-4); each step sets its lr.
    ``--norm-weight-decay`` gives the normalisation layers' weights their own decay (as in
    torchvision's reference scripts)."""
    params: Any = model.parameters()
    if cfg.norm_weight_decay is not None:
        norm, other = split_normalization_params(model)
        params = [{"params": other}, {"params": norm, "weight_decay": cfg.norm_weight_decay}]
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        foreach=True,
    )


def start(run: Run) -> None:
    """Wrap the model for DDP and torch.compile, open TensorBoard, say what is trained, and
    hook the forward checks of ``--detect-anomaly``."""
    cfg, ctx = run.cfg, run.ctx
    run.net = dist.wrap(run.model, ctx)
    if cfg.compile:
        run.net = torch.compile(run.net)
    if ctx.is_main:
        run.writer = tensorboard_writer(run.out)
        run.progress.line(first_line(run))
    if cfg.detect_anomaly:
        watch_outputs(unwrap(run.model), lambda: run.state.where())


def first_line(run: Run) -> str:
    cfg, ctx = run.cfg, run.ctx
    parameters = sum(p.numel() for p in run.model.parameters())
    return (
        f"training {cfg.model} ({parameters:,} parameters) on {cfg.data}: "
        f"{len(run.data.classes)} classes, {run.epochs} epochs / {run.total} iterations of "
        f"batch {cfg.batch_size}, {ctx.world_size} process(es) on {ctx.device}"
        + (f", lr x {lr_scale(cfg):g} (linear scaling rule)" if cfg.lr_scale_batch else "")
    )


# --- One epoch, one step ----------------------------------------------------------------


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


def train_epoch(run: Run) -> tuple[float, float]:
    """One pass over the training set (what is left of it after a resume inside an epoch),
    with a checkpoint every ``--checkpoint-every`` steps; returns the seconds it trained and
    the images this process saw."""
    cfg, state = run.cfg, run.state
    run.net.train()
    clock, seen_before = Stopwatch(), state.sums[2]
    batches = run.data.train.iter_epoch(state.epoch, state.batch * cfg.grad_accum_steps)
    for micro, (images, labels) in enumerate(batches, start=1):
        errors = forward_backward(run, images, labels)
        if micro % cfg.grad_accum_steps:
            continue  # the gradients add up over --grad-accum-steps micro-batches
        sgd_step(run, errors, len(labels))
        show_progress(run, clock, state.sums[2] - seen_before)
        if state.step >= run.total:
            break
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            with clock.paused() as trained:
                save_checkpoint(run, train_time=state.train_time + trained)
    return clock.elapsed(), state.sums[2] - seen_before


def forward_backward(run: Run, images: torch.Tensor, labels: torch.Tensor) -> int:
    """Forward and backward of one micro-batch, counted in the epoch's sums; returns its
    number of misclassified images. ``labels``: int64 classes, or float B x C soft targets
    of mixup / cutmix (then an image counts as an error when its top class is not the
    target's largest share)."""
    cfg, ctx = run.cfg, run.ctx
    images = images.to(ctx.device, non_blocking=True)
    labels = labels.to(ctx.device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    amp = run.amp_dtype
    with torch.autocast(ctx.device_type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = run.net(images)
        loss = run.criterion(logits, labels)
    backward(run.scaler.scale(loss / cfg.grad_accum_steps), run.state.where)
    loss_value = loss.item()
    check_finite("the loss", loss_value, run.state.where(), run.out)
    classes = labels.argmax(1) if labels.dim() == 2 else labels
    errors = (logits.argmax(1) != classes).sum().item()
    run.state.add(loss_value, errors, len(labels))
    return errors


def sgd_step(run: Run, errors: int, images: int) -> None:
    """Update the weights with the gradients of a whole batch, at this step's lr, then their
    moving average (``--ema``)."""
    state = run.state
    poison(run.model, "grad", state.step + 1)
    check_gradients(run.model, run.scaler, state.where(), run.out)
    lr = step_lr(run, errors, images)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:  # every rank: the weights are the same on all of them
        run.ema.update(run.model, state.step + 1)
    state.step += 1
    state.batch += 1
    poison(run.model, "weights", state.step)
    fault_point("step", state.step)


def step_lr(run: Run, errors: float, images: float) -> float:
    """The schedule's learning rate, or He et al.'s warm-up lr until the running training
    error (of the last micro-batch, over all processes) falls below the threshold (§4.2)."""
    state = run.state
    lr = learning_rate(run.cfg, state.step, run.total, run.steps_per_epoch)
    if run.warmup_lr is None or state.warmup_done:
        return lr
    if run.ctx.world_size > 1:  # every rank must take the same decision
        errors, images = dist.all_sum([errors, images], run.ctx)
    state.warm_error = 0.9 * state.warm_error + 0.1 * errors / images
    state.warmup_done = state.warm_error < run.cfg.warmup_until_error
    return lr if state.warmup_done else run.warmup_lr


def show_progress(run: Run, clock: Stopwatch, images: float) -> None:
    loss_sum, error_sum, seen = run.state.sums
    images_per_s = images * run.ctx.world_size / max(clock.elapsed(), 1e-9)
    accuracy = 1 - error_sum / seen
    run.progress.update(
        run.state.step, run.state.epoch + 1, loss_sum / seen, accuracy, images_per_s
    )


# --- The end of an epoch, the end of the run ------------------------------------------


def epoch_row(run: Run, seconds: float, images: float) -> dict[str, Any]:
    """The epoch's row of metrics: its training loss and error over all processes."""
    state, ctx = run.state, run.ctx
    state.train_time += seconds
    loss_sum, error_sum, seen = dist.all_sum(state.sums, ctx)
    return {
        "epoch": state.epoch + 1,
        "step": state.step,
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": loss_sum / seen,
        "train_error": error_sum / seen,
        "time": state.train_time,
        "images_per_s": images * ctx.world_size / max(seconds, 1e-9),
    }


def evaluate_if_due(run: Run, row: dict[str, Any]) -> bool:
    """Test every ``--eval-every`` epochs and after the last one, adding the results to
    ``row`` (with ``--ema``, the moving average's too: ``ema_test_*``); returns whether the
    test top-1 is the best so far."""
    state = run.state
    last = state.step >= run.total or state.epoch + 1 >= run.epochs
    if (state.epoch + 1) % run.cfg.eval_every and not last:
        return False
    result = test_set_accuracy(run, run.net)
    row.update(result.as_dict())
    if run.ema is not None:
        row.update(ema_columns(test_set_accuracy(run, run.ema.module).as_dict()))
    best = result.top1 > state.best_top1
    state.best_top1 = max(state.best_top1, result.top1)
    return best


def test_set_accuracy(run: Run, model: nn.Module) -> EvalResult:
    """The test-set accuracy of rank 0's ``model`` (the trained one or its moving average);
    each rank evaluates its shard."""
    ctx = run.ctx
    dist.broadcast_buffers(model, ctx)  # every rank evaluates the weights rank 0 saves
    batches = run.data.test.iter_epoch(0)
    acc = evaluate(model, batches, len(run.data.classes), run.amp_dtype, ctx.device)
    if ctx.world_size > 1:
        acc.load_totals(dist.all_sum_tensor(acc.totals(), ctx))
    return acc.result()


def record_epoch(run: Run, row: dict[str, Any]) -> None:
    """Add the row to the history and start the next epoch; rank 0 writes metrics.jsonl
    and metrics.csv, logs to TensorBoard and prints the row."""
    state = run.state
    state.history.append(row)
    state.epoch, state.batch, state.sums = state.epoch + 1, 0, [0.0, 0.0, 0.0]
    if run.ctx.is_main:
        write_metrics(run.out, state.history)
        log_scalars(run.writer, row)
        run.progress.line(format_row(row))


def finish(run: Run) -> dict[str, Any]:
    """The summary: returned, written to summary.json and printed (rank 0)."""
    summary = summarize(run.cfg, run.state.history, run.state.train_time, run.out)
    if run.ctx.is_main:
        atomic_write(run.out / "summary.json", json.dumps(summary, indent=2).encode())
        run.progress.line(format_summary(summary))
        if run.writer is not None:
            run.writer.close()
    return summary
