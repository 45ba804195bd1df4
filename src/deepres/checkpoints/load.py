"""``load_model``: every saved-model kind deepres writes, as (model, metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from deepres.checkpoints.program import load_program
from deepres.checkpoints.run_files import read_meta, resolve_weights
from deepres.errors import DeepresError
from deepres.models import create_model


def load_model(path: str | Path, ema: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The model saved at ``path`` (a run folder, a .safetensors file, or a .pt2 program from
    ``deepres export``/``deepres quantize``), in eval mode, and its metadata (``model``,
    ``model_args``, ``classes``, ``mean``, ``std``, ...). With ``ema``, ``path`` is a run
    folder trained with ``--ema`` and the model holds its moving average of the weights."""
    path = resolve_weights(path, ema=ema)
    if path.suffix == ".pt2":
        return load_program(path)
    meta = read_meta(path)
    model = create_model(meta["model"], **meta.get("model_args", {}))
    try:
        model.load_state_dict(load_file(str(path)))
    except (RuntimeError, SafetensorError) as err:
        raise DeepresError(f"{path} does not match {meta['model']}: {err}") from None
    return model.eval(), meta
