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

This module prepares a model, ensemble members or a ``Predictor`` in a runtime; the runtimes
are in ``deepres.deploy.runtimes``, their cached ONNX file in ``onnx_cache``, ``auto``'s
measured choice in ``auto`` (``MEASURE_SECONDS``) and its remembered one in ``choices``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.data import cache_dir
from deepres.deploy.auto import auto_candidates, choose
from deepres.deploy.runtimes import (
    BUILDERS,
    RUNTIMES,
    Builder,
    PreparedModel,
    build_asked,
    check_runtime,
)
from deepres.deploy.target import Target, input_shape
from deepres.errors import DeepresError
from deepres.inference import Predictor
from deepres.inference.members import (
    Checkpoints,
    Member,
    combine,
    load_members,
    pretrained_member,
)

log = logging.getLogger(__name__)

__all__ = [  # the last four live in deepres.deploy.runtimes, importable from here as before
    "load_predictor",
    "prepare",
    "prepare_members",
    "runtime_names",
    "BUILDERS",
    "RUNTIMES",
    "PreparedModel",
    "check_runtime",
]


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
    checkpoint: Checkpoints | None = None,
    *,
    tta: str | None = None,
    ema: bool = False,
    runtime: str = "auto",
    threads: int | None = None,
    model: str | None = None,
    pretrained: str | Path | None = None,
) -> Predictor:
    """A ``Predictor`` (one checkpoint, or the ensemble of several, with ``tta`` and
    ``ema`` as there; or, instead of a checkpoint, ``model`` with the ``pretrained`` weights
    of ``deepres.inference.pretrained_member``) whose members run in ``runtime``, prepared
    for one image a call; its ``meta["runtime"]`` names the runtime(s) chosen."""
    check_runtime(runtime)
    if (checkpoint is None) == (pretrained is None):
        raise DeepresError("load_predictor takes a checkpoint or pretrained weights (one)")
    loaded = (
        load_members(checkpoint, ema)
        if pretrained is None
        else [pretrained_member(model, pretrained)]
    )
    members = prepare_members(loaded, runtime, 1, threads)
    combined, meta = combine(members, tta)
    meta["runtime"] = runtime_names(members)
    return Predictor(checkpoint or str(pretrained), combined, meta)
