"""What a run reports: a row per epoch (metrics.jsonl, metrics.csv, TensorBoard and a printed
line) and a summary at the end (summary.json and a few printed lines).

A row's ``test_*`` figures are those of the images the run evaluates on: the test split, or
with ``--val-split N`` the N images held out of the training split. Over the epochs they are
a curve. The summary's headline is the final epoch; a best epoch is reported (and its
weights kept) only on held-out images, never on the test split."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from deepres.checkpoints import BEST_VAL_FILE, EMA_FILE, MODEL_FILE
from deepres.errors import DeepresError
from deepres.runtime import atomic_write
from deepres.train.config import TrainConfig

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
# --ema: the test results of the moving average of the weights, beside the weights' own
EMA_FIELDS = ["ema_test_loss", "ema_test_top1", "ema_test_top5", "ema_test_error"]


def ema_columns(results: dict[str, float]) -> dict[str, float]:
    """The EMA weights' test results (``EvalResult.as_dict()``) as the row's ``ema_`` fields."""
    return {f"ema_{k}": v for k, v in results.items() if f"ema_{k}" in EMA_FIELDS}


def csv_fields(history: list[dict[str, Any]]) -> list[str]:
    """metrics.csv's columns: the EMA ones after the test ones, when the run has them."""
    if not any(EMA_FIELDS[0] in row for row in history):
        return METRIC_FIELDS
    at = METRIC_FIELDS.index("time")
    return [*METRIC_FIELDS[:at], *EMA_FIELDS, *METRIC_FIELDS[at:]]


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl and metrics.csv, rewritten whole from the history in the checkpoint, so
    a resumed run never repeats or loses a row."""
    lines = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(out / "metrics.jsonl", lines.encode())
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, csv_fields(history), extrasaction="ignore")
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


def log_scalars(writer: Any, row: dict[str, Any]) -> None:
    """The row in TensorBoard (when it is installed), at the row's step."""
    if writer is not None:
        for key, value in row.items():
            writer.add_scalar(key, value, row["step"])


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
    if "ema_test_top1" in row:
        text += f"  ema err {100 * row['ema_test_error']:5.2f}%"
    return text + f"  {row['images_per_s']:.0f} img/s"


def summarize(
    cfg: TrainConfig, history: list[dict[str, Any]], train_time: float, out: Path
) -> dict[str, Any]:
    """The run's summary: the final epoch's figures on the images it evaluated on (the test
    split, or with ``--val-split N`` the N images held out of training), and only with
    held-out images the best epoch on them (the weights in best-val.safetensors)."""
    tested = [r for r in history if "test_top1" in r]
    final = tested[-1] if tested else {}
    return {
        "model": cfg.model,
        "data": cfg.data,
        "run": str(out),
        "epochs": len(history),
        "iterations": history[-1]["step"] if history else 0,
        "evaluated_on": "held-out training images" if cfg.val_split else "test split",
        "held_out_images": cfg.val_split,
        "final_top1": final.get("test_top1"),
        "final_top5": final.get("test_top5"),
        **held_out_best(cfg, tested),
        "train_time_s": train_time,
        "images_per_s": (
            history[-1]["step"] * cfg.batch_size / train_time if history and train_time else None
        ),
        **ema_summary(cfg, tested),
        "config": dataclasses.asdict(cfg),
    }


def held_out_best(cfg: TrainConfig, tested: list[dict[str, Any]]) -> dict[str, Any]:
    """With ``--val-split``: the epoch with the best top-1 on the held-out images (the first
    of equals, as training keeps it). Without held-out images nothing is chosen: {}."""
    if not cfg.val_split or not tested:
        return {}
    best = max(tested, key=lambda r: r["test_top1"])
    return {
        "best_val_top1": best["test_top1"],
        "best_val_top5": best["test_top5"],
        "best_val_epoch": best["epoch"],
    }


def ema_summary(cfg: TrainConfig, tested: list[dict[str, Any]]) -> dict[str, Any]:
    """The final top-1 of the moving average of the weights (``--ema``), and with held-out
    images its best on them."""
    averaged = [r for r in tested if "ema_test_top1" in r]
    if not averaged:
        return {}
    summary = {"final_ema_top1": averaged[-1]["ema_test_top1"]}
    if cfg.val_split:
        best = max(averaged, key=lambda r: r["ema_test_top1"])
        summary.update(best_val_ema_top1=best["ema_test_top1"], best_val_ema_epoch=best["epoch"])
    return summary


def format_summary(s: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    held_out = s.get("held_out_images") or 0
    where = f"{held_out} held-out training images" if held_out else "test split"
    lines = [
        f"done: {s['model']} on {s['data']}, {s['epochs']} epochs / {s['iterations']} iterations"
        f" in {s['train_time_s']:.0f} s ({s['images_per_s'] or 0:.0f} img/s)",
        f"  final weights ({MODEL_FILE}), {where}: top-1 {pct(s['final_top1'])}  "
        f"top-5 {pct(s['final_top5'])}",
    ]
    if "best_val_top1" in s:
        lines.append(
            f"  best on {where} (epoch {s['best_val_epoch']}, {BEST_VAL_FILE}): top-1 "
            f"{pct(s['best_val_top1'])}  top-5 {pct(s['best_val_top5'])}"
        )
    else:
        lines.append(
            "  per-epoch test-split figures: metrics.jsonl (a curve; nothing is chosen on it)"
        )
    if "final_ema_top1" in s:
        ema = f"  EMA weights ({EMA_FILE}), {where}: final top-1 {pct(s['final_ema_top1'])}"
        if "best_val_ema_top1" in s:
            ema += f"  best {pct(s['best_val_ema_top1'])} (epoch {s['best_val_ema_epoch']})"
        lines.append(ema)
    return "\n".join([*lines, f"  run folder: {s['run']}"])
