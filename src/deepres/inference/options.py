"""What a caller of inference chooses, importable without torch (the command line lists these
in its ``--help``)."""

from __future__ import annotations

from deepres.errors import DeepresError

TTA_MODES = ("flip", "flip-crop")  # see ``deepres.inference.tta``


def check_tta_mode(mode: str) -> None:
    if mode not in TTA_MODES:
        raise DeepresError(f"unknown TTA mode {mode!r}: choose one of {', '.join(TTA_MODES)}")
