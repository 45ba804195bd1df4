"""In-memory splits (`TensorData`), per-channel statistics and class-balanced subsets."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepres.errors import DeepresError

Stats = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass
class TensorData:
    """A whole split held in memory: uint8 images N x C x H x W and int64 labels N."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DeepresError(
                f"TensorData.images must be a uint8 N x C x H x W tensor, got "
                f"{self.images.dtype} with shape {tuple(self.images.shape)}; convert it first"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise DeepresError(
                f"TensorData.labels must be an int64 vector, got {self.labels.dtype} with shape "
                f"{tuple(self.labels.shape)}; use labels.long()"
            )
        if len(self.labels) != len(self.images):
            raise DeepresError(
                f"TensorData has {len(self.images)} images but {len(self.labels)} labels; "
                "they must match one to one"
            )
        if len(self.labels) and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)
        ):
            raise DeepresError(
                f"TensorData labels span {int(self.labels.min())}..{int(self.labels.max())} but "
                f"there are {len(self.classes)} class names; give one name per label"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def select(self, indices: torch.Tensor) -> TensorData:
        """The samples at `indices` (a copy), same class list."""
        return TensorData(self.images[indices], self.labels[indices], list(self.classes))


def subset_indices(labels: torch.Tensor, k: int, seed: int | None = None) -> torch.Tensor:
    """Indices of `k` samples per class: the first k of each class (seed None) or a seeded
    random k. Returned in increasing order, so the subset keeps the source order."""
    if k < 1:
        raise DeepresError(f"subset size must be >= 1 sample per class, got {k}")
    labels = labels.cpu()
    order = torch.arange(len(labels))
    if seed is not None:
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    picked = []
    for c in torch.unique(labels).tolist():
        members = order[labels[order] == c]
        picked.append(members[:k])
    return torch.cat(picked).sort().values if picked else order[:0]


def subset(data: TensorData, k: int, seed: int | None = None) -> TensorData:
    """`k` samples per class of `data` (see `subset_indices`)."""
    return data.select(subset_indices(data.labels, k, seed))


class ChannelStatsAccumulator:
    """Running per-channel sum and sum of squares of 0..1-scaled pixels (float64)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.total_sq: torch.Tensor | None = None
        self.count = 0

    def add(self, images: torch.Tensor) -> None:
        """Add uint8 images, C x H x W or N x C x H x W (any H, W)."""
        x = images if images.dim() == 4 else images.unsqueeze(0)
        x = x.to(torch.float64).div_(255.0)
        s = x.sum(dim=(0, 2, 3))
        sq = x.square_().sum(dim=(0, 2, 3))
        self.total = s if self.total is None else self.total + s
        self.total_sq = sq if self.total_sq is None else self.total_sq + sq
        self.count += x.shape[0] * x.shape[2] * x.shape[3]

    def merge(self, other: ChannelStatsAccumulator) -> None:
        if other.total is None or other.total_sq is None:
            return
        self.total = other.total if self.total is None else self.total + other.total
        self.total_sq = other.total_sq if self.total_sq is None else self.total_sq + other.total_sq
        self.count += other.count

    def result(self) -> Stats:
        if self.total is None or self.total_sq is None or self.count == 0:
            raise DeepresError("channel statistics of an empty image set; give at least one image")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean.square()).clamp_min(0.0)
        return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def channel_stats(images: torch.Tensor, chunk: int = 1024) -> Stats:
    """Per-channel (mean, std) of uint8 N x C x H x W images, in 0..1 scale.

    Used to normalise inputs; the ResNet paper (§3.4, §4.2) subtracts the per-pixel mean,
    the per-channel mean/std used here is the common equivalent for these small models.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise DeepresError(
            f"channel_stats needs uint8 N x C x H x W images, got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    acc = ChannelStatsAccumulator()
    for start in range(0, len(images), chunk):
        acc.add(images[start : start + chunk])
    return acc.result()
