"""``create_model``: a model by name, with weights or as a feature backbone.

Above the registry: importing the family modules here registers their builders and name
patterns, so every name of ``list_models()`` and every on-demand depth is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from deepres.errors import DeepresError
from deepres.models import families, resnet
from deepres.models.features import FeatureListNet
from deepres.models.pretrained import resolve_pretrained
from deepres.models.registry import get_builder, list_models, register_model
from deepres.models.weights import load_pretrained

FAMILY_MODULES = (resnet, families)  # imported for their registrations

__all__ = ["create_model", "get_builder", "list_models", "register_model"]


def create_model(
    name: str,
    pretrained: str | Path | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs,
) -> nn.Module:
    """Build a model by name.

    Args:
        name: a name from ``list_models()`` (e.g. ``"resnet50"``, ``"resnet20"``, ``"wrn28_10"``)
            or an on-demand depth (``"resnet8"``, ``"preact_resnet272"``, ``"wrn22_2"``).
        pretrained: weights to load: a file or folder path, an http(s) URL (``#sha256=HEX``
            optional), ``"torchvision"`` / ``"torchvision:IMAGENET1K_V2"``, ``"timm:ARCH.TAG"``
            or ``"hf-hub:ORG/REPO"`` (see ``deepres.models.pretrained``). The weights' own
            options (their class count, say) come first, then ``kwargs``; their classes and
            preprocessing are kept as ``model.pretrained_cfg``.
        features_only: return a backbone whose forward gives the per-stage feature maps.
        out_indices: which feature maps (indices into ``model.feature_info``) to return.
        **kwargs: ``num_classes``, ``in_chans``, ``shortcut``, ``zero_init_residual``,
            ``preact``, ``groups``, ``attention``, ``dropout``, ``act``, ``blur_pool``,
            ``self_attention``, ... (see ``ResNet``).
    """
    weights = resolve_pretrained(pretrained, name) if pretrained is not None else None
    if weights is not None:
        kwargs = {**weights.model_args, **kwargs}
    try:
        model = get_builder(name)(**kwargs)
    except TypeError as err:
        raise DeepresError(f"bad option for {name}: {err}") from None
    if weights is not None:
        load_pretrained(model, weights.path)
        model.pretrained_cfg = weights.for_model(name, kwargs)
    if features_only:
        model = FeatureListNet(model, out_indices)
    return model
