"""Readers for the official CIFAR-10 / CIFAR-100 files (python pickle and binary versions).

The ResNet paper's CIFAR experiments (§4.2) train on the 50k training images and test on
the 10k test images. The pickle batches are read with a restricted unpickler that can only
rebuild numpy arrays and builtin containers, so a tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from deepres.data.dataset import TensorData
from deepres.errors import DeepresError

PIXELS = 3 * 32 * 32

# name -> (python folder, binary folder)
FOLDERS = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-batches-bin"),
    "cifar100": ("cifar-100-python", "cifar-100-binary"),
}
ARCHIVES = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}
# A file whose presence marks a folder as holding this name/format.
_MARKERS = {
    ("cifar10", "python"): "data_batch_1",
    ("cifar10", "binary"): "data_batch_1.bin",
    ("cifar100", "python"): "meta",
    ("cifar100", "binary"): "train.bin",
}
_REDOWNLOAD = (
    "re-download it with deepres.data.download_cifar "
    "or from https://www.cs.toronto.edu/~kriz/cifar.html"
)


def _check_name(name: str) -> None:
    if name not in FOLDERS:
        raise DeepresError(f"unknown CIFAR data set {name!r}; use 'cifar10' or 'cifar100'")


def _check_split(split: str) -> str:
    if split in ("test", "val"):
        return "test"
    if split != "train":
        raise DeepresError(f"unknown split {split!r} for CIFAR; use 'train' or 'test'")
    return split


# --------------------------------------------------------------------------- pickle version


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, 'latin1') in pickle protocols 0-2.
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer  # type: ignore[attr-defined]
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode}
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{mod}.numeric", "_frombuffer")] = _frombuffer  # protocol-5 arrays
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only builtins and numpy arrays (what CIFAR batches hold)."""

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed.get((module, name))
        if obj is None:
            raise DeepresError(
                f"{self.source}: refused to unpickle global '{module}.{name}'; an official "
                f"CIFAR batch only holds numpy arrays, lists and strings, so this file is not "
                f"one (possibly malicious) - delete it and {_REDOWNLOAD}"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise DeepresError(
            f"{self.source}: refused a persistent id in a CIFAR batch; {_REDOWNLOAD}"
        )


def load_pickle_dict(path: Path) -> dict[str, Any]:
    """Load an official CIFAR pickle file safely; keys are returned as str."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, path).load()  # type: ignore[arg-type]
    except DeepresError:
        raise
    except FileNotFoundError as e:
        raise DeepresError(f"{path}: CIFAR batch file not found; {_REDOWNLOAD}") from e
    except Exception as e:  # truncated or garbage pickles raise many types
        raise DeepresError(f"{path}: not a readable CIFAR python batch ({e}); {_REDOWNLOAD}") from e
    if not isinstance(obj, dict):
        raise DeepresError(f"{path}: expected a dict in a CIFAR batch, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(path: Path, d: dict[str, Any], key: str) -> list[str]:
    names = d.get(key)
    if not isinstance(names, list) or not names:
        raise DeepresError(f"{path}: missing the class-name list {key!r}; {_REDOWNLOAD}")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _python_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = load_pickle_dict(path)
    data, labels = d.get("data"), d.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DeepresError(
            f"{path}: 'data' must be a uint8 N x {PIXELS} numpy array, got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}; "
            f"{_REDOWNLOAD}"
        )
    if data.shape[1] != PIXELS:
        raise DeepresError(f"{path}: rows hold {data.shape[1]} bytes, not {PIXELS}; {_REDOWNLOAD}")
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        raise DeepresError(
            f"{path}: {label_key!r} must list one label per image ({len(data)}); {_REDOWNLOAD}"
        )
    lab = np.asarray(labels, dtype=np.int64)
    if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
        raise DeepresError(f"{path}: labels outside 0..{num_classes - 1}; {_REDOWNLOAD}")
    return data, lab


def read_cifar_python(
    folder: str | Path, name: str, split: str, coarse: bool = False
) -> TensorData:
    """Read `cifar-10-batches-py` or `cifar-100-python` (the official pickle batches).

    CIFAR-100 uses the fine labels unless `coarse`.
    """
    folder, split = Path(folder), _check_split(split)
    _check_name(name)
    if name == "cifar10":
        classes = _names(
            folder / "batches.meta", load_pickle_dict(folder / "batches.meta"), "label_names"
        )
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = "labels"
    else:
        meta = load_pickle_dict(folder / "meta")
        kind = "coarse" if coarse else "fine"
        classes = _names(folder / "meta", meta, f"{kind}_label_names")
        files, label_key = [split], f"{kind}_labels"
    parts = [_python_batch(folder / f, label_key, len(classes)) for f in files]
    return _to_tensor_data(parts, classes)


# --------------------------------------------------------------------------- binary version


def _text_names(path: Path) -> list[str]:
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise DeepresError(f"{path}: cannot read the class-name file ({e}); {_REDOWNLOAD}") from e
    if not names:
        raise DeepresError(f"{path}: class-name file is empty; {_REDOWNLOAD}")
    return names


def _binary_batch(
    path: Path, label_bytes: int, label_index: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    record = label_bytes + PIXELS
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DeepresError(f"{path}: cannot read CIFAR binary batch ({e}); {_REDOWNLOAD}") from e
    if raw.size == 0 or raw.size % record:
        raise DeepresError(
            f"{path}: {raw.size} bytes is not a whole number of {record}-byte records "
            f"({label_bytes} label byte(s) + {PIXELS} pixel bytes); the file is truncated or "
            f"not this CIFAR binary format - {_REDOWNLOAD}"
        )
    rows = raw.reshape(-1, record)
    labels = rows[:, label_index].astype(np.int64)
    if labels.max() >= num_classes:
        raise DeepresError(
            f"{path}: label {int(labels.max())} >= {num_classes} classes; the file is not "
            f"this CIFAR binary format - {_REDOWNLOAD}"
        )
    return rows[:, label_bytes:], labels


def read_cifar_binary(
    folder: str | Path, name: str, split: str, coarse: bool = False
) -> TensorData:
    """Read `cifar-10-batches-bin` or `cifar-100-binary` (records of label byte(s) + pixels).

    CIFAR-100 records carry a coarse then a fine label byte; fine is used unless `coarse`.
    """
    folder, split = Path(folder), _check_split(split)
    _check_name(name)
    if name == "cifar10":
        classes = _text_names(folder / "batches.meta.txt")
        files = (
            [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        )
        label_bytes, label_index = 1, 0
    else:
        kind = "coarse" if coarse else "fine"
        classes = _text_names(folder / f"{kind}_label_names.txt")
        files, label_bytes, label_index = [f"{split}.bin"], 2, 0 if coarse else 1
    for f in files:
        if not (folder / f).is_file():
            raise DeepresError(f"{folder / f}: CIFAR binary batch not found; {_REDOWNLOAD}")
    parts = [_binary_batch(folder / f, label_bytes, label_index, len(classes)) for f in files]
    return _to_tensor_data(parts, classes)


def _to_tensor_data(parts: list[tuple[np.ndarray, np.ndarray]], classes: list[str]) -> TensorData:
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])
    return TensorData(torch.from_numpy(data.copy()), torch.from_numpy(labels), classes)


# --------------------------------------------------------------------------- finding / reading


def detect_cifar(path: str | Path) -> tuple[str, str, Path] | None:
    """(name, format, folder) if `path` is or directly holds an official CIFAR folder."""
    path = Path(path)
    for name, (py_dir, bin_dir) in FOLDERS.items():
        for fmt, sub in (("python", py_dir), ("binary", bin_dir)):
            for folder in (path / sub, path):
                if (folder / _MARKERS[(name, fmt)]).is_file():
                    return name, fmt, folder
    return None


def find_cifar(root: str | Path, name: str) -> tuple[str, Path] | None:
    """(format, folder) of CIFAR `name` under `root` (python preferred), or None."""
    _check_name(name)
    root = Path(root)
    for fmt, sub in zip(("python", "binary"), FOLDERS[name], strict=True):
        for folder in (root / sub, root):
            if (folder / _MARKERS[(name, fmt)]).is_file():
                return fmt, folder
    return None


def read_cifar(root: str | Path, name: str, split: str, coarse: bool = False) -> TensorData:
    """Read CIFAR `name` ('cifar10' / 'cifar100') from `root`, in whichever official format
    (`cifar-10-batches-py`, `cifar-10-batches-bin`, ...) is there."""
    found = find_cifar(root, name)
    if found is None:
        py_dir, bin_dir = FOLDERS[name]
        raise DeepresError(
            f"{root}: no {py_dir}/ or {bin_dir}/ folder found; point --data-root / "
            f"DEEPRES_DATA at the folder holding it, or download it with "
            f"deepres.data.download_cifar({str(root)!r}, {name!r})"
        )
    fmt, folder = found
    reader = read_cifar_python if fmt == "python" else read_cifar_binary
    return reader(folder, name, split, coarse)


# --------------------------------------------------------------------------- download


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_extract(archive: str | Path, dest: str | Path) -> None:
    """Extract a .tar.gz, refusing absolute paths, '..' components, links and devices."""
    archive, dest = Path(archive), Path(dest)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            p = PurePosixPath(m.name)
            if (
                p.is_absolute()
                or ".." in p.parts
                or m.name.startswith(("\\", "/"))
                or (len(m.name) > 1 and m.name[1] == ":")
            ):
                raise DeepresError(
                    f"{archive}: member {m.name!r} would be written outside {dest}; refusing "
                    f"to extract - delete the archive and download it again"
                )
            if not (m.isfile() or m.isdir()):
                raise DeepresError(
                    f"{archive}: member {m.name!r} is a link or special file; refusing to "
                    f"extract - delete the archive and download it again"
                )
        dest.mkdir(parents=True, exist_ok=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4; members were checked above
            tar.extractall(dest, members=members)


def download_cifar(root: str | Path, name: str = "cifar10", timeout: float = 60.0) -> Path:
    """Download the official python-version archive of `name` into `root`, check its md5 and
    extract it safely. Returns the extracted folder (e.g. root/cifar-10-batches-py)."""
    _check_name(name)
    root = Path(root)
    url, md5 = ARCHIVES[name]
    folder = root / FOLDERS[name][0]
    if (folder / _MARKERS[(name, "python")]).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    archive = root / url.rsplit("/", 1)[1]
    if not archive.is_file() or file_md5(archive) != md5:
        part = archive.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
                for block in iter(lambda: r.read(1 << 20), b""):
                    f.write(block)
        except OSError as e:
            raise DeepresError(
                f"downloading {url} to {part} failed ({e}); check the network, or fetch it by "
                f"hand and place it at {archive}"
            ) from e
        part.replace(archive)
    got = file_md5(archive)
    if got != md5:
        archive.unlink()
        raise DeepresError(
            f"{archive}: md5 {got} does not match the official {md5}; the file was deleted - "
            f"download it again"
        )
    safe_extract(archive, root)
    return folder
