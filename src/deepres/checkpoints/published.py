"""Weights out: ``save_pretrained`` turns a run folder (or a model and its metadata) into a
shareable deepres folder.

The folder holds ``model.safetensors`` (the weights, with the run files' ``deepres`` header,
so ``load_model(FOLDER)`` reads it too) and ``config.json``, whose layout
``deepres.models.pretrained`` defines and reads: ``create_model(name, pretrained=FOLDER)``
loads it, and a Hugging Face model repository holding those two files is the name
``"hf-hub:ORG/REPO"``. Here rather than in ``deepres.models`` because it reads run folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from deepres.checkpoints.run_files import read_meta, resolve_weights, save_weights
from deepres.errors import DeepresError
from deepres.models import create_model
from deepres.models.pretrained import CONFIG_FILE, FORMAT_VERSION, LIBRARY, WEIGHTS_FILE
from deepres.runtime import atomic_write

REQUIRED = ("model", "classes", "mean", "std", "input_size")
SHARED_KEYS = (*REQUIRED, "model_args", "resize_size", "interpolation", "metrics", "data")


def save_pretrained(
    source: str | Path | nn.Module,
    folder: str | Path,
    meta: dict[str, Any] | None = None,
    *,
    ema: bool = False,
) -> Path:
    """Write the deepres folder ``folder`` (``model.safetensors`` + ``config.json``); its path.

    ``source``: a run folder (its final weights, ``model.safetensors``; with ``ema``, its
    ``ema.safetensors``) or a run's weight file (such as ``best-val.safetensors``), whose
    header gives the metadata; or a model, with ``meta`` giving at least ``model``,
    ``classes``, ``mean``, ``std`` and ``input_size`` (and ``model_args``, the options it
    was built with).
    Entries of ``meta`` override a run's."""
    if isinstance(source, nn.Module):
        model, found = source, {}
    else:
        path = resolve_weights(source, ema=ema)
        if path.suffix != ".safetensors":
            raise DeepresError(f"{path}: save_pretrained takes a run folder or its .safetensors")
        found = read_meta(path)
        model = create_model(found["model"], **found.get("model_args", {}))
        model.load_state_dict(load_file(str(path)))
    meta = {**found, **(meta or {})}
    missing = [key for key in REQUIRED if key not in meta]
    if missing:
        raise DeepresError(f"save_pretrained needs the metadata {', '.join(missing)}")
    shared = {key: meta[key] for key in SHARED_KEYS if key in meta}
    shared.setdefault("model_args", {})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_FILE, model.eval(), shared)
    config = {"library_name": LIBRARY, "format_version": FORMAT_VERSION, **shared}
    atomic_write(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return folder
