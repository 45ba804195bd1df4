"""On-disk cache location, source fingerprints and cached normalisation statistics."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from deepres.data.dataset import Stats
from deepres.errors import DeepresError
from deepres.runtime.files import atomic_write

CACHE_ENV = "DEEPRES_CACHE"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: `override`, else $DEEPRES_CACHE, else ~/.cache/deepres."""
    if override is not None:
        return Path(override)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "deepres"


def fingerprint(entries: Iterable[tuple[str, int, int]], tag: str = "") -> str:
    """A hex key for a sorted list of (relative path, size, mtime_ns) entries.

    Any added, removed, resized or touched file changes the key.
    """
    h = hashlib.sha256(tag.encode())
    for rel, size, mtime in sorted(entries):
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:32]


def file_entries(root: Path, paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of each of `paths` under `root`."""
    out = []
    for p in paths:
        st = p.stat()
        out.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return out


def load_stats(key: str, cache: Path) -> Stats | None:
    """Cached (mean, std) for fingerprint `key`, or None."""
    path = cache / f"stats-{key}.json"
    try:
        raw = json.loads(path.read_text())
        mean, std = tuple(float(v) for v in raw["mean"]), tuple(float(v) for v in raw["std"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return mean, std


def save_stats(key: str, stats: Stats, cache: Path, source: str) -> None:
    """Store (mean, std) for fingerprint `key` as a small JSON file."""
    body = {"source": source, "mean": list(stats[0]), "std": list(stats[1])}
    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write(cache / f"stats-{key}.json", json.dumps(body, indent=1).encode())
    except (OSError, DeepresError):
        pass  # a read-only cache only costs a recomputation next time
