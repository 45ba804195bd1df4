"""Timing on a noisy machine: every variant once a round, in alternating rounds, so that a
drift in the machine's speed falls on all of them alike (``deepres bench`` and ``--runtime
auto`` both time this way). Standard library only."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

# torch.utils.benchmark's Timer times one statement at a time (blocked_autorange); it does not
# interleave several variants round by round, which the per-round ratios of bench need.
Timed = Callable[[], float]  # runs the work once and returns the seconds it counts


def timed(work: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> Timed:
    """``work`` as a ``Timed``: the seconds one call of it takes on ``clock``."""

    def run() -> float:
        start = clock()
        work()
        return clock() - start

    return run


def alternating_rounds(
    variants: Mapping[str, Timed],
    rounds: int,
    *,
    budget_s: float | None = None,
    mirror: bool = False,
) -> dict[str, list[float]]:
    """Each variant's seconds, one figure a round: ``rounds`` rounds, each running every
    variant once in the given order (with ``mirror``, every other round in reverse order:
    A B, B A, A B, ...). With ``budget_s``, only as many rounds as fit in about that many
    seconds, judged by the first round's total (at least 1, at most ``rounds``)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    total, done = rounds, 0
    while done < total:
        order = list(variants)[::-1] if mirror and done % 2 else list(variants)
        for name in order:
            times[name].append(variants[name]())
        done += 1
        if done == 1 and budget_s is not None:
            per_round = sum(seconds[0] for seconds in times.values())
            total = max(1, min(rounds, int(budget_s / max(per_round, 1e-9))))
    return times
