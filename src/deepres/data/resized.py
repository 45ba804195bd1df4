"""Large-image folders decoded once at a fixed size: every image resized so that its short
side is S and centre-cropped to S x S, all of them kept as one uint8 N x 3 x S x S tensor.

S defaults to ceil(image_size / 0.8) (160 px for 128-px crops: Imagenette's 9,469 training
images take 0.73 GB). Training crops are then cut a batch at a time from that tensor
(`deepres.data.crops`), and test images are its centre image_size x image_size crops (the
Imagenette leaderboard's resize-to-S-then-centre-crop).

The tensor is cached as the safetensors file that small-image folders use
(`<cache>/folder-<key>.safetensors`, the key a fingerprint of the files and of S), written
whole or not at all, and read into memory or memory-mapped from disk for data sets larger
than memory (`mmap=True`). Decoding runs on a few threads, as `decode.decode_folder` does.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from deepres.data.cache import (
    CACHE_VERSION,
    fingerprint,
    load_tensors,
    map_tensors,
    tensor_cache_file,
    write_tensors_streamed,
)
from deepres.data.cache import cache_dir as default_cache_dir
from deepres.data.dataset import TensorData
from deepres.data.decode import bad_files_error, decode_rows, map_chunks
from deepres.data.index import FolderIndex, scan_folder
from deepres.errors import DeepresError

log = logging.getLogger("deepres.data")

CROP_SHARE = 0.8  # image_size / S: the share of the cached side that a test crop keeps


def cache_side(image_size: int) -> int:
    """The default cached side S for crops of `image_size`: ceil(image_size / 0.8)."""
    return -(-image_size * 5 // 4)


def square(image: torch.Tensor, side: int) -> torch.Tensor:
    """A uint8 3 x H x W image resized (bilinear, antialiased) so that its short side is
    `side`, then centre-cropped to `side` x `side`."""
    if min(image.shape[-2:]) != side:
        image = TF.resize(image, side, antialias=True)
    return TF.center_crop(image, [side, side])


def resized_key(index: FolderIndex, side: int) -> str:
    """The cache key of `index` decoded at side `side`."""
    return fingerprint(index.entries, tag=f"resized-v{CACHE_VERSION}-{side}")


def fill_resized(
    index: FolderIndex, side: int, out: torch.Tensor | np.ndarray, num_threads: int | None = None
) -> None:
    """Decode every file of `index` into `out[i]` (N x 3 x side x side uint8, in memory or
    a memory map) as `square(image, side)`; files that cannot be used -> one DeepresError
    naming them."""
    target = torch.from_numpy(out) if isinstance(out, np.ndarray) else out

    def work(rows: range) -> list[tuple[str, str]]:
        problems = []
        for i, img in decode_rows(index, rows):
            if isinstance(img, str):
                problems.append((index.files[i], img))
            else:
                target[i] = square(img, side)
        return problems

    bad = [p for problems in map_chunks(work, len(index), num_threads) for p in problems]
    if bad:
        raise bad_files_error(index.root, bad)


class _Undecodable(Exception):
    """Carries a bad-files DeepresError out of a cache write (so that it is not taken for
    a failure to write the cache)."""

    def __init__(self, error: DeepresError) -> None:
        super().__init__(str(error))
        self.error = error


def _write_cache(path: Path, key: str, index: FolderIndex, side: int, threads: int | None) -> bool:
    """Decode `index` straight into the cache file at `path`; False when it cannot be written
    (a warning says why), DeepresError for files that cannot be decoded."""
    meta = {
        "key": key,
        "classes": json.dumps(index.classes),
        "source": str(index.root),
        "version": CACHE_VERSION,
        "side": str(side),
    }

    def fill(images: np.ndarray) -> None:
        try:
            fill_resized(index, side, images, threads)
        except DeepresError as e:
            raise _Undecodable(e) from None

    try:
        remove_dead_temporaries(path.parent)
        write_tensors_streamed(path, meta, index.labels, (3, side, side), fill)
    except _Undecodable as e:
        raise e.error from None
    except (OSError, DeepresError) as e:
        log.warning("could not write cache file %s (%s); decoding into memory", path, e)
        return False
    log.info("decoded %s (%d images at %d px) into %s", index.root, len(index), side, path)
    return True


def _read_cache(path: Path, key: str, side: int, mmap: bool) -> TensorData | None:
    """The cached images at `path` (memory-mapped, or copied into memory), or None."""
    if not path.is_file():
        return None
    data = map_tensors(path, key) if mmap else load_tensors(path, key)
    if data is None or data.images.shape[1:] != (3, side, side):
        return None
    return data if mmap else in_memory(data)


def in_memory(data: TensorData) -> TensorData:
    """`data` with its images copied into this process's memory (safetensors maps the file:
    its pages could otherwise be dropped and read again from disk)."""
    return TensorData(data.images.clone(), data.labels.clone(), list(data.classes))


def remove_dead_temporaries(cache: Path) -> None:
    """Delete the half-written cache files that killed processes left in `cache`
    (`.folder-*.safetensors.tmp-PID` of a PID that no longer runs); they are never read."""
    for tmp in cache.glob(".folder-*.safetensors.tmp-*"):
        found = re.fullmatch(r".*\.tmp-(\d+)", tmp.name)
        if found is None or int(found[1]) == os.getpid():
            continue
        try:
            os.kill(int(found[1]), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # someone else's live process


def load_resized(
    split_dir: str | Path,
    side: int,
    *,
    mmap: bool = False,
    subset: int | None = None,
    subset_seed: int | None = None,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = None,
    index: FolderIndex | None = None,
) -> TensorData:
    """The images of `split_dir/<class>/*` as a uint8 N x 3 x `side` x `side` `TensorData`
    (see the module docstring), from the cache file when it is there; decoded once and
    cached otherwise. `mmap`: the images are the cache file, memory-mapped. `subset` = k
    files per class (decoded into memory, not cached)."""
    if side < 1:
        raise DeepresError(f"the cached side must be a positive number of pixels, got {side}")
    index = index or scan_folder(split_dir)
    if subset is not None:
        index, use_cache = index.subset(subset, subset_seed), False
    key = resized_key(index, side)
    path = tensor_cache_file(key, default_cache_dir(cache_dir))
    if use_cache:
        data = _read_cache(path, key, side, mmap)
        if data is None and _write_cache(path, key, index, side, num_threads):
            data = _read_cache(path, key, side, mmap)
        if data is not None:
            log.info("loaded %s at %d px from cache %s", index.root, side, path)
            return data
    images = torch.empty((len(index), 3, side, side), dtype=torch.uint8)
    fill_resized(index, side, images, num_threads)
    return TensorData(images, torch.tensor(index.labels, dtype=torch.int64), list(index.classes))
