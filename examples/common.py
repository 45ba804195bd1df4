"""What the two backbone examples share: budgets, the pasted data set, the schedule."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from deepres.backbones.paste_data import PasteSpec, generate

CLASSES = ("automobile", "frog", "ship")  # three CIFAR-10 classes that look unlike


@dataclass(frozen=True)
class Budget:
    train_images: int
    val_images: int
    minutes: float  # of training, at most
    steps: int  # at most
    batch_size: int


def parse_args(description: str, budgets: dict[str, Budget]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--budget", choices=sorted(budgets), default="default")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/backbone-examples"),
        help="folder for the generated data (kept between runs)",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="folder holding cifar10-jpeg/ and imagenette-224/ (../shared/data)",
    )
    parser.add_argument("--minutes", type=float, default=None, help="override the time budget")
    parser.add_argument("--steps", type=int, default=None, help="override the step budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: on a shared CPU, more threads than free "
        "cores slow PyTorch down several times); 0 = PyTorch's choice",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = budgets[args.budget]
    args.train_images, args.val_images = budget.train_images, budget.val_images
    args.batch_size = budget.batch_size
    args.minutes = budget.minutes if args.minutes is None else args.minutes
    args.steps = budget.steps if args.steps is None else args.steps
    return args


def make_data(args: argparse.Namespace) -> Path:
    """Generate (or find, already generated) the pasted data set for ``args``."""
    spec = PasteSpec(
        classes=CLASSES,
        image_size=args.image_size,
        sizes={"train": args.train_images, "val": args.val_images},
        scale=(0.3, 0.6),
        seed=args.seed,
    )
    name = f"paste-{args.image_size}px-{args.train_images}-{args.val_images}-seed{args.seed}"
    name += f"-{spec.as_json()['version']}"
    start = time.perf_counter()
    root = generate(args.out / name, spec, args.data_root)
    print(
        f"data: {root} ({args.train_images} train / {args.val_images} val images, "
        f"{len(CLASSES)} classes: {', '.join(CLASSES)}; {time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    return root


class Schedule:
    """Linear warm-up, then cosine decay over whichever ends first: the steps or the
    minutes of the budget (so a slow, shared CPU gets a complete schedule too)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, steps: int, minutes: float, warmup: int = 50
    ) -> None:
        self.optimizer, self.steps, self.seconds = optimizer, steps, minutes * 60
        self.warmup = min(warmup, max(1, steps // 10))
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.start = time.perf_counter()
        self.step = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def progress(self) -> float:
        return max(self.step / self.steps, self.elapsed() / self.seconds)

    def done(self) -> bool:
        return self.progress() >= 1.0

    def advance(self) -> float:
        """Set the learning rate of the next step; returns it."""
        factor = 0.5 * (1 + math.cos(math.pi * min(1.0, self.progress())))
        if self.step < self.warmup:
            factor *= (self.step + 1) / self.warmup
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor
        self.step += 1
        return self.optimizer.param_groups[0]["lr"]

    def log(self, loss: float, detail: str = "") -> None:
        """A progress line every 25 steps, for the first two and for the last."""
        if self.step % 25 == 0 or self.step <= 2 or self.done():
            lr = self.optimizer.param_groups[0]["lr"]
            print(
                f"step {self.step:5d}  {self.elapsed() / 60:5.1f} min  lr {lr:.2e}  "
                f"loss {loss:.3f}{f' ({detail})' if detail else ''}",
                flush=True,
            )


def batches(n: int, batch_size: int, seed: int):
    """Endless shuffled batches of indices."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        size = min(batch_size, n)
        for i in range(0, n - size + 1, size):
            yield order[i : i + size]
