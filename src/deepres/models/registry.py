"""Model registry: names to builders, as timm users know it.

A leaf module: it imports none of the model modules. Each family module registers its
builders (``register_model``) and, for depths built on demand, its own name pattern
(``register_pattern``); ``deepres.models.factory`` imports them all and builds models.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from deepres.errors import DeepresError

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[..., "nn.Module"]
PatternFactory = Callable[[re.Match[str]], "Builder | None"]
B = TypeVar("B", bound=Callable[..., object])

_MODELS: dict[str, Builder] = {}
_PATTERNS: list[tuple[re.Pattern[str], PatternFactory]] = []


def register_model(builder: B) -> B:
    """Register a builder under its function name."""
    _MODELS[builder.__name__] = builder
    return builder


def register_pattern(regex: re.Pattern[str] | str, factory: PatternFactory) -> None:
    """Build unlisted names that fully match ``regex`` on demand (e.g. ``resnet8``).

    ``factory`` takes the match and returns a builder, or None when the name is not one
    of its family's after all; for a depth its family cannot build it raises
    ``DeepresError`` with the rule.
    """
    _PATTERNS.append((re.compile(regex), factory))


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style ``pattern`` ("resnet*")."""
    return sorted(fnmatch.filter(_MODELS, pattern), key=_natural_key)


def on_demand(name: str) -> Builder | None:
    """A builder for an unlisted name from the first registered pattern that takes it
    (CIFAR ``resnet8``, ``preact_resnet272``, ``wrn22_2``, ...), or None."""
    for regex, factory in _PATTERNS:
        match = regex.fullmatch(name)
        if match:
            builder = factory(match)
            if builder is not None:
                return builder
    return None


def get_builder(name: str) -> Builder:
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
