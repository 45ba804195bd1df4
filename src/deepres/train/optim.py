"""The optimizer of a run, built from its options by ``build_optimizer``.

- ``--optimizer``: ``sgd`` (the default: momentum and weight decay, §3.4), ``adamw`` and
  ``radam`` (``torch.optim``, decoupled weight decay), ``lamb`` (``timm.optim.Lamb``);
- ``--lookahead``: ``timm.optim.Lookahead`` around it (RAdam + Lookahead is fastai's
  Ranger); its slow weights live in the inner optimizer's state, so ``state_dict()``, and
  with it ``state.pt``, holds them;
- the parameter groups: ``--norm-weight-decay`` (the normalisation layers' own decay, as in
  torchvision's reference scripts) and ``--layer-lr-decay`` (a learning-rate factor per
  stage, kept in each group as ``lr_scale``; every step sets a group's lr to the schedule's
  x its ``lr_scale``). Groups are built from every parameter, frozen or not, so that a
  checkpoint's optimizer state fits whatever ``--freeze-epochs`` holds still.

timm is imported only for ``lamb`` and ``--lookahead``; torch has neither.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.ops._utils import split_normalization_params

from deepres.errors import DeepresError
from deepres.train.config import TrainConfig
from deepres.train.finetune import layer_depths


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` asks for, over ``model``'s parameters; each step sets its lr."""
    optimizer = sgd(cfg, model) if cfg.optimizer == "sgd" else adaptive(cfg, model)
    if cfg.lookahead:
        lookahead = timm_optimizer("Lookahead", "--lookahead")
        optimizer = lookahead(optimizer, alpha=cfg.lookahead_alpha, k=cfg.lookahead_k)
    return optimizer


def sgd(cfg: TrainConfig, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum and weight decay (§3.4: 0.9 and 1e-4)."""
    return torch.optim.SGD(
        param_groups(cfg, model),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        foreach=True,
    )


def adaptive(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW, RAdam (both with decoupled weight decay) or LAMB, with ``--betas`` and
    ``--eps`` where given (else each optimizer's own defaults)."""
    options: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.betas is not None:
        options["betas"] = tuple(cfg.betas)
    if cfg.eps is not None:
        options["eps"] = cfg.eps
    groups = param_groups(cfg, model)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, foreach=True, **options)
    if cfg.optimizer == "radam":
        return torch.optim.RAdam(groups, decoupled_weight_decay=True, foreach=True, **options)
    if cfg.optimizer == "lamb":
        return timm_optimizer("Lamb", "--optimizer lamb")(groups, **options)
    raise DeepresError(f"unknown --optimizer {cfg.optimizer!r}")


def param_groups(cfg: TrainConfig, model: nn.Module) -> Any:
    """The parameters as the optimizer takes them: all in one group (the default), or
    groups by normalisation (``--norm-weight-decay``) and by depth (``--layer-lr-decay``):
    the head's first, so that ``param_groups[0]["lr"]`` is the schedule's."""
    decay = cfg.layer_lr_decay
    norm_ids: set[int] = set()
    if cfg.norm_weight_decay is not None:
        norm, other = split_normalization_params(model)
        if decay is None:
            return [{"params": other}, {"params": norm, "weight_decay": cfg.norm_weight_decay}]
        norm_ids = {id(p) for p in norm}
    if decay is None:
        return model.parameters()
    depths = layer_depths(model)
    by_key: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        by_key.setdefault((depths[name], id(p) in norm_ids), []).append(p)
    groups = []
    for (depth, is_norm), params in sorted(by_key.items()):
        group = {"params": params, "lr": cfg.lr * decay**depth, "lr_scale": decay**depth}
        if is_norm:
            group["weight_decay"] = cfg.norm_weight_decay
        groups.append(group)
    return groups


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's ``lr`` for this step: each group's ``lr`` x its ``lr_scale``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def timm_optimizer(name: str, asked: str) -> Any:
    """``timm.optim.NAME``, or a clear error when timm is not installed."""
    try:
        import timm.optim
    except ImportError:
        raise DeepresError(
            f"{asked} uses timm.optim.{name}, and timm is not installed: pip install timm "
            "(deepres's dev extra has it)"
        ) from None
    return getattr(timm.optim, name)
