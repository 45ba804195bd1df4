"""Loading weight files made elsewhere: torchvision, timm, DataParallel/DDP, CIFAR repos.

Files are read without running code from them: safetensors, or ``torch.load`` with
``weights_only=True``. Common layouts are unwrapped so users need no renaming.

timm's pre-activation ResNets (``resnetv2_18/34/50/101/152`` and the deep-stem ``..d``
variants, with BatchNorm) are renamed into ``preact_resnet*`` keys (``from_timm_resnetv2``).
Files written by PyTorch before 0.4.1 have no BatchNorm ``num_batches_tracked`` counters;
they load with the counters at 0.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from deepres.errors import DeepresError, first_line

log = logging.getLogger("deepres")

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_PREFIXES = ("module.", "_orig_mod.", "model.")
_RENAMES = {"linear.": "fc."}  # CIFAR repos (e.g. akamaster/pytorch_resnet_cifar10)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat ``{key: tensor}`` from a safetensors or torch file, in torchvision's names."""
    path = Path(path)
    if not path.is_file():
        raise DeepresError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: object = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a hostile file can fail the parsers in any way
        first = first_line(err)
        raise DeepresError(
            f"cannot read weights from {path}: {first}. Only safetensors files and torch files "
            "holding plain tensors are accepted (nothing in them is executed)."
        ) from None
    while isinstance(data, dict):
        inner = next((data[k] for k in _WRAPPER_KEYS if isinstance(data.get(k), dict)), None)
        if inner is None:
            break
        data = inner
    if not isinstance(data, dict) or not data:
        raise DeepresError(f"{path} holds no state dict (found {type(data).__name__})")
    state = {}
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        for old, new in _RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        state[key] = value
    timm_v2 = any(key.startswith("stages.0.blocks.0.") for key in state)
    return from_timm_resnetv2(state) if timm_v2 else state


def from_timm_resnetv2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's ResNet-V2 keys in deepres's names: ``stem.conv`` -> ``conv1``,
    ``stages.{i}.blocks.{j}`` -> ``layer{i+1}.{j}``, ``norm{k}`` -> ``bn{k}``,
    ``downsample.conv`` -> ``downsample.0``, ``norm`` -> ``final_bn``, and the 1x1-conv
    classifier ``head.fc`` -> the linear ``fc``.

    A deep stem (``stem.conv1/norm1/conv2/norm2/conv3``, the ``resnetv2_50d`` family) maps to
    ``conv1.0/1/3/4/6``; those files have ResNet-D shortcuts, whose convolution is
    ``downsample.1`` (build the model with ``stem="deep", avg_down=True``). The tiered stem of
    ``resnetv2_50t`` (24/32/64 channels) and the weight-standardised GroupNorm/FRN/EvoNorm
    variants (``resnetv2_50x1_bit``, ``resnetv2_50d_gn``, ...) are other layers: loading them
    is refused, naming the keys that do not fit.
    """
    deep = "stem.conv1.weight" in state
    stem = {"conv1": "0", "norm1": "1", "conv2": "3", "norm2": "4", "conv3": "6"}
    out = {}
    for key, value in state.items():
        key = re.sub(r"^stem\.conv\.", "conv1.", key)
        key = re.sub(r"^stem\.(conv\d|norm\d)\.", lambda m: f"conv1.{stem[m[1]]}.", key)
        key = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"layer{int(m[1]) + 1}.", key)
        key = re.sub(r"\.norm(\d)\.", r".bn\1.", key)
        key = key.replace(".downsample.conv.", ".downsample.1." if deep else ".downsample.0.")
        key = re.sub(r"^norm\.", "final_bn.", key)
        key = re.sub(r"^head\.fc\.", "fc.", key)
        out[key] = value.flatten(1) if key == "fc.weight" else value
    return out


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a weight file into ``model``.

    A classifier of another size (fine-tuning to a new class count) is left as initialised
    and reported; missing BatchNorm ``num_batches_tracked`` counters (files from PyTorch
    < 0.4.1) start at 0; any other missing, unexpected or mis-shaped key is an error.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    own_head = [k for k in own if k.startswith("fc.")]
    file_head = [k for k in state if k.startswith("fc.")]
    if any(k not in own or own[k].shape != state[k].shape for k in file_head) or (
        own_head and not file_head
    ):
        log.warning(
            "%s: its classifier (%s) does not match the model's (%s); loading everything "
            "else and keeping the model's freshly initialised classifier",
            path,
            _head_size(state),
            _head_size(own),
        )
        state = {k: v for k, v in state.items() if k not in file_head}
    for key in own:  # files from PyTorch < 0.4.1: the counters start at 0
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(own[key])
    missing = [k for k in own if k not in state and k not in own_head]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

        problems = [
            f"missing {show(missing)}" if missing else "",
            f"unexpected {show(unexpected)}" if unexpected else "",
            f"wrong shape {show(mismatched)}" if mismatched else "",
        ]
        raise DeepresError(
            f"{path} does not fit {type(model).__name__} ({'; '.join(p for p in problems if p)})."
            " Is it a file for another architecture or shortcut option?"
        )
    model.load_state_dict(state, strict=False)


def _head_size(state: dict[str, torch.Tensor]) -> str:
    weight = state.get("fc.weight")
    return "none" if weight is None else f"{weight.shape[0]} classes"
