"""Fixtures for the deepres.data tests: writers of the exact official file formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO / ".." / "shared" / "data"  # the shared data folder, relative to the repo

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache dir and no DEEPRES_DATA from the environment."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEEPRES_CACHE", str(cache))
    monkeypatch.delenv("DEEPRES_DATA", raising=False)
    return cache


def random_images(n: int, seed: int, shape: tuple[int, ...] = (3, 32, 32)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)


def random_labels(n: int, classes: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randint(0, classes, (n,), generator=g, dtype=torch.int64)


def _dump(path: Path, obj: object, protocol: int) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_cifar_python(
    root: Path, name: str, n: int = 6, protocol: int = 2
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Write official-format pickle batches (bytes keys, as Python 2 wrote them) under root.

    Returns {'train': (images, labels), 'test': (...)} with the fine labels for CIFAR-100.
    """
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        meta = {
            b"num_cases_per_batch": n,
            b"label_names": [c.encode() for c in CIFAR10_NAMES],
            b"num_vis": 3072,
        }
        _dump(folder / "batches.meta", meta, protocol)
        parts = []
        for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            x, y = random_images(n, seed=i), random_labels(n, 10, seed=i)
            batch = {
                b"batch_label": f"batch {fname}".encode(),
                b"labels": y.tolist(),
                b"data": x.reshape(n, 3072).numpy(),
                b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)],
            }
            _dump(folder / fname, batch, protocol)
            parts.append((x, y))
        out["train"] = (torch.cat([p[0] for p in parts[:5]]), torch.cat([p[1] for p in parts[:5]]))
        out["test"] = parts[5]
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        meta = {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }
        _dump(folder / "meta", meta, protocol)
        for i, split in enumerate(("train", "test")):
            x, y = random_images(n, seed=10 + i), random_labels(n, 100, seed=10 + i)
            batch = {
                b"filenames": [f"f{j}.png".encode() for j in range(n)],
                b"batch_label": split.encode(),
                b"fine_labels": y.tolist(),
                b"coarse_labels": (y // 5).tolist(),
                b"data": x.reshape(n, 3072).numpy(),
            }
            _dump(folder / split, batch, protocol)
            out[split] = (x, y)
    return out


def write_cifar_binary(
    root: Path, name: str, n: int = 6
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Write official binary batches: records of label byte(s) + 3072 pixel bytes."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if name == "cifar10":
        folder = root / "cifar-10-batches-bin"
        folder.mkdir(parents=True)
        (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
        parts = []
        files = [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]
        for i, fname in enumerate(files):
            x, y = random_images(n, seed=20 + i), random_labels(n, 10, seed=20 + i)
            rows = np.concatenate([y.numpy().astype(np.uint8)[:, None], x.reshape(n, 3072)], 1)
            (folder / fname).write_bytes(rows.tobytes())
            parts.append((x, y))
        out["train"] = (torch.cat([p[0] for p in parts[:5]]), torch.cat([p[1] for p in parts[:5]]))
        out["test"] = parts[5]
    else:
        folder = root / "cifar-100-binary"
        folder.mkdir(parents=True)
        (folder / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)))
        (folder / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)))
        for i, split in enumerate(("train", "test")):
            x, y = random_images(n, seed=30 + i), random_labels(n, 100, seed=30 + i)
            coarse = (y // 5).numpy().astype(np.uint8)
            rows = np.concatenate(
                [coarse[:, None], y.numpy().astype(np.uint8)[:, None], x.reshape(n, 3072)], 1
            )
            (folder / f"{split}.bin").write_bytes(rows.tobytes())
            out[split] = (x, y)
    return out


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 00 00 08 ndim, big-endian dims, then the data."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(
    folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Write train-/t10k- images+labels IDX files (N x 28 x 28) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, (split, prefix, n) in enumerate((("train", "train", n_train), ("test", "t10k", n_test))):
        x = random_images(n, seed=40 + i, shape=(28, 28))
        y = random_labels(n, 10, seed=40 + i)
        for kind, arr in (("images-idx3", x.numpy()), ("labels-idx1", y.numpy())):
            raw = idx_bytes(arr)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        out[split] = (x.unsqueeze(1), y)
    return out


def write_image_tree(
    root: Path,
    splits: tuple[str, ...] = ("train", "test"),
    classes: tuple[str, ...] = ("cat", "dog", "emu"),
    per_class: int = 4,
    size: tuple[int, int] = (32, 32),
    fmt: str = "PNG",
) -> dict[str, list[tuple[Path, int]]]:
    """root/<split>/<class>/<i>.<ext> with random RGB images; returns (path, label) lists."""
    files: dict[str, list[tuple[Path, int]]] = {}
    rng = np.random.default_rng(0)
    ext = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp"}[fmt]
    for split in splits:
        files[split] = []
        for label, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                p = d / f"{i:03d}{ext}"
                Image.fromarray(arr).save(p, fmt)
                files[split].append((p, label))
    return files


@pytest.fixture
def cifar_python() -> Callable[..., dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    return write_cifar_python


@pytest.fixture
def cifar_binary() -> Callable[..., dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    return write_cifar_binary


@pytest.fixture
def idx_folder() -> Callable[..., dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    return write_idx_folder


@pytest.fixture
def image_tree() -> Callable[..., dict[str, list[tuple[Path, int]]]]:
    return write_image_tree


@pytest.fixture
def make_idx() -> Callable[[np.ndarray], bytes]:
    return idx_bytes
