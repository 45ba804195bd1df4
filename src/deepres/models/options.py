"""What a caller of ``create_model`` chooses among, importable without torch (the command
line lists these in its ``--help``)."""

from __future__ import annotations

from deepres.errors import DeepresError

SHORTCUTS: tuple[str, ...] = ("A", "B", "C", "none")  # the one list of shortcut kinds
ATTENTIONS: tuple[str, ...] = ("se",)
# the network's activation (``act``): torch's nn.ReLU (default), nn.Mish, nn.SiLU
ACTIVATIONS: tuple[str, ...] = ("relu", "mish", "silu")
# ``self_attention=True``: the last block of the first stage, as fastai's xresnet does in
# its four-stage networks (``sa=True``); an int chooses another stage
SELF_ATTENTION_STAGE = 0


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


def check_act(act: str) -> str:
    """``act`` if it is one of ``ACTIVATIONS``, else an error naming them."""
    if act not in ACTIVATIONS:
        raise DeepresError(
            f"unknown activation {act!r}: choose one of " + ", ".join(repr(a) for a in ACTIVATIONS)
        )
    return act


def self_attention_stage(self_attention: bool | int | None, num_stages: int) -> int | None:
    """The index of the stage whose last block gets the self-attention layer, or None:
    False/None for none, True for ``SELF_ATTENTION_STAGE``, an int for that stage (from
    the end if negative). Refuses other values and stages the network does not have."""
    if self_attention is None or self_attention is False:
        return None
    if self_attention is True:
        return SELF_ATTENTION_STAGE
    if not isinstance(self_attention, int) or not -num_stages <= self_attention < num_stages:
        raise DeepresError(
            f"self_attention must be True, False or a stage index in [{-num_stages}, "
            f"{num_stages - 1}] (this network has {num_stages} stages), got {self_attention!r}"
        )
    return self_attention % num_stages
