"""The on-disk cache: its location, source fingerprints, cached normalisation statistics
and the decoded uint8 images of an image folder (safetensors files, written atomically)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

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


def write_tensors_streamed(
    path: Path,
    meta: dict[str, str],
    labels: list[int],
    image_shape: tuple[int, ...],
    fill: Callable[[np.ndarray], None],
) -> None:
    """Write the safetensors file `save_tensors` would (uint8 `images` N x `image_shape`,
    int64 `labels`, `meta`) without holding the images in memory: the file is laid out and
    its space reserved first, then `fill` writes the images into a writable memory map of
    their part of it. Whole or not at all (`atomic_write`); an error raises DeepresError."""
    n, per_image = len(labels), int(np.prod(image_shape))
    header = {
        "__metadata__": meta,
        "labels": {"dtype": "I64", "shape": [n], "data_offsets": [0, 8 * n]},
        "images": {
            "dtype": "U8",
            "shape": [n, *image_shape],
            "data_offsets": [8 * n, 8 * n + n * per_image],
        },
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keeps the tensors 8-byte aligned, as safetensors does
    start = 8 + len(raw) + 8 * n

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.write(np.asarray(labels, dtype="<i8").tobytes())
            f.flush()
            os.posix_fallocate(f.fileno(), 0, start + n * per_image)  # a full disk: OSError now
        if n:
            images = np.memmap(tmp, np.uint8, mode="r+", offset=start, shape=(n, *image_shape))
            fill(images)
            images.flush()
            del images

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def map_tensors(path: Path, key: str) -> TensorData | None:
    """The `TensorData` cached at `path` for `key` with its images memory-mapped from the
    file (copy-on-write: pages are read when used, writes never reach the file), or None
    (missing, stale or damaged)."""
    import torch

    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        meta, size = header.get("__metadata__") or {}, path.stat().st_size
        if meta.get("key") != key:
            return None
        start = 8 + length
        images, labels = header["images"], header["labels"]
        (lo, hi), (llo, lhi) = images["data_offsets"], labels["data_offsets"]
        shape, n = tuple(images["shape"]), labels["shape"][0]
        if images["dtype"] != "U8" or labels["dtype"] != "I64" or start + hi > size:
            raise ValueError("not uint8 images and int64 labels, or a short file")
        if hi - lo != int(np.prod(shape)) or lhi - llo != 8 * n or shape[0] != n:
            raise ValueError("tensor sizes disagree with the header")
        ys = np.fromfile(path, dtype="<i8", count=n, offset=start + llo)
        xs = np.memmap(path, np.uint8, mode="c", offset=start + lo, shape=shape)
        classes = json.loads(meta["classes"])
        return TensorData(torch.from_numpy(xs), torch.from_numpy(ys.astype(np.int64)), classes)
    except Exception as e:  # noqa: BLE001 - any damage to the cache means: rebuild it
        log.warning("ignoring unreadable cache file %s (%s); rebuilding it", path, e)
        return None
