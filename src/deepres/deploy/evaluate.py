"""``deepres eval`` of what is deployed: one checkpoint, or an ensemble of several, with or
without test-time augmentation (TTA).

Here rather than in ``deepres.train.evaluate`` because it joins the two layers below:
the ensemble and TTA of ``deepres.inference`` and the evaluation of ``deepres.train``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Sized
from pathlib import Path

import torch

from deepres.data import TensorData, check_data
from deepres.deploy.runtime import prepare_members
from deepres.deploy.runtimes import check_runtime
from deepres.inference.members import Member, as_list, combine, load_members
from deepres.inference.options import check_tta_mode
from deepres.inference.tta import black_level, tta_views
from deepres.train.evaluate import (
    CheckpointEval,
    EvalResult,
    MemberEval,
    ViewScores,
    eval_batches,
    evaluate_checkpoint,
    evaluate_members,
    load_eval_split,
)

TEN_CROPS = 10  # ten-crop evaluation runs each batch of B images as B x 10 crops


def evaluate_checkpoints(
    checkpoints: str | Path | Sequence[str | Path],
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    subset: int | None = None,
    batch_size: int = 250,
    ten_crop: bool = False,
    tta: str | None = None,
    ema: bool = False,
    runtime: str = "eager",
) -> CheckpointEval:
    """Evaluate one checkpoint or the ensemble of several (their softmax probabilities
    averaged), with test-time augmentation ``tta`` (``"flip"``, ``"flip-crop"``) or
    without; ``ema``: each run's EMA weights; ``runtime``: what runs each member
    (``deepres.deploy.runtime``: eager, torch, onnxruntime or auto; all exact, so the
    numbers agree to float rounding). The answer's ``result`` is the ensemble's (with the
    TTA), ``single_view`` the same without TTA, ``members`` each member alone.
    One checkpoint without TTA in eager is ``evaluate_checkpoint``."""
    paths = as_list(checkpoints)
    check_runtime(runtime)
    if tta:
        check_tta_mode(tta)
    if len(paths) == 1 and not tta and runtime == "eager":
        return evaluate_checkpoint(
            paths[0], data, split, data_root, subset, batch_size, ten_crop, ema=ema
        )
    if data:
        check_data(data, data_root, split)
    members = load_members(paths, ema)
    _, meta = combine(members)
    data_name, images = load_eval_split(
        meta, str(paths[0]), data, split, data_root, subset, ten_crop
    )
    crops = TEN_CROPS if ten_crop else 1
    members = prepare_members(members, runtime, crops * min(batch_size, image_count(images)))
    batches = eval_batches(images, batch_size, meta)
    result, single_view, scores = evaluate_together(members, batches, tta)
    return CheckpointEval(
        result,
        meta,
        members[0].weights,
        data_name,
        split,
        ten_crop,
        tta,
        single_view,
        scores if len(members) > 1 else [],
    )


def image_count(images: TensorData | Sized) -> int:
    """How many images a split holds (in memory or in a folder)."""
    return len(images.labels) if isinstance(images, TensorData) else len(images)


def evaluate_together(
    members: list[Member], batches: Iterable[tuple[torch.Tensor, torch.Tensor]], tta: str | None
) -> tuple[EvalResult, EvalResult | None, list[MemberEval]]:
    """The ensemble's (or the one member's) result, its single-view result when there is
    TTA, and each member's, all from one pass over ``batches``."""
    meta = members[0].meta
    fill = black_level(meta["mean"], meta["std"])
    scores, ensemble = evaluate_members(
        [m.model for m in members],
        batches,
        len(meta["classes"]),
        views=(lambda x: tta_views(x, tta, fill)) if tta else None,
    )
    each = [
        MemberEval(m.weights, str(m.meta.get("model")), *final(s))
        for m, s in zip(members, scores, strict=True)
    ]
    return *final(ensemble or scores[0]), each


def final(scores: ViewScores) -> tuple[EvalResult, EvalResult | None]:
    """(the result with TTA when there was TTA, else single-view; the single-view result
    when there was TTA, else None)."""
    if scores.augmented is None:
        return scores.single.result(), None
    return scores.augmented.result(), scores.single.result()
