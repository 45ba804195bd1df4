"""Random uint8 data of any shape, for benchmarks and smoke tests (no files needed)."""

from __future__ import annotations

import torch

from deepres.data.dataset import TensorData
from deepres.errors import DeepresError


def synthetic_data(
    n: int,
    channels: int = 3,
    height: int = 32,
    width: int = 32,
    num_classes: int = 10,
    seed: int = 0,
) -> TensorData:
    """`n` uniformly random uint8 images C x H x W with uniformly random labels, seeded."""
    if min(n, channels, height, width, num_classes) < 1:
        raise DeepresError(
            f"synthetic data needs positive sizes, got n={n}, shape={channels}x{height}x{width}, "
            f"classes={num_classes}"
        )
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, height, width), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (n,), generator=g, dtype=torch.int64)
    return TensorData(images, labels, [f"class{i}" for i in range(num_classes)])


def parse_synthetic(spec: str) -> tuple[tuple[int, int, int], int, int | None]:
    """Parse `synthetic[:CxHxW[:classes[:n]]]` -> ((C, H, W), classes, n or None)."""
    parts = spec.split(":")
    if parts[0] != "synthetic" or len(parts) > 4:
        raise DeepresError(
            f"bad synthetic spec {spec!r}; use synthetic:CxHxW:classes[:n], "
            f"e.g. synthetic:3x32x32:10"
        )
    try:
        shape = (
            tuple(int(v) for v in parts[1].lower().split("x")) if len(parts) > 1 else (3, 32, 32)
        )
        classes = int(parts[2]) if len(parts) > 2 else 10
        n = int(parts[3]) if len(parts) > 3 else None
    except ValueError as e:
        raise DeepresError(
            f"bad synthetic spec {spec!r} ({e}); use synthetic:CxHxW:classes[:n], "
            f"e.g. synthetic:3x32x32:10:5000"
        ) from e
    if len(shape) != 3:
        raise DeepresError(f"bad synthetic shape in {spec!r}; give CxHxW, e.g. 3x32x32")
    if min(*shape, classes, 1 if n is None else n) < 1:
        raise DeepresError(
            f"bad synthetic spec {spec!r}: sizes, classes and n must be positive, "
            f"e.g. synthetic:3x32x32:10:5000"
        )
    return (shape[0], shape[1], shape[2]), classes, n
