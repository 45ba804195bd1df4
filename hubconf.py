"""torch.hub entry points: ``torch.hub.load("path/to/deepres", "resnet50", source="local")``."""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from deepres.models import (  # noqa: E402, F401
    plain18,
    plain20,
    plain32,
    plain34,
    plain44,
    plain56,
    plain110,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet56,
    resnet101,
    resnet110,
    resnet152,
    resnet1202,
)
