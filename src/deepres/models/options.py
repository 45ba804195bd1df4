"""What a caller of ``create_model`` chooses among, importable without torch (the command
line lists these in its ``--help``)."""

from __future__ import annotations

from deepres.errors import DeepresError

SHORTCUTS: tuple[str, ...] = ("A", "B", "C", "none")  # the one list of shortcut kinds
ATTENTIONS: tuple[str, ...] = ("se",)


def check_shortcut(shortcut: str) -> str:
    """``shortcut`` if it is one of ``SHORTCUTS``, else an error naming them."""
    if shortcut not in SHORTCUTS:
        raise DeepresError(
            f"unknown shortcut {shortcut!r}: choose one of "
            + ", ".join(repr(s) for s in SHORTCUTS)
            + " (A zero-pad, B projection where the shape changes, C projection everywhere,"
            " none for the plain network)"
        )
    return shortcut


def check_block_options(attention: str | None, dropout: float) -> None:
    """Refuse an unknown ``attention`` and a ``dropout`` outside [0, 1)."""
    if attention is not None and attention not in ATTENTIONS:
        raise DeepresError(
            f"unknown attention {attention!r}: choose None or 'se' (squeeze-and-excitation)"
        )
    if not 0.0 <= dropout < 1.0:
        raise DeepresError(f"dropout must be in [0, 1), got {dropout}")
