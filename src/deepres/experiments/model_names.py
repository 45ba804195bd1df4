"""The CIFAR networks of the paper's §4.2 by name: ``plain20``, ``resnet56``, ..."""

from __future__ import annotations

import re

from deepres.errors import DeepresError

MODEL_NAME = re.compile(r"^(plain|resnet)(\d+)$")


def check_depth(depth: int) -> int:
    """``depth`` if a CIFAR network can have it (6n+2 layers); an error otherwise."""
    if depth < 8 or (depth - 2) % 6:
        raise DeepresError(
            f"--depths {depth}: a CIFAR ResNet has 6n+2 layers (8, 14, 20, 32, 44, 56, 110, ...)"
        )
    return depth


def model_name(kind: str, depth: int) -> str:
    """``plain20``, ``resnet56``, ...: a CIFAR network of the paper's §4.2."""
    if kind not in ("plain", "resnet"):
        raise DeepresError(f"unknown network kind {kind!r}: 'plain' or 'resnet'")
    return f"{kind}{check_depth(depth)}"


def parse_model(name: str) -> tuple[str, int]:
    """``"plain56"`` -> ``("plain", 56)``."""
    match = MODEL_NAME.match(name)
    if not match:
        raise DeepresError(f"{name!r} is not a CIFAR plain or ResNet model name (plain20, ...)")
    return match.group(1), int(match.group(2))


def display_name(name: str) -> str:
    """The paper's spelling: ``plain56`` -> ``plain-56``, ``resnet56`` -> ``ResNet-56``."""
    kind, depth = parse_model(name)
    return f"{'ResNet' if kind == 'resnet' else 'plain'}-{depth}"
