"""Parameter and multiply-add counts, and the per-stage output sizes (the paper's Table 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int = 224, in_chans: int | None = None) -> int:
    """Multiply-adds of one forward pass on one image, counting convolutions and FC layers
    (the convention of the paper's Table 1 and torchvision's published figures)."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs: tuple, _output: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    hooks = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        _run_once(model, input_size, in_chans)
    finally:
        for h in hooks:
            h.remove()
    return total


@dataclass
class StageRow:
    name: str
    output_size: tuple[int, ...]  # channels, height, width (or features for the FC)
    params: int


def stage_table(
    model: nn.Module, input_size: int = 224, in_chans: int | None = None
) -> list[StageRow]:
    """Output size after each top-level stage of the model, for one input image."""
    rows: list[StageRow] = []
    hooks = []
    for name, module in model.named_children():
        if isinstance(module, (nn.Identity, nn.ReLU, nn.BatchNorm2d)):
            continue

        def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor, name: str = name) -> None:
            rows.append(StageRow(name, tuple(output.shape[1:]), count_params(module)))

        hooks.append(module.register_forward_hook(hook))
    try:
        _run_once(model, input_size, in_chans)
    finally:
        for h in hooks:
            h.remove()
    return rows


def _run_once(model: nn.Module, input_size: int, in_chans: int | None) -> None:
    channels = in_chans or getattr(model, "in_chans", 3)
    # On the model's device: a model built under ``torch.device("meta")`` is counted
    # without allocating or initialising any weight.
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, input_size, input_size, device=device))
    finally:
        model.train(was_training)
