"""Train torchvision's DeepLabV3 on a deepres ResNet-18 (output stride 16), from scratch,
on CPU, and score its masks against the trivial all-background answer.

The data: the pasted set of ``examples/detection.py`` (CIFAR-10 objects of three classes
on Imagenette photographs; its masks as a class map: 0 background, 1-3 the classes).

    python examples/segmentation.py                 # default budget: 9 minutes of training
    python examples/segmentation.py --budget tiny   # seconds: a smoke test
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from common import CLASSES, Budget, Schedule, batches, make_data, parse_args

from deepres.backbones import deeplabv3
from deepres.backbones.paste_data import PasteDataset

BUDGETS = {
    "tiny": Budget(train_images=8, val_images=4, minutes=1.0, steps=3, batch_size=4),
    "default": Budget(train_images=1500, val_images=200, minutes=9.0, steps=3000, batch_size=8),
}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def batch(data: PasteDataset, indices: list[int], flips: torch.Tensor | None = None):
    """Normalised images (B x 3 x H x W) and class maps (B x H x W), optionally flipped."""
    images = torch.stack([data.images[i] for i in indices]).permute(0, 3, 1, 2).float() / 255
    labels = torch.stack([data.semantic(i) for i in indices])
    if flips is not None:
        images = torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)
        labels = torch.where(flips.view(-1, 1, 1), labels.flip(-1), labels)
    return (images - MEAN) / STD, labels


def train(model: torch.nn.Module, data: PasteDataset, args) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = Schedule(optimizer, args.steps, args.minutes)
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    for indices in batches(len(data), args.batch_size, args.seed):
        if schedule.done():
            break
        schedule.advance()
        flips = torch.rand(len(indices), generator=generator) < 0.5
        images, labels = batch(data, indices, flips)
        loss = F.cross_entropy(model(images)["out"], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.log(loss.item())


def iou(confusion: torch.Tensor) -> torch.Tensor:
    """Per-class IoU from a (truth x prediction) confusion matrix."""
    hits = confusion.diag().double()
    return hits / (confusion.sum(0) + confusion.sum(1) - confusion.diag()).double().clamp(min=1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: PasteDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class IoU of ``model`` and of the all-background answer on ``data``."""
    model.eval()
    n = len(CLASSES) + 1
    confusion = torch.zeros(n, n, dtype=torch.int64)
    background = torch.zeros(n, n, dtype=torch.int64)
    for start in range(0, len(data), 16):
        images, labels = batch(data, list(range(start, min(len(data), start + 16))))
        predicted = model(images)["out"].argmax(1)
        confusion += torch.bincount(
            labels.flatten() * n + predicted.flatten(), minlength=n * n
        ).view(n, n)
        background[:, 0] += torch.bincount(labels.flatten(), minlength=n)
    return iou(confusion), iou(background)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], BUDGETS)
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    root = make_data(args)
    train_data, val_data = PasteDataset(root, "train"), PasteDataset(root, "val")
    model = deeplabv3("resnet18", len(CLASSES) + 1, output_stride=16)
    print(
        f"model: DeepLabV3, deepres resnet18 backbone at output stride 16, {args.image_size} px, "
        f"batch {args.batch_size}, at most {args.steps} steps / {args.minutes:g} min",
        flush=True,
    )
    train(model, train_data, args)
    ours, baseline = evaluate(model, val_data)
    names = ["background", *CLASSES]
    print(
        "IoU: " + ", ".join(f"{name} {v:.3f}" for name, v in zip(names, ours.tolist(), strict=True))
    )
    minutes = (time.perf_counter() - start) / 60
    print(
        f"segmentation: mIoU {ours.mean():.3f} (all-background baseline {baseline.mean():.3f}) "
        f"on {len(val_data)} held-out images ({minutes:.1f} min in all)",
        flush=True,
    )


if __name__ == "__main__":
    main()
