"""Loading one checkpoint or several as one model: the members of an ensemble must agree on
what they take and what they answer (classes, input size, channels, normalisation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from deepres.checkpoints import load_model, resolve_weights
from deepres.errors import DeepresError
from deepres.inference.ensemble import Ensemble
from deepres.inference.tta import TestTimeAugmentation
from deepres.models import create_model, load_pretrained
from deepres.models.pretrained import resolve_pretrained

Checkpoints = str | Path | Sequence[str | Path]


@dataclass
class Member:
    """One loaded checkpoint."""

    weights: Path  # the file loaded
    model: nn.Module
    meta: dict[str, Any]


def as_list(checkpoints: Checkpoints) -> list[str | Path]:
    """One checkpoint or several, as a list."""
    if isinstance(checkpoints, str | Path):
        return [checkpoints]
    if not checkpoints:
        raise DeepresError("no checkpoint given: name at least one run folder or weight file")
    return list(checkpoints)


def load_member(checkpoint: str | Path, ema: bool = False) -> Member:
    """One checkpoint; with ``ema``, the run folder's EMA weights (ema.safetensors)."""
    weights = resolve_weights(checkpoint, ema=ema)
    model, meta = load_model(weights)
    return Member(weights, model, meta)


PREDICT_META = ("classes", "mean", "std")


def pretrained_member(model_name: str | None, spec: str | Path) -> Member:
    """Published weights as a member (``resolve_pretrained``'s names, deepres and run
    folders): ``model_name`` (default: the model the weights name) built with the weights'
    options and loaded, their classes, mean/std and preprocessing as its metadata. Weights
    without class names or normalisation (a plain file or URL) are refused."""
    weights = resolve_pretrained(spec, model_name)
    model_name = model_name or weights.meta.get("model")
    if not model_name:
        raise DeepresError(f"{spec} does not name its model: give the model too (--model NAME)")
    missing = [key for key in PREDICT_META if not weights.meta.get(key)]
    if missing:
        raise DeepresError(
            f"{spec} carries no {' and no '.join(missing)}, which predicting needs: a plain "
            "weight file or URL has no class names. Use a published name (torchvision, "
            "timm:ARCH.TAG, hf-hub:ORG/REPO), a deepres folder (deepres publish) or a run "
            "folder, or train from these weights (train --init-from) and predict with the run"
        )
    model = create_model(model_name, **weights.model_args)
    load_pretrained(model, weights.path)
    return Member(weights.path, model.eval(), weights.for_model(model_name, weights.model_args))


def load_members(checkpoints: Checkpoints, ema: bool = False) -> list[Member]:
    """Every checkpoint loaded (eval mode), checked to be usable together (``check_members``)."""
    members = [load_member(c, ema) for c in as_list(checkpoints)]
    check_members(members)
    return members


def input_spec(meta: dict[str, Any]) -> dict[str, Any]:
    """What an ensemble's members must share."""
    return {
        "classes": list(meta["classes"]),
        "input size": int(meta.get("input_size", 224)),
        "channel count": int(meta.get("model_args", {}).get("in_chans", len(meta["mean"]))),
        "mean": [round(float(v), 6) for v in meta["mean"]],
        "std": [round(float(v), 6) for v in meta["std"]],
    }


def shown(value: Any) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} items [{', '.join(map(str, value[:5]))}, ...]"
    return str(value)


def check_members(members: Sequence[Member]) -> None:
    """Refuse members that differ in classes, input size, channel count or mean/std, naming
    the two checkpoints and every difference."""
    first = members[0]
    reference = input_spec(first.meta)
    for member in members[1:]:
        spec = input_spec(member.meta)
        diffs = [
            f"{what} ({shown(reference[what])} vs {shown(spec[what])})"
            for what in reference
            if spec[what] != reference[what]
        ]
        if diffs:
            raise DeepresError(
                f"{first.weights} and {member.weights} cannot form an ensemble: they differ in "
                f"{'; '.join(diffs)}. Ensemble members must share the classes, input size, "
                "channel count and mean/std they were trained with."
            )


def ensemble_meta(members: Sequence[Member]) -> dict[str, Any]:
    """One member's metadata; for several, the model named after them and ``members`` added."""
    meta = dict(members[0].meta)
    if len(members) > 1:
        meta["model"] = "ensemble of " + ", ".join(str(m.meta.get("model")) for m in members)
        meta["members"] = [
            {"checkpoint": str(m.weights), "model": m.meta.get("model")} for m in members
        ]
    return meta


def combine(members: Sequence[Member], tta: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The members as one model (the model itself, or an ``Ensemble``), wrapped in
    ``TestTimeAugmentation`` when ``tta`` names a mode, and its metadata."""
    model = members[0].model if len(members) == 1 else Ensemble([m.model for m in members])
    meta = ensemble_meta(members)
    if tta:
        model = TestTimeAugmentation(model, tta, meta["mean"], meta["std"])
        meta["tta"] = tta
    return model.eval(), meta
