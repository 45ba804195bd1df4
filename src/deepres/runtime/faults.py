"""Fault injection, so that tests can crash a real training run at a known moment (issue 8).

``DEEPRES_FAULT=WHERE:N[:ACTION][:rankR]`` makes the process fail at the N-th pass through
WHERE:

- ``step``: right after SGD step N.
- ``epoch``: right after the checkpoint of the N-th epoch this process trains, counted over
  every run in the process (an experiment trains its runs one after another).
- ``write``: inside the N-th file this process writes, after the temporary file is complete
  and before it replaces the old one: a crash in the middle of a checkpoint.
- ``grad``: the gradients of step N become NaN before the update (a numerical fault).
- ``weights``: a weight becomes Inf after the update of step N (an update that overflowed).

ACTION is ``kill`` (SIGKILL, the default), ``raise`` (a RuntimeError) or, for ``write``,
``enospc`` (the write fails as on a full disk). ``rankR`` limits the fault to one rank of a
torchrun job (default: every rank). Faults fire only in the first attempt of a torchrun job
(TORCHELASTIC_RESTART_COUNT 0), so a restarted job runs through.
"""

from __future__ import annotations

import errno
import os
import signal
from collections import Counter

import torch
from torch import nn

from deepres.errors import DeepresError

FAULT_ENV = "DEEPRES_FAULT"
POINTS = ("step", "epoch", "write", "grad", "weights")
ACTIONS = ("kill", "raise", "enospc")

_passes: Counter[str] = Counter()  # passes through each point in this process


def _armed(where: str, at: int | None) -> str | None:
    """The action to take at this pass through ``where``, or None."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0:
        return None
    parts = spec.split(":")
    try:
        point, count = parts[0], int(parts[1])
        options = parts[2:]
        action = next((o for o in options if o in ACTIONS), "kill")
        rank = next((int(o[4:]) for o in options if o.startswith("rank")), None)
        unknown = [o for o in options if o not in ACTIONS and not o.startswith("rank")]
        if point not in POINTS or unknown:
            raise ValueError
    except (IndexError, ValueError):
        raise DeepresError(
            f"{FAULT_ENV}={spec!r}: use WHERE:N[:ACTION][:rankR] with WHERE one of "
            f"{', '.join(POINTS)} and ACTION one of {', '.join(ACTIONS)}"
        ) from None
    if point != where or (rank is not None and rank != int(os.environ.get("RANK", "0"))):
        return None
    if at is None:
        _passes[where] += 1
        at = _passes[where]
    return action if at == count else None


def fault_point(where: str, at: int | None = None) -> None:
    """Fail here if ``DEEPRES_FAULT`` says so; ``at`` is the step number, or None to count
    the passes through ``where``."""
    action = _armed(where, at)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise RuntimeError(f"{FAULT_ENV}: injected failure at {where} {at or _passes[where]}")
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def poison(model: nn.Module, where: str, step: int) -> None:
    """``DEEPRES_FAULT=grad:N``: fill the gradients of step N with NaN;
    ``DEEPRES_FAULT=weights:N``: put an Inf into the first weight after step N."""
    if not _armed(where, step):
        return
    if where == "grad":
        for p in model.parameters():
            if p.grad is not None:
                p.grad.fill_(float("nan"))
    else:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("inf")
