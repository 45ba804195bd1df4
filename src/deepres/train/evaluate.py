"""Top-1 / top-5 error, per-class accuracy and the confusion matrix (paper §3.4, §4.2)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


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
