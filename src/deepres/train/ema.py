"""An exponential moving average (EMA) of a model's weights: ``deepres train --ema DECAY``.

With ``w_t`` the weights after SGD step ``t`` and ``w_0`` those before the first step:

    ema_0 = w_0
    ema_t = d_t * ema_{t-1} + (1 - d_t) * w_t        (after every step t = 1, 2, ...)

With warm-up (the default) ``d_t = min(decay, (1 + t) / (10 + t))``, the schedule of
TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: early averages span the few
steps there are, so the random initial weights fade out at once (their share after ``t``
steps is the product of the ``d_s``; without warm-up it is ``decay^t``: still 12% after
2,000 steps at 0.999, which ruins the average of a short run). Without warm-up
(``--no-ema-warmup``) ``d_t = decay``, a plain EMA. It covers every parameter and every
floating-point buffer (BatchNorm's ``running_mean`` and ``running_var``, so the averaged
weights come with averaged statistics); integer buffers (BatchNorm's ``num_batches_tracked``)
are copied from the model.

``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn`` is not used: its first
update copies the weights (``ema_1 = w_1``, not the formula above) and it averages
``num_batches_tracked`` as a float and truncates it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from deepres.checkpoints import unwrap
from deepres.errors import DeepresError


class WeightEMA:
    """The moving average of ``model``'s weights, held in a copy of the model (``module``)
    that is evaluated and saved like the model itself."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        if not 0 < decay < 1:
            raise DeepresError(f"the EMA decay must be in (0, 1), such as 0.999; got {decay}")
        self.decay, self.warmup = decay, warmup
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        for p in self.module.parameters():
            p.grad = None

    def decay_at(self, step: int) -> float:
        """``d_t`` of the update after SGD step ``step`` (1, 2, ...)."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """The average's update after SGD step ``step`` (1, 2, ...), towards ``model``'s
        current weights."""
        decay = self.decay_at(step)
        mine, theirs = self.module.state_dict(), unwrap(model).state_dict()
        if mine.keys() != theirs.keys():
            raise DeepresError("the EMA was made for another model: its state dict keys differ")
        floats = [k for k, v in mine.items() if v.is_floating_point()]
        averages, weights = [mine[k] for k in floats], [theirs[k] for k in floats]
        if averages:
            torch._foreach_mul_(averages, decay)
            torch._foreach_add_(averages, weights, alpha=1 - decay)
        for key in mine.keys() - set(floats):
            mine[key].copy_(theirs[key])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights and buffers (the keys of the model's own state dict)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a saved average, bitwise."""
        self.module.load_state_dict(state)
