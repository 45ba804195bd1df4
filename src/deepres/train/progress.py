"""A progress bar on a terminal, plain lines elsewhere (log files, CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, total_steps: int, mode: str = "auto", stream: TextIO = sys.stderr, every: float = 0.5
    ) -> None:
        if mode == "auto":
            mode = "bar" if stream.isatty() else "lines"
        self.mode, self.total, self.stream, self.every = mode, total_steps, stream, every
        self.start = self.last = time.perf_counter()
        self.start_step: int | None = None

    def update(
        self, step: int, epoch: int, loss: float, accuracy: float, images_per_s: float
    ) -> None:
        if self.mode != "bar":
            return
        now = time.perf_counter()
        if self.start_step is None:
            self.start_step, self.start = step, now
        if now - self.last < self.every and step < self.total:
            return
        self.last = now
        done = step / max(self.total, 1)
        rate = (step - self.start_step) / max(now - self.start, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        bar = "#" * int(24 * done) + "-" * (24 - int(24 * done))
        self.stream.write(
            f"\r[{bar}] {step}/{self.total} ep {epoch} loss {loss:.3f} acc {100 * accuracy:5.1f}%"
            f" {images_per_s:6.0f} img/s ETA {_clock(eta)}  "
        )
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
