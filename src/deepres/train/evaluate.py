"""Top-1 / top-5 error, per-class accuracy and the confusion matrix (paper §3.4, §4.2)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
class ViewScores:
    """Accumulators of one model (or ensemble): its single-view scores, and its scores
    averaged over augmented views when there are views."""

    single: EvalAccumulator
    augmented: EvalAccumulator | None

    @staticmethod
    def empty(num_classes: int, views: bool) -> ViewScores:
        return ViewScores(
            EvalAccumulator(num_classes), EvalAccumulator(num_classes) if views else None
        )


Views = Callable[[torch.Tensor], list[torch.Tensor]]


def log_mean_probs(probs: list[torch.Tensor]) -> torch.Tensor:
    """The log of the mean of probability tensors: how an ensemble (``deepres.inference.
    Ensemble``) and test-time augmentation combine their members and views."""
    mean = torch.stack(probs).mean(0)
    return mean.clamp_min(torch.finfo(mean.dtype).tiny).log()


@torch.no_grad()
def evaluate_members(
    models: Sequence[nn.Module],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    views: Views | None = None,
    device: str = "cpu",
) -> tuple[list[ViewScores], ViewScores | None]:
    """Each model alone and, for several, their ensemble (mean softmax probabilities), in one
    pass over ``batches``; with ``views`` (a batch -> its augmented views, the batch itself
    first, e.g. ``deepres.inference.tta_views``) also averaged over the views. Every model
    runs once per view: the ensemble and single-view scores reuse those outputs. Ten-crop
    batches (B, crops, C, H, W) are averaged over the crops as ``evaluate`` does."""
    for model in models:
        model.eval()
    members = [ViewScores.empty(num_classes, views is not None) for _ in models]
    ensemble = ViewScores.empty(num_classes, views is not None) if len(models) > 1 else None
    for images, labels in batches:
        images = images.to(device, non_blocking=True)
        flat = images.flatten(0, 1) if images.dim() == 5 else images
        inputs = views(flat) if views else [flat]
        logits = [[model(view).float() for view in inputs] for model in models]
        add_scores(members, ensemble, logits, labels, images.shape[0])
    return members, ensemble


def add_scores(
    members: list[ViewScores],
    ensemble: ViewScores | None,
    logits: list[list[torch.Tensor]],
    labels: torch.Tensor,
    batch: int,
) -> None:
    """One batch's logits (by model, then view) into the accumulators."""

    def add(accumulator: EvalAccumulator, scores: torch.Tensor) -> None:
        crops = scores.shape[0] // batch  # ten-crop: (B * crops, classes) -> (B, crops, ...)
        accumulator.add(scores.view(batch, crops, -1) if crops > 1 else scores, labels)

    probs = [[view.softmax(-1) for view in row] for row in logits]
    for scores, row, row_probs in zip(members, logits, probs, strict=True):
        add(scores.single, row[0])
        if scores.augmented:
            add(scores.augmented, log_mean_probs(row_probs))
    if ensemble:
        add(ensemble.single, log_mean_probs([row[0] for row in probs]))
        if ensemble.augmented:
            add(ensemble.augmented, log_mean_probs([p for row in probs for p in row]))


@dataclass
class MemberEval:
    """One member of an evaluated ensemble."""

    weights: Path
    model: str
    result: EvalResult  # with test-time augmentation when the evaluation had it
    single_view: EvalResult | None = None  # without it (when it had it)


@dataclass
class CheckpointEval:
    """``evaluate_checkpoint``'s answer: the result, and what was evaluated on what."""

    result: EvalResult  # the ensemble's for several checkpoints; with TTA when asked
    meta: dict[str, Any]  # the checkpoint's metadata (model, classes, mean, std, ...)
    weights: Path  # the file evaluated (an ensemble's first member)
    data: str
    split: str
    ten_crop: bool
    tta: str | None = None  # the test-time augmentation of ``result``
    single_view: EvalResult | None = None  # ``result`` without the TTA (when tta)
    members: list[MemberEval] = field(default_factory=list)  # an ensemble's members, alone


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    subset: int | None = None,
    batch_size: int = 250,
    ten_crop: bool = False,
    ema: bool = False,
) -> CheckpointEval:
    """Evaluate a saved model on a split of ``data`` (default: the data set it was trained
    on), as ``deepres eval`` does; ``ten_crop`` is the paper's 10-crop testing (§3.4);
    ``ema`` evaluates the run's EMA weights. (Ensembles and test-time augmentation:
    ``deepres.deploy.evaluate_checkpoints``.)"""
    if data:
        check_data(data, data_root, split)
    weights = resolve_weights(checkpoint, ema=ema)
    model, meta = load_model(weights)
    data_name, images = load_eval_split(
        meta, str(checkpoint), data, split, data_root, subset, ten_crop
    )
    result = evaluate(model, eval_batches(images, batch_size, meta), len(meta["classes"]))
    return CheckpointEval(result.result(), meta, weights, data_name, split, ten_crop)


def load_eval_split(
    meta: dict[str, Any],
    checkpoint: str,
    data: str | None,
    split: str,
    data_root: str | None = None,
    subset: int | None = None,
    ten_crop: bool = False,
) -> tuple[str, TensorData | Dataset]:
    """The split a checkpoint (with ``meta``) is evaluated on: ``data`` or the data set it
    was trained on, prepared at its input size and normalisation; and that data's name."""
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
    return data_name, images


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
    """``confusion.png`` and ``eval.json`` in ``out``; returns their paths. With TTA the
    report adds ``tta`` and ``single_view``; for an ensemble, ``checkpoints`` and ``members``
    (each member's scores) instead of ``checkpoint``."""
    result, meta, classes = evaluation.result, evaluation.meta, evaluation.meta["classes"]
    out.mkdir(parents=True, exist_ok=True)
    tta = f", TTA {evaluation.tta}" if evaluation.tta else ""
    png = plot_confusion(
        result.confusion,
        classes,
        out / "confusion.png",
        f"{meta['model']} on {evaluation.data}{tta}: top-1 {100 * result.top1:.2f}%",
    )
    members = evaluation.members
    source: dict[str, Any] = (
        {"checkpoints": [str(m.weights) for m in members]}
        if members
        else {"checkpoint": str(evaluation.weights)}
    )
    report = {
        **source,
        "data": evaluation.data,
        "split": evaluation.split,
        **result.as_dict(),
        "count": result.count,
        "per_class": dict(zip(classes, result.per_class.tolist(), strict=True)),
        "confusion": result.confusion.tolist(),
        **view_report(evaluation.tta, evaluation.single_view),
    }
    if members:
        report["members"] = [
            {"checkpoint": str(m.weights), "model": m.model, **m.result.as_dict()}
            | view_report(evaluation.tta, m.single_view)
            for m in members
        ]
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    return png, out / "eval.json"


def view_report(tta: str | None, single_view: EvalResult | None) -> dict[str, Any]:
    """``tta`` and the ``single_view`` scores, when there was test-time augmentation."""
    if not tta or single_view is None:
        return {}
    return {"tta": tta, "single_view": single_view.as_dict()}
