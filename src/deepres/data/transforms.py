"""The per-image torchvision pipelines of large-image folders: training crops and flips
(paper §3.4 scale augmentation) and evaluation centre crops or 10-crop testing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

from deepres.data.augment import policy_transform
from deepres.errors import DeepresError

TRAIN_CROPS = ("random-resized", "scale-256-480")


def build_transform(
    train: bool,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    ten_crop: bool = False,
    train_crop: str = "random-resized",
    policy: str | None = None,
    random_erasing: float = 0.0,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision v2 pipeline on a uint8 3 x H x W tensor -> normalised float tensor.

    train: RandomResizedCrop(size) + RandomHorizontalFlip (paper §3.4's scale augmentation;
    train_crop='scale-256-480' gives the paper's exact shorter side in [256, 480] + random
    crop, scaled by size/224), then the `policy` ('randaugment' / 'trivial') on the uint8
    crop and RandomErasing(p=random_erasing) on the normalised one. eval: Resize(size/0.875)
    + CenterCrop(size), or with `ten_crop` TenCrop(size) -> 10 x 3 x size x size (the
    paper's 10-crop testing).
    """
    finish = v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    )
    if train:
        if train_crop == "random-resized":
            crop = v2.RandomResizedCrop(size, antialias=True)
        elif train_crop == "scale-256-480":
            sides = list(range(round(256 * size / 224), round(480 * size / 224) + 1))
            crop = v2.Compose([v2.RandomShortestSize(sides, antialias=True), v2.RandomCrop(size)])
        else:
            raise DeepresError(f"unknown train_crop {train_crop!r}; use one of {TRAIN_CROPS}")
        steps = [crop, v2.RandomHorizontalFlip()]
        steps += [policy_transform(policy)] if policy is not None else []
        steps += [finish]
        steps += [v2.RandomErasing(p=random_erasing)] if random_erasing > 0 else []
        return v2.Compose(steps)
    resize = v2.Resize(int(size / 0.875), antialias=True)
    if not ten_crop:
        return v2.Compose([resize, v2.CenterCrop(size), finish])
    return _TenCrop(resize, v2.TenCrop(size), finish)


class _TenCrop:
    """Resize, TenCrop, stack to 10 x C x H x W, then finish (a class: picklable for workers)."""

    def __init__(self, resize: v2.Transform, crops: v2.Transform, finish: v2.Transform) -> None:
        self.resize, self.crops, self.finish = resize, crops, finish

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.finish(torch.stack(self.crops(self.resize(img))))
