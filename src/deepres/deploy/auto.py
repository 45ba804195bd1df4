"""``--runtime auto``: the remembered choice (``deepres.deploy.choices``) when its facts hold,
else every candidate checked against ``eager``, the exact ones timed in alternating rounds,
the fastest picked and remembered."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepres.deploy.choices import ChoiceFile, machine_facts
from deepres.deploy.runtimes import BUILDERS, Builder, PreparedModel, build_eager
from deepres.deploy.target import Runner, Target
from deepres.errors import first_line
from deepres.inference.exactness import agreement
from deepres.inference.onnx import runtime_installed
from deepres.runtime.timing import alternating_rounds, timed

log = logging.getLogger(__name__)

MEASURE_SECONDS = 2.0  # about how long auto's timed rounds take in all
MAX_ROUNDS = 5


def auto_candidates() -> dict[str, Builder]:
    """What ``auto`` measures: ``torch``, and ``onnxruntime`` and ``openvino`` where they are
    installed."""
    names = ["torch", *(name for name in ("onnxruntime", "openvino") if runtime_installed(name))]
    return {name: BUILDERS[name] for name in names}


def choice_facts(model: nn.Module, target: Target, names: Sequence[str]) -> dict[str, Any]:
    """What a remembered choice is valid for (see ``deepres.deploy.choices``)."""
    meta = target.meta
    return {
        "model": str(meta.get("model", type(model).__name__)),
        "model_args": meta.get("model_args", {}),
        "module": type(model).__name__,
        "quantized": meta.get("quantized"),
        "input": list(target.input_shape),
        "batch_size": target.batch_size,
        "threads": target.threads,
        **machine_facts(),
        "candidates": sorted(names),
    }


def choose(model: nn.Module, target: Target, candidates: dict[str, Builder]) -> PreparedModel:
    """``auto``: the remembered choice for these facts, else the fastest exact candidate
    (measured now and remembered)."""
    store = ChoiceFile(target.cache)
    facts = choice_facts(model, target, list(candidates))
    remembered = store.get(facts, [*candidates, "eager"])
    if remembered is not None:
        builder = {**candidates, "eager": build_eager}[remembered]
        try:
            runner = builder(model, target)
            reason = f"remembered from {store.path}"
            return PreparedModel(runner, remembered, reason, "remembered")
        except Exception as err:  # e.g. the ONNX cache was cleared and cannot be rewritten
            log.warning("remembered runtime %s does not run now (%s); measuring", remembered, err)
    prepared, details = measure(model, target, candidates)
    store.put(facts, prepared.runtime, details)
    return prepared


@dataclass
class Candidate:
    """One runtime tried by ``auto``: its runner when it ran and was exact, and why not."""

    name: str
    runner: Runner | None
    verdict: str


def try_candidate(
    name: str, builder: Builder, model: nn.Module, target: Target, reference: torch.Tensor
) -> Candidate:
    """Build ``name`` and compare its logits on the example batch with ``reference``."""
    try:
        runner = builder(model, target)
        with torch.inference_mode():
            logits = runner(target.example)
    except Exception as err:  # a runtime that cannot take this model is left out
        first = first_line(err)
        return Candidate(name, None, f"failed: {first}")
    check = agreement(reference, logits)
    if not check.exact:
        return Candidate(name, None, f"not exact: {check}")
    return Candidate(name, runner, f"exact: {check}")


def measure(
    model: nn.Module, target: Target, candidates: dict[str, Builder]
) -> tuple[PreparedModel, dict[str, Any]]:
    """Check every candidate against eager, time the exact ones, pick the fastest."""
    with torch.inference_mode():
        reference = model(target.example).float()
    tried = [try_candidate(n, b, model, target, reference) for n, b in candidates.items()]
    exact = {c.name: c.runner for c in tried if c.runner is not None}
    seconds = time_rounds(exact, target.example) if len(exact) > 1 else {}
    if seconds:
        best = min(seconds, key=seconds.__getitem__)
        reason = f"measured {speed_summary(seconds, best, len(target.example))}"
    elif exact:
        best = next(iter(exact))
        reason = "the only exact candidate"
    else:
        best, reason = "eager", "no other runtime was exact"
    dropped = [f"{c.name} {c.verdict}" for c in tried if c.runner is None]
    reason += f"; left out: {'; '.join(dropped)}" if dropped else ""
    runner = exact.get(best) or model
    details = {
        "reason": reason,
        "verdicts": {c.name: c.verdict for c in tried},
        "ms_per_batch": {name: round(1000 * s, 3) for name, s in seconds.items()},
    }
    return PreparedModel(runner, best, reason, "measured"), details


def speed_summary(seconds: dict[str, float], best: str, images: int) -> str:
    """'onnxruntime 3.10 ms vs torch 4.50 ms (1.45x) per batch of 250'."""
    others = [f"{name} {1000 * s:.2f} ms" for name, s in seconds.items() if name != best]
    slowest = max(seconds.values())
    ratio = slowest / seconds[best] if seconds[best] > 0 else float("inf")
    return (
        f"{best} {1000 * seconds[best]:.2f} ms vs {', '.join(others)} "
        f"({ratio:.2f}x) per batch of {images}"
    )


def time_rounds(runners: dict[str, Runner], example: torch.Tensor) -> dict[str, float]:
    """The median seconds per batch of each runner, timed in alternating rounds (A B, B A,
    ...): as many as fit in about ``MEASURE_SECONDS`` (at least 1, at most ``MAX_ROUNDS``)."""
    work = {name: timed(lambda run=run: run(example)) for name, run in runners.items()}
    with torch.inference_mode():
        times = alternating_rounds(work, MAX_ROUNDS, budget_s=MEASURE_SECONDS, mirror=True)
    return {name: statistics.median(t) for name, t in times.items()}
