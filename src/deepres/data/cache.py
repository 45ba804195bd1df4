"""The on-disk cache: its location, source fingerprints, cached normalisation statistics
and the decoded uint8 images of an image folder (safetensors files, written atomically)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from deepres.data.dataset import Stats, TensorData
from deepres.errors import DeepresError
from deepres.runtime.files import atomic_write

CACHE_ENV = "DEEPRES_CACHE"
CACHE_VERSION = "1"  # of the image-folder tensor files; part of their key, so a new one rebuilds

log = logging.getLogger("deepres.data")


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


def tensor_cache_file(key: str, cache: Path) -> Path:
    """Where the decoded images of the image folder with cache key `key` are kept."""
    return cache / f"folder-{key}.safetensors"


def load_tensors(path: Path, key: str) -> TensorData | None:
    """The `TensorData` cached at `path` for `key`, or None (missing, stale or damaged)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
        return TensorData(images, labels, json.loads(meta["classes"]))
    except Exception as e:  # noqa: BLE001 - any damage to the cache means: rebuild it
        log.warning("ignoring unreadable cache file %s (%s); rebuilding it", path, e)
        return None


def save_tensors(path: Path, key: str, data: TensorData, source: Path) -> None:
    """Cache `data` (decoded from the folder `source`) at `path` under `key`, whole or not
    at all; an unwritable cache folder only costs a warning and a decode next time."""
    from safetensors.torch import save

    meta = {
        "key": key,
        "classes": json.dumps(data.classes),
        "source": str(source),
        "version": CACHE_VERSION,
    }
    tensors = {"images": data.images.contiguous(), "labels": data.labels}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, save(tensors, meta))  # bytes: a full disk is then an OSError
    except (OSError, DeepresError) as e:
        log.warning(
            "could not write cache file %s (%s); set DEEPRES_CACHE to a writable "
            "folder to speed up the next load",
            path,
            e,
        )
