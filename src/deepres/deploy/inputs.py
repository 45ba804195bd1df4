"""Real images, prepared as the model was trained, for checking and calibrating deployments."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from deepres.data import ImageFolderDataset, TensorData, load_split, normalize
from deepres.errors import DeepresError
from deepres.inference import Predictor, expand_inputs


def images_from_files(inputs: list[str], meta: dict[str, Any], limit: int) -> torch.Tensor:
    """Image files (or folders of them) as one normalised batch, like ``deepres predict``."""
    paths = expand_inputs(inputs)[:limit]
    if not paths:
        raise DeepresError("no image files found in " + ", ".join(inputs))
    prepare = Predictor("", model=torch.nn.Identity(), meta=meta).prepare
    return torch.cat([prepare(Path(p).read_bytes(), str(p)) for p in paths])


def images_from_split(
    data: str, split: str, meta: dict[str, Any], count: int, data_root: str | None = None
) -> torch.Tensor:
    """The first images of each class of a data set split, normalised as in training,
    ``count`` in all (spread over the classes)."""
    classes = len(meta["classes"])
    size = int(meta.get("input_size", 224))
    mean, std = meta["mean"], meta["std"]
    split_data = load_split(
        data,
        split,
        data_root,
        subset=max(1, math.ceil(count / classes)),
        image_size=size,
        train_transform=False,
        stats=(mean, std),
    )
    if isinstance(split_data, ImageFolderDataset):
        picks = interleave(split_data.targets, count)
        return torch.stack([split_data[i][0] for i in picks])
    assert isinstance(split_data, TensorData)
    images = split_data.images[interleave(split_data.labels.tolist(), count)]
    in_chans = len(mean)
    if images.shape[1] == 3 and in_chans == 1:
        images = v2.functional.rgb_to_grayscale(images)
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images.float(), (size, size), mode="bilinear", antialias=True)
        images = images.round().clamp(0, 255).to(torch.uint8)
    return normalize(images, mean, std)


def interleave(labels: list[int], count: int) -> list[int]:
    """Indices taking one image of each class in turn, so any prefix covers many classes."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    order: list[int] = []
    queues = [by_class[c] for c in sorted(by_class)]
    depth = 0
    while len(order) < count and any(depth < len(q) for q in queues):
        order.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return order[:count]


def check_images(
    meta: dict[str, Any],
    count: int,
    images: list[str] | None = None,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    allow_random: bool = True,
) -> tuple[torch.Tensor, str]:
    """A batch of ``count`` real images and where it came from: ``images`` (files/folders)
    when given, else the ``split`` of ``data`` (default: the checkpoint's data set), else —
    when the data is not on this machine and ``allow_random`` — random normal input."""
    if images:
        batch = images_from_files(images, meta, count)
        return batch, f"{len(batch)} image file(s) from {', '.join(images)}"
    name = data or meta.get("data")
    reason = "the checkpoint names no data set"
    if name:
        try:
            batch = images_from_split(name, split, meta, count, data_root)
            return batch, f"{len(batch)} {split} images of {name}"
        except DeepresError as err:
            reason = str(err)
    if not allow_random:
        raise DeepresError(f"no images to use: {reason}")
    size = int(meta.get("input_size", 224))
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(count, len(meta["mean"]), size, size, generator=generator)
    return batch, f"{count} random inputs (no real images: {reason})"
