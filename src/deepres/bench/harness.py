"""Timing on a noisy machine: warm batches in alternating rounds (``deepres.runtime.timing``),
ratios per round, each figure beside the machine's measured matrix-multiply rate."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepres.runtime.timing import alternating_rounds

# --- the machine's limits -------------------------------------------------------------------


def matmul_gflops(dtype: torch.dtype, size: int = 1024, seconds: float = 0.5) -> float:
    """Measured dense matrix-multiply rate (2 FLOPs per multiply-add)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- timing ---------------------------------------------------------------------------------


class Runner:
    """Something to time: ``start()`` before a round, ``step()`` per batch, ``stop()`` after."""

    def __init__(
        self,
        step: Callable[[], None],
        start: Callable[[], None] = lambda: None,
        stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.step, self.start, self.stop = step, start, stop


def time_round(runner: Runner, steps: int) -> float:
    """Seconds per batch over ``steps`` batches, after one untimed batch."""
    runner.start()
    try:
        runner.step()
        begin = time.perf_counter()
        for _ in range(steps):
            runner.step()
        return (time.perf_counter() - begin) / steps
    finally:
        runner.stop()


# --- what is timed --------------------------------------------------------------------------


def train_runner(
    model: nn.Module, batches: Callable[[], Iterator], amp: torch.dtype | None, channels_last: bool
) -> Runner:
    """One SGD step per batch, the data pipeline included."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True
    )
    model.train()
    state: dict[str, Iterator] = {}

    def start() -> None:
        state["it"] = batches()

    def step() -> None:
        try:
            images, labels = next(state["it"])
        except StopIteration:
            state["it"] = batches()
            images, labels = next(state["it"])
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def stop() -> None:
        state.pop("it", None)  # ends DataLoader workers between rounds

    return Runner(step, start, stop)


def data_runner(batches: Callable[[], Iterator]) -> Runner:
    """Only the batches of a training step: producing them (gathering, cropping, flipping,
    normalising), no model; timed beside ``train_runner`` it gives the data's share."""
    state: dict[str, Iterator] = {}

    def start() -> None:
        state["it"] = batches()

    def step() -> None:
        try:
            next(state["it"])
        except StopIteration:
            state["it"] = batches()
            next(state["it"])

    return Runner(step, start, lambda: state.pop("it", None))


def infer_runner(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> Runner:
    def step() -> None:
        with torch.inference_mode():
            model(images)

    return Runner(step)


@dataclass
class Rounds:
    """How to time: ``rounds`` alternating rounds of ``steps`` batches of ``batch_size``."""

    rounds: int
    steps: int
    batch_size: int


def time_runners(variants: dict[str, Runner], rounds: Rounds) -> dict[str, list[float]]:
    """Each variant's seconds per batch, one figure a round: ``rounds.rounds`` rounds of
    ``rounds.steps`` batches, every variant once a round, in the same order each round."""
    work = {name: partial(time_round, runner, rounds.steps) for name, runner in variants.items()}
    return alternating_rounds(work, rounds.rounds)


def time_variants(
    variants: dict[str, Runner], rounds: Rounds, macs: int, baseline: str
) -> dict[str, Any]:
    """Each variant timed in alternating rounds; with ``baseline`` among them, every other
    variant's speed-up over it per round and its median."""
    per_round = time_runners(variants, rounds)
    results = {name: summarize_times(t, rounds.batch_size, macs) for name, t in per_round.items()}
    if baseline in per_round:
        for name in variants:
            if name != baseline:
                ratios = [r / o for o, r in zip(per_round[name], per_round[baseline], strict=True)]
                results[name]["speedup_per_round"] = ratios
                results[name]["speedup_median"] = statistics.median(ratios)
    return results


def summarize_times(seconds: list[float], batch_size: int, flops_macs: int) -> dict[str, Any]:
    best = statistics.median(seconds)
    images_per_s = batch_size / best
    return {
        "images_per_s": images_per_s,
        "ms_per_batch": 1000 * best,
        "gflops": 2 * flops_macs * images_per_s / 1e9,
        "rounds_images_per_s": [batch_size / s for s in seconds],
        "peak_rss_mb": peak_rss_mb(),
    }
