"""Readers for MNIST-style IDX files (Fashion-MNIST, MNIST), gzipped or plain."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch

from deepres.data.dataset import TensorData
from deepres.errors import DeepresError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_APT = "apt-get install -y dataset-fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_CLASSES = [str(d) for d in range(10)]
_PREFIX = {"train": "train", "test": "t10k"}


MAX_IDX_BYTES = 1 << 31  # 2 GiB: far above any MNIST-style file; refuses decompression bombs


def read_idx(path: str | Path) -> np.ndarray:
    """Read one unsigned-byte IDX file (gzip detected by content) into a numpy array.

    The file is streamed: the header says how many bytes follow, and no more than that (and
    never more than ``MAX_IDX_BYTES``) is decompressed, so a gzip bomb costs nothing.
    """
    path = Path(path)
    try:
        with open(path, "rb") as plain:
            gzipped = plain.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
            magic = f.read(4)
            _check_magic(path, magic)
            ndim = magic[3]
            head = f.read(4 * ndim)
            if ndim == 0 or len(head) < 4 * ndim:
                raise DeepresError(
                    f"{path}: IDX header is truncated; re-download or reinstall the file"
                )
            dims = tuple(int(d) for d in np.frombuffer(head, dtype=">u4"))
            size = math.prod(dims)
            if size > MAX_IDX_BYTES:
                raise DeepresError(
                    f"{path}: IDX header claims {dims} = {size} bytes, more than "
                    f"the {MAX_IDX_BYTES} limit; the file is corrupt"
                )
            body = f.read(size)
            extra = f.read(1)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DeepresError(
            f"{path}: cannot read IDX file ({e}); re-download or reinstall it"
        ) from e
    if len(body) != size or extra:
        raise DeepresError(
            f"{path}: IDX header {dims} needs {size} data bytes but the file has "
            f"{'more' if extra else len(body)}; the file is truncated or corrupt - re-download it"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _check_magic(path: Path, magic: bytes) -> None:
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DeepresError(
            f"{path}: bad IDX magic number {magic[:4].hex()}; expected 0000 08 0d (unsigned "
            f"bytes, d dims) - this is not an MNIST-style IDX file"
        )
    if magic[2] != 0x08:
        raise DeepresError(
            f"{path}: IDX element type 0x{magic[2]:02x} is not unsigned byte (0x08); only the "
            f"MNIST/Fashion-MNIST ubyte files are supported"
        )


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DeepresError(
        f"{folder / stem}[.gz]: IDX file not found; for Fashion-MNIST run "
        f"`{FASHION_MNIST_APT}` (files land in {FASHION_MNIST_DIR}) or point --data-root / "
        f"DEEPRES_DATA at the folder holding the IDX files"
    )


def is_idx_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return any(
        (folder / n).is_file() for n in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")
    )


def read_idx_split(folder: str | Path, split: str, classes: list[str] | None = None) -> TensorData:
    """Read `train` or `test` (`t10k`) images and labels from an IDX folder: N x 1 x H x W.

    `classes` defaults to the Fashion-MNIST names when the folder name mentions 'fashion',
    else to the digits 0..9.
    """
    folder = Path(folder)
    if split == "val":
        split = "test"
    if split not in _PREFIX:
        raise DeepresError(f"unknown split {split!r} for IDX data; use 'train' or 'test'")
    if classes is None:
        classes = FASHION_MNIST_CLASSES if "fashion" in folder.name.lower() else DIGIT_CLASSES
    img_path = _find(folder, f"{_PREFIX[split]}-images-idx3-ubyte")
    lab_path = _find(folder, f"{_PREFIX[split]}-labels-idx1-ubyte")
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3:
        raise DeepresError(
            f"{img_path}: image IDX file must have 3 dims (N, H, W), got {images.ndim}"
        )
    if labels.ndim != 1:
        raise DeepresError(f"{lab_path}: label IDX file must have 1 dim (N), got {labels.ndim}")
    if len(images) != len(labels):
        raise DeepresError(
            f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels; "
            f"the pair does not match - re-download both"
        )
    if len(labels) and int(labels.max()) >= len(classes):
        raise DeepresError(f"{lab_path}: label {int(labels.max())} >= {len(classes)} classes")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    return TensorData(x, torch.from_numpy(labels.astype(np.int64)), list(classes))
