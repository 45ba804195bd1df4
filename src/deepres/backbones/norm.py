"""Normalisation layers of a backbone: BatchNorm as built, frozen (torchvision's detection
default) or synchronised across processes."""

from __future__ import annotations

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from deepres.errors import DeepresError

NORMS = ("frozen_bn", "bn", "sync_bn")


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace, in place, every ``BatchNorm2d`` under ``module`` by torchvision's
    ``FrozenBatchNorm2d`` holding the same scale, shift and running statistics (as buffers:
    no gradients, no statistics updates, the same output in training and evaluation).
    Returns ``module`` (or its replacement, when ``module`` is itself a BatchNorm)."""
    if isinstance(module, nn.BatchNorm2d):
        return _frozen_copy(module)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _frozen_copy(child))
        else:
            freeze_batchnorm(child)
    return module


def _frozen_copy(bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    if bn.affine:
        frozen.weight.copy_(bn.weight.detach())
        frozen.bias.copy_(bn.bias.detach())
    if bn.track_running_stats:
        frozen.running_mean.copy_(bn.running_mean)
        frozen.running_var.copy_(bn.running_var)
    tensors = [*bn.parameters(), *bn.buffers()]
    return frozen.to(tensors[0].device) if tensors else frozen


def convert_norm(module: nn.Module, norm: str) -> nn.Module:
    """Apply ``norm`` to a freshly built network: ``"frozen_bn"`` (see ``freeze_batchnorm``),
    ``"bn"`` (leave the BatchNorms as they are) or ``"sync_bn"`` (``nn.SyncBatchNorm``, for
    distributed training with few images per process). Returns the converted module."""
    check_norm(norm)
    if norm == "frozen_bn":
        return freeze_batchnorm(module)
    if norm == "sync_bn":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise DeepresError(
            f"unknown norm {norm!r}: choose 'frozen_bn' (torchvision's detection default), 'bn' "
            "(train the BatchNorms, as from scratch) or 'sync_bn' (BatchNorm across processes)"
        )
    return norm
