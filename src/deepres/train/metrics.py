"""What a run reports: a row per epoch (metrics.jsonl, metrics.csv, TensorBoard and a printed
line) and a summary at the end (summary.json and a few printed lines)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

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
        **ema_summary(tested),
        "config": dataclasses.asdict(cfg),
    }


def ema_summary(tested: list[dict[str, Any]]) -> dict[str, Any]:
    """The final and best test top-1 of the moving average of the weights (``--ema``)."""
    averaged = [r for r in tested if "ema_test_top1" in r]
    if not averaged:
        return {}
    best = max(averaged, key=lambda r: r["ema_test_top1"])
    return {
        "final_ema_top1": averaged[-1]["ema_test_top1"],
        "best_ema_top1": best["ema_test_top1"],
        "best_ema_epoch": best["epoch"],
    }


def format_summary(s: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    lines = [
        f"done: {s['model']} on {s['data']}, {s['epochs']} epochs / {s['iterations']} iterations"
        f" in {s['train_time_s']:.0f} s ({s['images_per_s'] or 0:.0f} img/s)",
        f"  final test top-1 {pct(s['final_top1'])}  top-5 {pct(s['final_top5'])}",
        f"  best  test top-1 {pct(s['best_top1'])}  top-5 {pct(s['best_top5'])} "
        f"(epoch {s['best_epoch']})",
    ]
    if "final_ema_top1" in s:
        lines.append(
            f"  EMA weights: final test top-1 {pct(s['final_ema_top1'])}  "
            f"best {pct(s['best_ema_top1'])} (epoch {s['best_ema_epoch']})"
        )
    return "\n".join([*lines, f"  run folder: {s['run']}"])
