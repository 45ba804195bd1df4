"""Numerical checks of the training loop: a NaN or an Inf stops the run with its step named,
before it can reach a checkpoint; ``--detect-anomaly`` names the operation that made it."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.errors import DeepresError, first_line


def numerical_fault(what: str, where: str, out: Path) -> DeepresError:
    return DeepresError(
        f"{what} at {where}; stopping. The last good checkpoint in {out} is intact: lower "
        "--lr, or rerun with --detect-anomaly to find the first bad operation."
    )


def check_finite(what: str, value: float, where: str, out: Path) -> None:
    """Stop when ``value`` (a loss, a gradient norm) is NaN or Inf."""
    if not math.isfinite(value):
        raise numerical_fault(f"{what} became {value}", where, out)


def check_gradients(model: nn.Module, scaler: torch.amp.GradScaler, where: str, out: Path) -> None:
    """Stop on NaN or Inf gradients; fp16's GradScaler skips such steps itself instead."""
    if not scaler.is_enabled():
        check_finite("the gradients", gradient_norm(model), where, out)


def check_weights(weights: dict[str, torch.Tensor], where: str, out: Path) -> None:
    """Stop before non-finite weights replace a good checkpoint."""
    bad = next((k for k, v in weights.items() if not v.isfinite().all()), None)
    if bad is not None:
        raise numerical_fault(f"{bad} became non-finite", where, out)


def gradient_norm(model: nn.Module) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).item() if grads else 0.0


def watch_outputs(model: nn.Module, where: Callable[[], str]) -> None:
    """``--detect-anomaly``, forward half: every leaf module checks its output and buffers
    (BatchNorm's running statistics), so the first operation that makes a NaN or Inf is
    named (torch's anomaly mode covers the backward)."""

    def watch(name: str) -> Callable[..., None]:
        def check(module: nn.Module, inputs: Any, output: Any) -> None:
            made = {"output": output, **dict(module.named_buffers(recurse=False))}
            for what, value in made.items():
                if value.is_floating_point() and not value.isfinite().all():
                    finite = all(t.isfinite().all() for t in inputs)
                    raise DeepresError(
                        f"--detect-anomaly: {name} ({type(module).__name__}) produced "
                        f"{'nan' if value.isnan().any() else 'inf'} values in its {what} at "
                        f"{where()}; its inputs were {'finite' if finite else 'not finite'}"
                    )

        return check

    for name, module in model.named_modules():
        if not any(module.children()):
            module.register_forward_hook(watch(name))


def backward(loss: torch.Tensor, where: Callable[[], str]) -> None:
    """``loss.backward()``; under anomaly mode a NaN made by a backward op names that op."""
    try:
        loss.backward()
    except RuntimeError as err:
        if "returned nan values" not in str(err):
            raise
        raise DeepresError(
            f"--detect-anomaly: {first_line(err)} at {where()} (the forward call "
            "that made it is printed above)"
        ) from None
