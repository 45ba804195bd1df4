"""Ensembles: several trained models that vote by averaging their class probabilities.

The paper's best ImageNet result (3.57% top-5 error, §4.1 and Table 5) comes from an ensemble
of six models of different depths; ``Ensemble`` is that combination for any members that
share the classes and the input they were trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """The members' softmax probabilities averaged, returned as log-probabilities.

    Log-probabilities keep what a classifier's logits promise: ``argmax``/``topk`` give the
    ensemble's classes, ``softmax`` gives back the averaged probabilities, and cross-entropy
    on them is the ensemble's loss. An ensemble of one member returns that member's
    log-softmax, which ranks the classes exactly as its logits do.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(-1) for m in self.members]).mean(0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
