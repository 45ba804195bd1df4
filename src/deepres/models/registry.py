"""Model registry: ``create_model`` and ``list_models``, as timm users know them."""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from deepres.errors import DeepresError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name."""
    _MODELS[builder.__name__] = builder
    return builder


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style ``pattern`` ("resnet*")."""
    return sorted(fnmatch.filter(_MODELS, pattern), key=_natural_key)


def on_demand(name: str) -> Callable[..., nn.Module] | None:
    """A builder for an unlisted depth of a depth-parametrised family, or None: CIFAR
    ResNets and plain nets 6n+2 (``resnet8``, ``plain14``), pre-activation CIFAR ResNets
    (``preact_resnet272``) and Wide ResNets WRN-d-k (``wrn22_2``)."""
    from deepres.models import families, resnet

    cifar = re.fullmatch(r"(resnet|plain)(\d+)", name)
    if cifar and int(cifar[2]) >= 8 and (int(cifar[2]) - 2) % 6 == 0:
        depth, defaults = int(cifar[2]), {"shortcut": "none"} if cifar[1] == "plain" else {}
        return lambda **kwargs: resnet.cifar_resnet(depth, **{**defaults, **kwargs})
    preact = re.fullmatch(r"preact_resnet(\d+)", name)
    if preact:
        depth = int(preact[1])
        families.preact_blocks(depth)  # a bad depth is refused here, with the rule
        return lambda **kwargs: families.cifar_preact_resnet(depth, **kwargs)
    wide = re.fullmatch(r"wrn(\d+)_(\d+)", name)
    if wide:
        depth, width = int(wide[1]), int(wide[2])
        families.check_wide_resnet(depth, width)
        return lambda **kwargs: families.cifar_wide_resnet(depth, width, **kwargs)
    return None


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``, or one built on demand (see ``on_demand``) with
    the same options as the listed ones."""
    if name in _MODELS:
        return _MODELS[name]
    builder = on_demand(name)
    if builder is None:
        close = difflib.get_close_matches(name, _MODELS, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise DeepresError(
            f"unknown model {name!r}.{hint} See deepres.list_models() for all {len(_MODELS)} names."
        )
    return builder


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
        pretrained: path of a weight file (safetensors or a torch state dict) to load.
        features_only: return a backbone whose forward gives the per-stage feature maps.
        out_indices: which feature maps (indices into ``model.feature_info``) to return.
        **kwargs: ``num_classes``, ``in_chans``, ``shortcut``, ``zero_init_residual``,
            ``preact``, ``groups``, ``attention``, ``dropout``, ... (see ``ResNet``).
    """
    try:
        model = get_builder(name)(**kwargs)
    except TypeError as err:
        raise DeepresError(f"bad option for {name}: {err}") from None
    if pretrained is not None:
        from deepres.models.weights import load_pretrained

        load_pretrained(model, pretrained)
    if features_only:
        from deepres.models.features import FeatureListNet

        model = FeatureListNet(model, out_indices)
    return model
