"""What a run shows while it trains: a bar on a terminal; elsewhere (a log file, CI) a
short line every ``--progress-every`` seconds, so a log never goes quiet for a whole epoch."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_EVERY = 0.5  # seconds between redraws of the bar


class Progress:
    """``update`` after every step; ``line`` for the rows that are always printed.

    mode: ``bar`` redraws one line on a terminal, ``lines`` prints a line (step, loss,
    accuracy, img/s, ETA) at most every ``every`` seconds, ``off`` prints nothing, and
    ``auto`` is ``bar`` on a terminal and ``lines`` elsewhere. ``clock`` gives seconds.
    """

    def __init__(
        self,
        total_steps: int,
        mode: str = "auto",
        stream: TextIO = sys.stderr,
        every: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if mode == "auto":
            mode = "bar" if stream.isatty() else "lines"
        self.mode, self.total, self.stream, self.clock = mode, total_steps, stream, clock
        self.every = BAR_EVERY if mode == "bar" else every
        self.start = self.last = clock()
        self.start_step: int | None = None

    def update(
        self, step: int, epoch: int, loss: float, accuracy: float, images_per_s: float
    ) -> None:
        if self.mode == "off":
            return
        now = self.clock()
        if self.start_step is None:  # the rate counts from the first step this process took
            self.start_step, self.start = step, now
        if now - self.last < self.every and (self.mode == "lines" or step < self.total):
            return
        self.last = now
        rate = (step - self.start_step) / max(now - self.start, 1e-9)
        eta = _clock((self.total - step) / rate if rate > 0 else float("inf"))
        status = (
            f"{step}/{self.total} ep {epoch} loss {loss:.3f} acc {100 * accuracy:5.1f}%"
            f" {images_per_s:6.0f} img/s ETA {eta}"
        )
        if self.mode == "lines":
            self.stream.write(f"step {status}\n")
        else:
            done = int(24 * step / max(self.total, 1))
            self.stream.write(f"\r[{'#' * done}{'-' * (24 - done)}] {status}  ")
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.mode == "off":
            return
        if self.mode == "bar":
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
