"""What "exact" means for every export and fast-path check: the same top-5 classes, and
logits within 1e-4 relative to the largest logit (at least 1e-4 absolute).

A relative bound, because float rounding grows with the logits: a confident model with
logits near 5,000 differs by ~1e-3 between two correct fp32 implementations."""

from __future__ import annotations

from dataclasses import dataclass

import torch

RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Agreement:
    """How closely a candidate's logits follow the reference's on one batch."""

    max_diff: float  # max |logit difference|
    scale: float  # max(1, max |reference logit|)
    top5: bool  # the top-5 classes agree (up to ties within the tolerance)

    @property
    def tolerance(self) -> float:
        return RELATIVE_TOLERANCE * self.scale

    @property
    def exact(self) -> bool:
        return self.top5 and self.max_diff <= self.tolerance

    def __str__(self) -> str:
        verdict = "exact" if self.exact else "NOT exact"
        top5 = "same top-5" if self.top5 else "top-5 differs"
        return f"{self.max_diff:.2e} (limit {self.tolerance:.1e}, {top5}: {verdict})"

    @staticmethod
    def worst(agreements: list[Agreement]) -> Agreement:
        """One agreement for several batches: exact only if each one is."""
        return Agreement(
            max(a.max_diff for a in agreements),
            min(a.scale for a in agreements),
            all(a.top5 for a in agreements),
        )


def agreement(reference: torch.Tensor, candidate: torch.Tensor) -> Agreement:
    """Compare (batch, classes) logits. A class in the candidate's top 5 that is not in the
    reference's counts as agreeing when its reference logit ties the 5th best within the
    tolerance (rounding may reorder near-equal classes)."""
    reference, candidate = reference.float(), candidate.float()
    scale = max(1.0, reference.abs().max().item())
    k = min(5, reference.shape[-1])
    fifth = reference.topk(k, dim=-1).values[..., -1:]
    picked = reference.gather(-1, candidate.topk(k, dim=-1).indices)
    top5 = bool((picked >= fifth - RELATIVE_TOLERANCE * scale).all())
    return Agreement((candidate - reference).abs().max().item(), scale, top5)
