"""The inference runtime of ``deepres eval``, ``predict`` and ``serve`` (``--runtime``).

Every runtime returns fp32 logits that are exact against the model as loaded (see
``deepres.inference.exactness``: same top-5, logits within 1e-4 of the largest):

- ``eager``: the model as loaded;
- ``torch``: ``optimize_for_inference(model, dtype="fp32")``: BatchNorm folded into the
  convolutions, channels-last memory (never bf16: the default must be exact);
- ``onnxruntime``: the model exported to ONNX and run in an ONNX Runtime session (all graph
  optimisations, ``torch.get_num_threads()`` intra-op threads). The file is cached in
  ``<cache>/onnx/`` (~/.cache/deepres or $DEEPRES_CACHE), named by the hash of the weights
  file's bytes (or, for a model without one, of its state dict), its metadata, the input
  shape, the opset and the torch version. Its batch dimension is free, so one file serves
  every batch size (the last, smaller batch of an evaluation included);
- ``openvino``: the same cached ONNX file compiled by OpenVINO for the CPU (fp32, the same
  thread count), when ``openvino`` is installed;
- ``auto`` (the commands' default): ``torch``, ``onnxruntime`` and ``openvino`` (those
  installed) run on a batch of the real shape, each is checked against ``eager`` on it (an
  inexact one is never picked), the exact ones are timed in a few alternating rounds (fewer
  for big models: about ``MEASURE_SECONDS`` in all) and the fastest is picked. The choice
  is remembered in the cache (``deepres.deploy.choices``), so the next call picks it
  without measuring.
  If no candidate is exact (or none runs), ``eager``.

Ensembles and test-time augmentation: the runtime is applied to each member
(``prepare_members``); ``Ensemble`` and ``TestTimeAugmentation`` stay in torch around the
prepared members, so their averaging is the code ``eager`` runs, and members of the same
architecture share one remembered choice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.data import cache_dir
from deepres.deploy.choices import ChoiceFile, machine_facts
from deepres.errors import DeepresError
from deepres.inference import Predictor, optimize_for_inference
from deepres.inference.exactness import agreement
from deepres.inference.members import Checkpoints, Member, combine, load_members
from deepres.inference.onnx import (
    OPSET,
    OnnxModule,
    OnnxRuntimeModel,
    OpenVinoModel,
    export_onnx,
    runtime_installed,
)
from deepres.runtime import atomic_write

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "eager", "onnxruntime", "openvino")
MEASURE_SECONDS = 2.0  # about how long auto's timed rounds take in all
MAX_ROUNDS = 5
MAX_MEASURE_IMAGES = 256  # auto measures at most this many images a batch (memory)

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Target:
    """What a runtime is prepared for: the model's metadata, its weights file (if any),
    the batch size it will see, the ONNX Runtime thread count and the cache folder."""

    meta: dict[str, Any]
    batch_size: int
    threads: int
    cache: Path
    weights: Path | None = None
    input_shape: tuple[int, int, int] = (3, 224, 224)
    _example: torch.Tensor | None = field(default=None, repr=False)

    @property
    def example(self) -> torch.Tensor:
        """A random batch of the real shape (at most ``MAX_MEASURE_IMAGES`` images)."""
        if self._example is None:
            batch = min(self.batch_size, MAX_MEASURE_IMAGES)
            generator = torch.Generator().manual_seed(0)
            self._example = torch.randn(batch, *self.input_shape, generator=generator)
        return self._example


Builder = Callable[[nn.Module, Target], Runner]


@dataclass
class Stats:
    """How often ``auto`` measured (tests read it to see a remembered choice reused)."""

    measurements: int = 0


STATS = Stats()


class PreparedModel(nn.Module):
    """A model in its inference runtime: batch in, fp32 logits out; ``runtime`` names the
    runtime and ``reason`` says why it was chosen."""

    def __init__(self, runner: Runner, runtime: str, reason: str) -> None:
        super().__init__()
        self.runner, self.runtime, self.reason = runner, runtime, reason

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.runner(images).float()


def build_eager(model: nn.Module, target: Target) -> Runner:
    return model


def build_torch(model: nn.Module, target: Target) -> Runner:
    return optimize_for_inference(model, dtype="fp32")


def build_onnxruntime(model: nn.Module, target: Target) -> Runner:
    require("onnxruntime", "pip install 'deepres[deploy]', or choose --runtime torch")
    return on_onnx_file(OnnxRuntimeModel, model, target)


def build_openvino(model: nn.Module, target: Target) -> Runner:
    require("openvino", "pip install openvino onnxscript, or choose --runtime onnxruntime or torch")
    return on_onnx_file(OpenVinoModel, model, target)


def require(runtime: str, fix: str) -> None:
    """Refuse ``runtime`` when it (or the exporter's onnxscript) is not installed."""
    if not runtime_installed(runtime):
        raise DeepresError(f"the {runtime} runtime needs {runtime} and onnxscript: {fix}")


def on_onnx_file(
    session: Callable[[Path, int], OnnxRuntimeModel | OpenVinoModel],
    model: nn.Module,
    target: Target,
) -> OnnxModule:
    """``session`` (ONNX Runtime's or OpenVINO's) on the model's cached ONNX file; a damaged
    file is exported again, once."""
    path = onnx_file(model, target)
    try:
        runner = session(path, target.threads)
    except Exception:  # a damaged cache file: export it again, once
        path.unlink(missing_ok=True)
        path = onnx_file(model, target)
        runner = session(path, target.threads)
    return OnnxModule(runner, path)


BUILDERS: dict[str, Builder] = {
    "eager": build_eager,
    "torch": build_torch,
    "onnxruntime": build_onnxruntime,
    "openvino": build_openvino,
}


def weights_digest(model: nn.Module, target: Target) -> str:
    """The hash an exported file is named by: the weights file's bytes (else the state
    dict), the metadata, the input shape, the opset and the torch version."""
    digest = hashlib.sha256()
    header = [target.meta, type(model).__name__, target.input_shape, OPSET, torch.__version__]
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    if target.weights is not None:
        with open(target.weights, "rb") as f:
            for chunk in iter(lambda: f.read(2**20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def onnx_file(model: nn.Module, target: Target) -> Path:
    """The model's ONNX file in the cache, exported (atomically) when not there yet."""
    folder = target.cache / "onnx"
    name = str(target.meta.get("model", type(model).__name__)).replace("/", "_")
    path = folder / f"{name}-{weights_digest(model, target)[:24]}.onnx"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        example = target.example[:2]

        def write(tmp: Path) -> None:
            export_onnx(model, example, tmp, purpose="the onnxruntime runtime")

        atomic_write(path, write)
        log.info("exported %s to %s for ONNX Runtime", name, path)
    return path


def check_runtime(runtime: str, candidates: Mapping[str, Builder] | None = None) -> None:
    """Refuse an unknown runtime name, listing the known ones."""
    known = [*RUNTIMES, *(candidates or {})]
    if runtime not in known:
        raise DeepresError(f"unknown runtime {runtime!r}: choose one of {', '.join(known)}")


def input_shape(model: nn.Module, meta: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) of the model's input, from its metadata."""
    size = int(meta.get("input_size", getattr(model, "default_input_size", 224)))
    channels = int(meta.get("model_args", {}).get("in_chans", len(meta.get("mean", [0] * 3))))
    return channels, size, size


def auto_candidates() -> dict[str, Builder]:
    """What ``auto`` measures: ``torch``, and ``onnxruntime`` and ``openvino`` where they are
    installed."""
    names = ["torch", *(name for name in ("onnxruntime", "openvino") if runtime_installed(name))]
    return {name: BUILDERS[name] for name in names}


def prepare(
    model: nn.Module,
    meta: dict[str, Any],
    runtime: str = "auto",
    batch_size: int = 1,
    threads: int | None = None,
    *,
    weights: str | Path | None = None,
    candidates: Mapping[str, Builder] | None = None,
    cache: str | Path | None = None,
) -> PreparedModel:
    """``model`` (with its checkpoint ``meta``) in ``runtime`` (see the module docstring),
    for batches of ``batch_size``; ``threads``: ONNX Runtime's intra-op threads (default
    ``torch.get_num_threads()``); ``weights``: the file it was loaded from (names its ONNX
    file); ``candidates``: what ``auto`` chooses from (default ``auto_candidates()``);
    ``cache``: the cache folder (default ~/.cache/deepres or $DEEPRES_CACHE)."""
    check_runtime(runtime, candidates)
    target = Target(
        meta,
        max(1, int(batch_size)),
        int(threads or torch.get_num_threads()),
        cache_dir(cache),
        Path(weights) if weights is not None else None,
        input_shape(model, meta),
    )
    model = model.eval()
    if runtime == "auto":
        prepared = choose(model, target, dict(candidates or auto_candidates()))
    else:
        builder = {**BUILDERS, **(candidates or {})}[runtime]
        prepared = PreparedModel(build_asked(runtime, builder, model, target), runtime, "asked")
    log.info("%s: runtime %s (%s)", meta.get("model", "model"), prepared.runtime, prepared.reason)
    return prepared


def build_asked(name: str, builder: Builder, model: nn.Module, target: Target) -> Runner:
    """The runtime the user named; one that cannot run this model is a clear error."""
    try:
        return builder(model, target)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DeepresError(
            f"runtime {name} cannot run {target.meta.get('model', 'this model')}: {first}; "
            "choose --runtime eager (the model as loaded) or auto"
        ) from err


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
            return PreparedModel(runner, remembered, f"remembered from {store.path}")
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
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return Candidate(name, None, f"failed: {first}")
    check = agreement(reference, logits)
    if not check.exact:
        return Candidate(name, None, f"not exact: {check}")
    return Candidate(name, runner, f"exact: {check}")


def measure(
    model: nn.Module, target: Target, candidates: dict[str, Builder]
) -> tuple[PreparedModel, dict[str, Any]]:
    """Check every candidate against eager, time the exact ones, pick the fastest."""
    STATS.measurements += 1
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
    return PreparedModel(runner, best, reason), details


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
    """The median seconds per batch of each runner, timed in alternating rounds: as many
    as fit in about ``MEASURE_SECONDS`` (at least 1, at most ``MAX_ROUNDS``)."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    rounds, done = 1, 0
    with torch.inference_mode():
        while done < rounds:
            order = list(runners) if done % 2 == 0 else list(reversed(runners))
            for name in order:
                start = time.perf_counter()
                runners[name](example)
                times[name].append(time.perf_counter() - start)
            done += 1
            if done == 1:
                per_round = sum(t[0] for t in times.values())
                rounds = max(1, min(MAX_ROUNDS, int(MEASURE_SECONDS / max(per_round, 1e-9))))
    return {name: statistics.median(t) for name, t in times.items()}


def prepare_members(
    members: Sequence[Member],
    runtime: str = "auto",
    batch_size: int = 1,
    threads: int | None = None,
) -> list[Member]:
    """Each member's model in ``runtime`` (``prepare``), for batches of ``batch_size``."""
    return [
        Member(
            m.weights,
            prepare(m.model, m.meta, runtime, batch_size, threads, weights=m.weights),
            m.meta,
        )
        for m in members
    ]


def runtime_names(members: Sequence[Member]) -> str:
    """The members' runtimes, as one string ('torch', or 'onnxruntime, torch')."""
    names = {getattr(m.model, "runtime", "eager") for m in members}
    return ", ".join(sorted(names))


def load_predictor(
    checkpoint: Checkpoints,
    *,
    tta: str | None = None,
    ema: bool = False,
    runtime: str = "auto",
    threads: int | None = None,
) -> Predictor:
    """A ``Predictor`` (one checkpoint, or the ensemble of several, with ``tta`` and
    ``ema`` as there) whose members run in ``runtime``, prepared for one image a call;
    its ``meta["runtime"]`` names the runtime(s) chosen."""
    check_runtime(runtime)
    members = prepare_members(load_members(checkpoint, ema), runtime, 1, threads)
    model, meta = combine(members, tta)
    meta["runtime"] = runtime_names(members)
    return Predictor(checkpoint, model, meta)
