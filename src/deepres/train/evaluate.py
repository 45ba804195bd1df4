"""Top-1 / top-5 error, per-class accuracy and the confusion matrix (paper §3.4, §4.2)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from deepres.checkpoints import load_model, resolve_weights
from deepres.data import BatchLoader, TensorData, check_data, load_split, resolve
from deepres.errors import DeepresError
from deepres.plots import plot_confusion
from deepres.train.batches import FolderBatches, default_workers


@dataclass
class EvalResult:
    loss: float
    top1: float  # accuracy in [0, 1]
    top5: float
    count: int
    confusion: torch.Tensor  # [true, predicted] counts

    @property
    def per_class(self) -> torch.Tensor:
        totals = self.confusion.sum(1).clamp(min=1)
        return self.confusion.diag().double() / totals

    def as_dict(self) -> dict[str, float]:
        return {
            "test_loss": self.loss,
            "test_top1": self.top1,
            "test_top5": self.top5,
            "test_error": 1 - self.top1,
            "test_top5_error": 1 - self.top5,
        }


class EvalAccumulator:
    """Sums over batches; ``merge`` across processes by summing ``totals()``."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.loss_sum = 0.0
        self.correct1 = 0
        self.correct5 = 0
        self.count = 0
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits, labels = logits.float().cpu(), labels.cpu()
        if logits.dim() == 3:  # ten-crop: average the crops' probabilities
            logits = logits.softmax(-1).mean(1).log()
        self.loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        self.correct1 += (top[:, 0] == labels).sum().item()
        self.correct5 += (top == labels[:, None]).any(1).sum().item()
        self.count += labels.numel()
        self.confusion += torch.bincount(
            labels * self.num_classes + top[:, 0], minlength=self.num_classes**2
        ).view(self.num_classes, self.num_classes)

    def totals(self) -> torch.Tensor:
        """Everything as one float64 tensor, for an all-reduce."""
        head = torch.tensor(
            [self.loss_sum, self.correct1, self.correct5, self.count], dtype=torch.float64
        )
        return torch.cat([head, self.confusion.flatten().double()])

    def load_totals(self, totals: torch.Tensor) -> None:
        self.loss_sum, c1, c5, n = totals[:4].tolist()
        self.correct1, self.correct5, self.count = int(c1), int(c5), int(n)
        self.confusion = totals[4:].round().long().view(self.num_classes, self.num_classes)

    def result(self) -> EvalResult:
        n = max(self.count, 1)
        return EvalResult(
            self.loss_sum / n, self.correct1 / n, self.correct5 / n, self.count, self.confusion
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    amp_dtype: torch.dtype | None = None,
    device: str = "cpu",
) -> EvalAccumulator:
    """Run ``model`` in eval mode over ``batches`` of (images, labels).

    Images of shape (B, crops, C, H, W) are evaluated crop by crop and averaged (ten-crop).
    """
    was_training = model.training
    model.eval()
    acc = EvalAccumulator(num_classes)
    try:
        for images, labels in batches:
            images = images.to(device, non_blocking=True)
            crops = images.shape[1] if images.dim() == 5 else 0
            flat = images.flatten(0, 1) if crops else images
            with torch.autocast(
                device.split(":")[0],
                dtype=amp_dtype or torch.float32,
                enabled=amp_dtype is not None,
            ):
                logits = model(flat)
            if crops:
                logits = logits.view(images.shape[0], crops, -1)
            acc.add(logits, labels)
    finally:
        model.train(was_training)
    return acc


@dataclass
class CheckpointEval:
    """``evaluate_checkpoint``'s answer: the result, and what was evaluated on what."""

    result: EvalResult
    meta: dict[str, Any]  # the checkpoint's metadata (model, classes, mean, std, ...)
    weights: Path  # the file evaluated
    data: str
    split: str
    ten_crop: bool


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    subset: int | None = None,
    batch_size: int = 250,
    ten_crop: bool = False,
) -> CheckpointEval:
    """Evaluate a saved model on a split of ``data`` (default: the data set it was trained
    on), as ``deepres eval`` does; ``ten_crop`` is the paper's 10-crop testing (§3.4)."""
    if data:
        check_data(data, data_root, split)
    model, meta = load_model(checkpoint)
    data_name = data or meta.get("data")
    if not data_name:
        raise DeepresError(f"{checkpoint} names no data set: give --data NAME or a folder")
    if ten_crop:
        source = resolve(data_name, data_root)
        if source.kind != "folder" or source.in_memory:
            raise DeepresError(
                f"--ten-crop is for image folders of large images; {data_name} has small "
                "images held in memory: drop --ten-crop"
            )
    images = load_split(
        data_name,
        split,
        data_root,
        subset=subset,
        image_size=meta.get("input_size", 224),
        ten_crop=ten_crop,
        stats=(meta["mean"], meta["std"]),
    )
    if list(images.classes) != list(meta["classes"]):
        raise DeepresError(
            f"{data_name} has classes {images.classes[:5]}..., the checkpoint "
            f"{meta['classes'][:5]}...: evaluate on the data it was trained for"
        )
    result = evaluate(model, eval_batches(images, batch_size, meta), len(meta["classes"]))
    weights = resolve_weights(checkpoint)
    return CheckpointEval(result.result(), meta, weights, data_name, split, ten_crop)


def eval_batches(
    images: TensorData | Dataset, batch_size: int, meta: dict[str, Any]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of a split in order: in-memory tensors, or a folder read by workers."""
    if isinstance(images, TensorData):
        loader = BatchLoader(images, batch_size, mean=meta["mean"], std=meta["std"], shuffle=False)
        return loader.iter_epoch(0)
    batches = FolderBatches(
        images,
        batch_size,
        shuffle=False,
        drop_last=False,
        seed=0,
        rank=0,
        world_size=1,
        workers=default_workers(1),
    )
    return batches.iter_epoch(0)


def save_eval_report(evaluation: CheckpointEval, out: Path) -> tuple[Path, Path]:
    """``confusion.png`` and ``eval.json`` in ``out``; returns their paths."""
    result, meta, classes = evaluation.result, evaluation.meta, evaluation.meta["classes"]
    out.mkdir(parents=True, exist_ok=True)
    png = plot_confusion(
        result.confusion,
        classes,
        out / "confusion.png",
        f"{meta['model']} on {evaluation.data}: top-1 {100 * result.top1:.2f}%",
    )
    report = {
        "checkpoint": str(evaluation.weights),
        "data": evaluation.data,
        "split": evaluation.split,
        **result.as_dict(),
        "count": result.count,
        "per_class": dict(zip(classes, result.per_class.tolist(), strict=True)),
        "confusion": result.confusion.tolist(),
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    return png, out / "eval.json"
