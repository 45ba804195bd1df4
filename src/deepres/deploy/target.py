"""What an inference runtime is prepared for (``Target``): the model's metadata and weights
file, the batch size, the thread count, the cache folder and a batch of the real shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

MAX_MEASURE_IMAGES = 256  # auto measures at most this many images a batch (memory)

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Target:
    """What a runtime is prepared for: the model's metadata, its weights file (if any),
    the batch size it will see, the ONNX Runtime thread count and the cache folder."""

    meta: dict[str, Any]
    batch_size: int
    threads: int
    cache: Path
    weights: Path | None = None
    input_shape: tuple[int, int, int] = (3, 224, 224)
    _example: torch.Tensor | None = field(default=None, repr=False)

    @property
    def example(self) -> torch.Tensor:
        """A random batch of the real shape (at most ``MAX_MEASURE_IMAGES`` images)."""
        if self._example is None:
            batch = min(self.batch_size, MAX_MEASURE_IMAGES)
            generator = torch.Generator().manual_seed(0)
            self._example = torch.randn(batch, *self.input_shape, generator=generator)
        return self._example


def input_shape(model: nn.Module, meta: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) of the model's input, from its metadata."""
    size = int(meta.get("input_size", getattr(model, "default_input_size", 224)))
    channels = int(meta.get("model_args", {}).get("in_chans", len(meta.get("mean", [0] * 3))))
    return channels, size, size
