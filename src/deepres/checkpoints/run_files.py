"""Checkpoints that survive a crash and carry no code.

A run folder holds:

- ``model.safetensors``: the latest weights, loadable into a bare model with
  ``load_state_dict``; the safetensors metadata describes the model (name, options, class
  names, input normalisation), so ``eval``/``predict``/``export`` need nothing else. A run
  folder given by name means this file: its final weights.
- ``best-val.safetensors``: with ``deepres train --val-split N`` only, the weights with the
  best top-1 so far on the N images held out of the training split (never chosen on the
  test split); read it by its file name.
- ``best.safetensors`` (runs of older versions only): the weights with the best *test*
  top-1, a choice made on the test split; it loads when asked for by file name, and a run
  folder that holds one still means its ``model.safetensors``.
- ``ema.safetensors``: with ``deepres train --ema DECAY``, the exponential moving average of
  the weights (and BatchNorm statistics), with the same header plus ``"ema": DECAY``.
- ``state.pt``: everything needed to continue exactly (weights, optimizer, scheduler, step,
  epoch, RNG states). It holds only tensors, numbers and strings and is read with
  ``torch.load(weights_only=True)``: nothing in it is executed.

Every file is written atomically: a temporary file in the same folder, fsync, rename, then
fsync of the folder. A crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from deepres.errors import DeepresError, first_line
from deepres.runtime import atomic_write

log = logging.getLogger("deepres")
_noticed: set[Path] = set()  # old run folders whose best.safetensors was pointed out

MODEL_FILE = "model.safetensors"
BEST_VAL_FILE = "best-val.safetensors"  # chosen on images held out of training (--val-split)
BEST_FILE = "best.safetensors"  # older runs: chosen on the test split, never read by default
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.pt"


def save_weights(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """The model's state dict as safetensors, with ``meta`` (JSON) in the header."""
    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    header = {"deepres": json.dumps(meta)}
    atomic_write(path, safetensors.torch.save(state, metadata=header))


def read_meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
    except Exception as err:  # noqa: BLE001 - a hostile file can fail the parser in any way
        raise DeepresError(f"{path} is not a readable safetensors file: {err}") from None
    if "deepres" not in header:
        raise DeepresError(
            f"{path} has no deepres metadata; for a bare weight file use "
            "create_model(name, pretrained=PATH) instead"
        )
    return json.loads(header["deepres"])


def resolve_weights(path: str | Path, ema: bool = False) -> Path:
    """A run folder means its final weights, ``model.safetensors`` (``best-val.safetensors``
    and an old run's ``best.safetensors`` are read by file name only); with ``ema``, its
    ``ema.safetensors`` (the moving average of ``deepres train --ema``)."""
    path = Path(path)
    if ema:
        return ema_weights(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise DeepresError(f"{path} holds no {MODEL_FILE}: is it a deepres run folder?")
        notice_old_best(path)
        return path / MODEL_FILE
    if not path.is_file():
        raise DeepresError(f"checkpoint not found: {path}")
    return path


def notice_old_best(run: Path) -> None:
    """One line, once per folder, where an old run's test-chosen ``best.safetensors`` sits
    beside the final weights that the folder now means."""
    key = run.resolve()
    if (run / BEST_FILE).is_file() and key not in _noticed:
        _noticed.add(key)
        log.warning(old_best_notice(run))


def old_best_notice(run: Path) -> str:
    """The line that says which weights an old run folder gives, and why."""
    return (
        f"{run}: its {BEST_FILE} was chosen on the test split (by an older deepres), so the "
        f"folder means its final weights, {MODEL_FILE}; give {run / BEST_FILE} to use the old one"
    )


def ema_weights(run: Path) -> Path:
    """The ``ema.safetensors`` of a run folder, or an error that says why there is none."""
    if run.is_file():
        raise DeepresError(
            f"{run} is a file, and --ema takes a run folder (its {EMA_FILE} is used): give the "
            "run folder, or give the file itself without --ema"
        )
    if not run.is_dir():
        raise DeepresError(f"checkpoint not found: {run}")
    if (run / EMA_FILE).is_file():
        return run / EMA_FILE
    if (run / MODEL_FILE).is_file():
        raise DeepresError(
            f"{run} was trained without --ema: it has no {EMA_FILE}. Drop --ema to use its "
            "weights, or train a run with --ema DECAY (such as 0.999)"
        )
    raise DeepresError(f"{run} holds no {MODEL_FILE}: is it a deepres run folder?")


def save_state(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any]:
    """Training state, read without unpickling any object that is not plain data."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DeepresError(f"no training state at {path}: nothing to resume") from None
    except Exception as err:  # noqa: BLE001 - a hostile file can fail the parser in any way
        first = first_line(err)
        raise DeepresError(
            f"refusing to load {path}: {first}. A deepres state file holds only tensors and "
            "numbers; this one is damaged or was not written by deepres."
        ) from None


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
