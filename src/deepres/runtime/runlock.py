"""One writer per run folder: an advisory lock the kernel drops when its process dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from deepres.errors import DeepresError


class RunLock:
    """Held from creation until ``release()`` (or the end of a ``with`` block), or until the
    process dies: a crashed run never leaves its folder locked."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise DeepresError(
                f"{folder} is in use by another deepres process (pid {holder}); wait for it to "
                "finish or choose another --out"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
