"""Image decoding: bytes to uint8 RGB tensors behind a decompression-bomb guard, and the
threaded decoding of a whole `FolderIndex` into one in-memory `TensorData`."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from deepres.data.dataset import TensorData
from deepres.data.index import FolderIndex
from deepres.errors import DeepresError

MAX_PIXELS = 64 * 1024 * 1024  # 64 megapixels: refuses decompression bombs before decoding
_CHUNK = 256
_MAX_LISTED = 10
T = TypeVar("T")


def read_bytes(path: str | Path) -> bytes:
    """The bytes of an image file; an unreadable file -> DeepresError naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DeepresError(f"{path}: cannot read image file ({e}); fix or remove it") from e


def _check_pixels(data: bytes, path: str | Path) -> None:
    """Read only the header and refuse images too large to decode safely."""
    limit = f"the {MAX_PIXELS // 2**20} megapixel limit"
    hint = "(a decompression bomb, or an image to downscale before use)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError as e:  # PIL's own limit, above ours
        raise DeepresError(f"{path}: over {limit}: {e} {hint}") from None
    except (OSError, ValueError, SyntaxError):
        return  # not something PIL can size: the decoders below give the error
    if width * height > MAX_PIXELS:
        raise DeepresError(f"{path}: {width}x{height} pixels is over {limit} {hint}")


def decode_rgb(data: bytes, path: str | Path) -> torch.Tensor:
    """Decode image bytes to a uint8 3 x H x W RGB tensor (grayscale/RGBA/palette converted).

    JPEGs go to torchvision's (faster) decoder first, everything else and what it cannot
    read to PIL; neither -> DeepresError. Only JPEGs: torchvision 0.29's PNG decoder crashes
    the process (SIGSEGV) on a PNG whose IDAT chunk is empty, an 80-byte upload.
    """
    if not data:
        raise DeepresError(f"{path}: empty file (0 bytes), not an image; replace or delete it")
    _check_pixels(data, path)
    if data[:2] == b"\xff\xd8":
        try:
            img = decode_jpeg(
                torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB
            )
            if img.dtype == torch.uint8 and img.shape[0] == 3:
                return img
        except (RuntimeError, ValueError):
            pass
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DeepresError(
            f"{path}: not a readable image ({type(e).__name__}: {e}); replace or delete the file"
        ) from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_file(path: str | Path) -> torch.Tensor:
    """Read and decode one image file (see `decode_rgb`)."""
    return decode_rgb(read_bytes(path), path)


def _decode_many(paths: list[str]) -> list[torch.Tensor | DeepresError]:
    """Decode a chunk of files; JPEGs in one batched call when they are all valid."""
    datas: list[bytes | DeepresError] = []
    for p in paths:
        try:
            datas.append(read_bytes(p))
        except DeepresError as e:
            datas.append(e)
    out: list[torch.Tensor | DeepresError | None] = [None] * len(paths)
    jpeg = [(i, d) for i, d in enumerate(datas) if isinstance(d, bytes) and d[:2] == b"\xff\xd8"]
    if jpeg:
        try:
            tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for _, d in jpeg]
            for (i, _), img in zip(jpeg, decode_jpeg(tensors, ImageReadMode.RGB), strict=True):
                out[i] = img
        except (RuntimeError, ValueError):
            pass  # a bad file among them: decode one by one below to name it
    for i, d in enumerate(datas):
        if out[i] is not None:
            continue
        if isinstance(d, DeepresError):
            out[i] = d
            continue
        try:
            out[i] = decode_rgb(d, paths[i])
        except DeepresError as e:
            out[i] = e
    return out  # type: ignore[return-value]


def decode_rows(index: FolderIndex, rows: range) -> list[tuple[int, torch.Tensor | str]]:
    """Decode the files `rows` of `index`: (row, image), or (row, reason) for a file that
    could not be decoded (the reason without the file name)."""
    out: list[tuple[int, torch.Tensor | str]] = []
    for i, img in zip(rows, _decode_many([index.files[i] for i in rows]), strict=True):
        out.append((i, str(img).split(": ", 1)[-1] if isinstance(img, DeepresError) else img))
    return out


def bad_files_error(root: Path, bad: list[tuple[str, str]]) -> DeepresError:
    """One error naming the (first few) files of `root` that could not be used, and why."""
    listed = "; ".join(f"{p} ({why})" for p, why in bad[:_MAX_LISTED])
    more = f"; and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    return DeepresError(
        f"{root}: {len(bad)} file(s) could not be used: {listed}{more}. Replace or delete them."
    )


def _default_threads() -> int:
    # Reads of cold files wait on I/O, so a few threads help; decode holds the GIL partly.
    return min(4, os.cpu_count() or 1)


def map_chunks(work: Callable[[range], T], n: int, num_threads: int | None = None) -> list[T]:
    """`work` over consecutive chunks of range(n) on a few threads; results in chunk order."""
    chunks = [range(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)]
    with ThreadPoolExecutor(num_threads or _default_threads()) as pool:
        return list(pool.map(work, chunks))


def decode_folder(index: FolderIndex, num_threads: int | None = None) -> TensorData:
    """Decode every file of `index` into one uint8 N x 3 x H x W tensor (all one size)."""
    n = len(index)
    first = decode_file(index.files[0])
    shape = tuple(first.shape)
    images = torch.empty((n, *shape), dtype=torch.uint8)

    def work(rows: range) -> list[tuple[str, str]]:
        problems = []
        for i, img in decode_rows(index, rows):
            if isinstance(img, str):
                problems.append((index.files[i], img))
            elif tuple(img.shape) != shape:
                problems.append(
                    (
                        index.files[i],
                        f"size {img.shape[2]}x{img.shape[1]}, but "
                        f"{os.path.basename(index.files[0])} is {shape[2]}x{shape[1]}; "
                        f"all images must share one size in the in-memory mode",
                    )
                )
            else:
                images[i] = img
        return problems

    bad = [problem for problems in map_chunks(work, n, num_threads) for problem in problems]
    if bad:
        raise bad_files_error(index.root, bad)
    return TensorData(images, torch.tensor(index.labels, dtype=torch.int64), list(index.classes))
