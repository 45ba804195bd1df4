"""The training loop: SGD on a ResNet, read top to bottom (paper §3.4 and §4.2).

``train(cfg)`` runs a whole training: it builds the data and the model, then for each step
sets the learning rate, runs forward/backward/update, and at the end of every epoch
evaluates, writes metrics and a checkpoint. ``train(cfg, resume=True)`` continues a run
from its last checkpoint and ends with bitwise the same weights as an uninterrupted run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.errors import DeepresError
from deepres.faults import fault_point, poison
from deepres.files import atomic_write, remove_stale_temporaries
from deepres.models import create_model, load_pretrained
from deepres.train import distributed as dist
from deepres.train.checkpoint import (
    BEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    load_state,
    save_state,
    save_weights,
    unwrap,
)
from deepres.train.config import TrainConfig
from deepres.train.data import TrainData, build_data
from deepres.train.evaluate import evaluate
from deepres.train.progress import Progress
from deepres.train.runlock import RunLock

CONFIG_FILE = "config.json"


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
    return peak


def autocast_dtype(amp: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype for ``--amp``; ``auto`` means bf16 where the hardware has it
    (emulated bf16 on an AVX2-only CPU is ten times slower than fp32)."""
    if amp == "auto":
        native = (
            torch.cuda.is_bf16_supported()
            if device_type == "cuda"
            else torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
        return torch.bfloat16 if native else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)


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


def _depth(name: str) -> int:
    digits = "".join(c for c in name if c.isdigit())
    return int(digits) if digits else 0


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary (also printed and saved in the run folder)."""
    ctx = dist.setup(cfg.device, cfg.threads)
    out = Path(cfg.out)
    lock = RunLock(out) if ctx.is_main else None
    if lock is not None:
        remove_stale_temporaries(out)
    try:
        return _train(cfg, resume, ctx, out)
    finally:
        if lock is not None:
            lock.release()
        dist.teardown(ctx)


def _train(cfg: TrainConfig, resume: bool, ctx: dist.Context, out: Path) -> dict[str, Any]:
    if ctx.is_main:  # only rank 0 looks at the run folder (other machines may not see it)
        restarted = not resume and dist.restarted_run(out) and (out / STATE_FILE).exists()
        if not resume and not restarted and (out / STATE_FILE).exists():
            raise DeepresError(
                f"{out} already holds a run; continue it with --resume {out}, or choose "
                "another --out"
            )
        resume = resume or restarted
        if resume and not (out / STATE_FILE).exists():
            print(f"{out} has no checkpoint yet (stopped before its first): starting over")
            resume = False
        dist.claim_run(out)  # under torchrun: a restart of this job may continue this run
    resume = dist.broadcast(resume, ctx)
    torch.manual_seed(cfg.seed)
    data = build_data(cfg, ctx.rank, ctx.world_size, ctx.device)
    args = model_args(cfg, data)
    model = create_model(cfg.model, **args)
    if cfg.init_from and not resume:
        load_pretrained(model, cfg.init_from)
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    if cfg.sync_bn:
        model = dist.convert_sync_batchnorm(model, ctx)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(ctx.device, memory_format=memory_format)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        foreach=True,
    )
    amp_dtype = autocast_dtype(cfg.amp, ctx.device_type)
    scaler = torch.amp.GradScaler(ctx.device_type, enabled=cfg.amp == "fp16")

    steps_per_epoch = len(data.train) // cfg.grad_accum_steps
    total = cfg.iters or cfg.epochs * steps_per_epoch  # type: ignore[operator]
    epochs = math.ceil(total / steps_per_epoch)
    meta = {
        "model": cfg.model,
        "model_args": args,
        "classes": data.classes,
        "mean": list(data.mean),
        "std": list(data.std),
        "input_size": data.input_size,
        "data": cfg.data,
    }

    # Where to start: a fresh run, or the last checkpoint of this one.
    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "batch": 0,
        "history": [],
        "best_top1": -1.0,
        "warmup_done": False,
        "warm_error": 1.0,
        "sums": [0.0, 0.0, 0.0],
        "train_time": 0.0,
    }
    if resume:  # rank 0 reads the checkpoint and sends it to the others
        saved = dist.broadcast(load_state(out / STATE_FILE) if ctx.is_main else None, ctx)
        check_same_model(saved, meta, out)
        model_state = saved.pop("model")
        unwrap(model).load_state_dict(model_state)
        optimizer.load_state_dict(saved.pop("optimizer"))
        if "scaler" in saved:
            scaler.load_state_dict(saved.pop("scaler"))
        torch.set_rng_state(saved.pop("rng_torch"))
        state.update(saved)
        if not ctx.is_main:  # the saved sums are global ones: count them once, on rank 0
            state["sums"] = [0.0, 0.0, 0.0]
        if ctx.is_main and dist.restart_count():
            print(f"torchrun restart {dist.restart_count()}: continuing from step {state['step']}")
    elif ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / CONFIG_FILE, cfg.to_json().encode())

    net = dist.wrap(model, ctx)
    if cfg.compile:
        net = torch.compile(net)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    needs_warmup = cfg.warmup_lr is not None and _depth(cfg.model) >= cfg.warmup_min_depth
    warmup_lr = (cfg.warmup_lr or 0.0) * lr_scale(cfg)
    progress = Progress(total, cfg.progress if ctx.is_main else "off")
    writer = tensorboard_writer(out) if ctx.is_main else None
    if ctx.is_main:
        progress.line(
            f"training {cfg.model} ({sum(p.numel() for p in model.parameters()):,} "
            f"parameters) on {cfg.data}: {len(data.classes)} classes, "
            f"{epochs} epochs / {total} iterations of batch {cfg.batch_size}, "
            f"{ctx.world_size} process(es) on {ctx.device}"
            + (f", lr x {lr_scale(cfg):g} (linear scaling rule)" if cfg.lr_scale_batch else "")
        )

    def where() -> str:
        return f"iteration {state['step'] + 1} (epoch {state['epoch'] + 1})"

    if cfg.detect_anomaly:
        watch_outputs(unwrap(model), where)

    def save_checkpoint(best: bool = False, train_time: float | None = None) -> None:
        weights = unwrap(model).state_dict()  # the same on every rank
        bad = next((k for k, v in weights.items() if not v.isfinite().all()), None)
        if bad is not None:  # never replace a good checkpoint with a broken one
            raise numerical_fault(f"{bad} became non-finite", f"step {state['step']}", out)
        sums = dist.all_sum(state["sums"], ctx) if ctx.world_size > 1 else state["sums"]
        if not ctx.is_main:
            return
        full = {
            **state,
            "sums": sums,
            "model": weights,
            "optimizer": optimizer.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "meta_json": json.dumps(meta),
        }
        if train_time is not None:
            full["train_time"] = train_time
        if scaler.is_enabled():
            full["scaler"] = scaler.state_dict()
        save_weights(out / MODEL_FILE, model, {**meta, "step": state["step"]})
        if best:
            save_weights(out / BEST_FILE, model, {**meta, "step": state["step"]})
        save_state(out / STATE_FILE, full)  # written last: the commit point of a checkpoint

    with torch.autograd.set_detect_anomaly(cfg.detect_anomaly):
        while state["epoch"] < epochs and state["step"] < total:
            epoch = state["epoch"]
            net.train()
            started, paused = time.perf_counter(), 0.0  # paused: time spent checkpointing
            seen_at_start = state["sums"][2]
            batches = data.train.iter_epoch(epoch, state["batch"] * cfg.grad_accum_steps)
            for micro, (images, labels) in enumerate(batches, start=1):
                images = images.to(ctx.device, non_blocking=True)
                labels = labels.to(ctx.device, non_blocking=True)
                if cfg.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(
                    ctx.device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    logits = net(images)
                    loss = criterion(logits, labels)
                backward(scaler.scale(loss / cfg.grad_accum_steps), where)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise numerical_fault(f"the loss became {loss_value}", where(), out)
                errors = (logits.argmax(1) != labels).sum().item()
                state["sums"] = [
                    state["sums"][0] + loss_value * len(labels),
                    state["sums"][1] + errors,
                    state["sums"][2] + len(labels),
                ]
                if micro % cfg.grad_accum_steps:
                    continue
                poison(model, "grad", state["step"] + 1)
                if not scaler.is_enabled():  # fp16's scaler skips non-finite steps itself
                    norm = gradient_norm(model)
                    if not math.isfinite(norm):
                        raise numerical_fault(f"the gradients became {norm}", where(), out)
                lr = learning_rate(cfg, state["step"], total, steps_per_epoch)
                if needs_warmup and not state["warmup_done"]:
                    count: float = len(labels)
                    if ctx.world_size > 1:  # every rank must take the same decision
                        errors, count = dist.all_sum([errors, count], ctx)
                    state["warm_error"] = 0.9 * state["warm_error"] + 0.1 * errors / count
                    state["warmup_done"] = state["warm_error"] < cfg.warmup_until_error
                    lr = warmup_lr if not state["warmup_done"] else lr
                for group in optimizer.param_groups:
                    group["lr"] = lr
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                state["batch"] += 1
                poison(model, "weights", state["step"])
                fault_point("step", state["step"])
                loss_sum, error_sum, seen = state["sums"]
                elapsed = time.perf_counter() - started - paused
                progress.update(
                    state["step"],
                    epoch + 1,
                    loss_sum / seen,
                    1 - error_sum / seen,
                    (seen - seen_at_start) * ctx.world_size / max(elapsed, 1e-9),
                )
                if state["step"] >= total:
                    break
                if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                    pause = time.perf_counter()
                    save_checkpoint(train_time=state["train_time"] + pause - started - paused)
                    paused += time.perf_counter() - pause

            # End of an epoch: evaluate, record, checkpoint.
            epoch_time = time.perf_counter() - started - paused
            state["train_time"] += epoch_time
            loss_sum, error_sum, seen = dist.all_sum(state["sums"], ctx)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": state["step"],
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / seen,
                "train_error": error_sum / seen,
                "time": state["train_time"],
                "images_per_s": (state["sums"][2] - seen_at_start)
                * ctx.world_size
                / max(epoch_time, 1e-9),
            }
            last = state["step"] >= total or epoch + 1 >= epochs
            best = False
            if (epoch + 1) % cfg.eval_every == 0 or last:
                result = run_eval(net, data, ctx, amp_dtype)
                row.update(result.as_dict())
                best = result.top1 > state["best_top1"]
                state["best_top1"] = max(state["best_top1"], result.top1)
            state["history"].append(row)
            state.update(epoch=epoch + 1, batch=0, sums=[0.0, 0.0, 0.0])
            if ctx.is_main:
                write_metrics(out, state["history"])
                if writer is not None:
                    for key, value in row.items():
                        writer.add_scalar(key, value, row["step"])
                progress.line(format_row(row))
            save_checkpoint(best=best)

    summary = summarize(cfg, state["history"], state["train_time"], out)
    if ctx.is_main:
        atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
        progress.line(format_summary(summary))
        if writer is not None:
            writer.close()
    return summary


def numerical_fault(what: str, where: str, out: Path) -> DeepresError:
    return DeepresError(
        f"{what} at {where}; stopping. The last good checkpoint in {out} is intact: lower "
        "--lr, or rerun with --detect-anomaly to find the first bad operation."
    )


def gradient_norm(model: nn.Module) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).item() if grads else 0.0


def watch_outputs(model: nn.Module, where: Callable[[], str]) -> None:
    """``--detect-anomaly``, forward half: every leaf module checks its output and buffers
    (BatchNorm's running statistics), so the first operation that makes a NaN or Inf is
    named (torch's anomaly mode covers the backward)."""

    def watch(name: str) -> Callable[..., None]:
        def check(module: nn.Module, inputs: Any, output: Any) -> None:
            made = {"output": output, **dict(module.named_buffers(recurse=False))}
            for what, value in made.items():
                if value.is_floating_point() and not value.isfinite().all():
                    finite = all(t.isfinite().all() for t in inputs)
                    raise DeepresError(
                        f"--detect-anomaly: {name} ({type(module).__name__}) produced "
                        f"{'nan' if value.isnan().any() else 'inf'} values in its {what} at "
                        f"{where()}; its inputs were {'finite' if finite else 'not finite'}"
                    )

        return check

    for name, module in model.named_modules():
        if not any(module.children()):
            module.register_forward_hook(watch(name))


def backward(loss: torch.Tensor, where: Callable[[], str]) -> None:
    """``loss.backward()``; under anomaly mode a NaN made by a backward op names that op."""
    try:
        loss.backward()
    except RuntimeError as err:
        if "returned nan values" not in str(err):
            raise
        raise DeepresError(
            f"--detect-anomaly: {str(err).splitlines()[0]} at {where()} (the forward call "
            "that made it is printed above)"
        ) from None


def run_eval(
    net: nn.Module, data: TrainData, ctx: dist.Context, amp_dtype: torch.dtype | None
) -> Any:
    dist.broadcast_buffers(net, ctx)  # every rank evaluates the weights rank 0 saves
    acc = evaluate(net, data.test.iter_epoch(0), len(data.classes), amp_dtype, ctx.device)
    if ctx.world_size > 1:
        acc.load_totals(dist.all_sum_tensor(acc.totals(), ctx))
    return acc.result()


def check_same_model(saved: dict[str, Any], meta: dict[str, Any], out: Path) -> None:
    before = json.loads(saved.get("meta_json", "{}"))
    for key in ("model", "model_args", "classes"):
        if before.get(key) != meta.get(key):
            raise DeepresError(
                f"the checkpoint in {out} was made for {key} {before.get(key)!r}, but this run "
                f"has {meta.get(key)!r}; resume with the run's own settings (config.json) or "
                "start a new run with another --out"
            )


METRIC_FIELDS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_error",
    "test_loss",
    "test_top1",
    "test_top5",
    "test_error",
    "test_top5_error",
    "time",
    "images_per_s",
]


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl and metrics.csv, rewritten whole from the history in the checkpoint, so
    a resumed run never repeats or loses a row."""
    lines = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(out / "metrics.jsonl", lines.encode())
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, METRIC_FIELDS, extrasaction="ignore")
    table.writeheader()
    table.writerows(history)
    atomic_write(out / "metrics.csv", buffer.getvalue().encode())


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise DeepresError(f"no metrics.jsonl in {run}: is it a deepres run folder?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tensorboard_writer(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


def format_row(row: dict[str, Any]) -> str:
    text = (
        f"epoch {row['epoch']:3d}  step {row['step']:6d}  lr {row['lr']:.4f}  "
        f"train loss {row['train_loss']:.4f} err {100 * row['train_error']:5.2f}%"
    )
    if "test_top1" in row:
        text += (
            f"  test err {100 * row['test_error']:5.2f}% "
            f"top-5 err {100 * row['test_top5_error']:5.2f}%"
        )
    return text + f"  {row['images_per_s']:.0f} img/s"


def summarize(
    cfg: TrainConfig, history: list[dict[str, Any]], train_time: float, out: Path
) -> dict[str, Any]:
    tested = [r for r in history if "test_top1" in r]
    best = max(tested, key=lambda r: r["test_top1"]) if tested else {}
    final = tested[-1] if tested else {}
    return {
        "model": cfg.model,
        "data": cfg.data,
        "run": str(out),
        "epochs": len(history),
        "iterations": history[-1]["step"] if history else 0,
        "final_top1": final.get("test_top1"),
        "final_top5": final.get("test_top5"),
        "best_top1": best.get("test_top1"),
        "best_top5": best.get("test_top5"),
        "best_epoch": best.get("epoch"),
        "train_time_s": train_time,
        "images_per_s": (
            history[-1]["step"] * cfg.batch_size / train_time if history and train_time else None
        ),
        "config": dataclasses.asdict(cfg),
    }


def format_summary(s: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    return "\n".join(
        [
            f"done: {s['model']} on {s['data']}, {s['epochs']} epochs / "
            f"{s['iterations']} iterations"
            f" in {s['train_time_s']:.0f} s ({s['images_per_s'] or 0:.0f} img/s)",
            f"  final test top-1 {pct(s['final_top1'])}  top-5 {pct(s['final_top5'])}",
            f"  best  test top-1 {pct(s['best_top1'])}  top-5 {pct(s['best_top5'])} "
            f"(epoch {s['best_epoch']})",
            f"  run folder: {s['run']}",
        ]
    )
