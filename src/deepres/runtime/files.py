"""Files written whole or not at all: a crash or a full disk never leaves half a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from deepres.errors import DeepresError
from deepres.runtime.faults import fault_point


def atomic_write(path: Path, content: bytes | Callable[[Path], None]) -> None:
    """Write ``content`` (bytes, or a function that writes the file it is given) to ``path``
    through a temporary file in the same folder, fsync, rename and fsync of the folder.
    Readers see the old file or the new one, never a mix; a failed write (full disk, file
    size limit, read-only folder) raises DeepresError and leaves the old file as it was.

    Give bytes where the file may be large: serializers such as ``torch.save`` report a
    full disk as an opaque error, Python's own I/O as the OSError it is."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # see remove_stale_temporaries
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        fault_point("write")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DeepresError(
            f"could not write {path}: {err.strerror or err}. The previous version of the file "
            "is intact; free some space or fix the folder's permissions, then run again "
            "(a training run: resume it)."
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files a killed writer left in ``folder``; call it only while no
    other process writes there (a training run holds the folder's RunLock)."""
    for stale in Path(folder).glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)
