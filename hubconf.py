"""torch.hub entry points: ``torch.hub.load("path/to/deepres", "resnet50", source="local")``.

Every model in deepres's registry is an entry point, under its registered name."""

import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch", "torchvision"]

_sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))

from deepres.models.registry import get_builder as _get_builder  # noqa: E402
from deepres.models.registry import list_models as _list_models  # noqa: E402

globals().update({name: _get_builder(name) for name in _list_models()})
