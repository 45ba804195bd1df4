"""Resolve a data-set name or path to a split: `load_split('cifar10-jpeg', 'train')`.

Short names: cifar10, cifar100 (official files), cifar10-jpeg, imagenette-224 (image
folders), fashion-mnist (IDX files), synthetic[:CxHxW[:classes[:n]]]; anything else is a
path to an image-folder root or an official CIFAR / IDX folder (autodetected).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deepres.data.cache import cache_dir as default_cache_dir
from deepres.data.cache import file_entries, fingerprint, load_stats, save_stats
from deepres.data.cifar import FOLDERS as CIFAR_FOLDERS
from deepres.data.cifar import detect_cifar, find_cifar, read_cifar
from deepres.data.dataset import Stats, TensorData, channel_stats
from deepres.data.dataset import subset as take_subset
from deepres.data.folder import SMALL_IMAGE_MAX, ImageFolderDataset, load_folder_tensors
from deepres.data.idx import (
    FASHION_MNIST_APT,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    is_idx_folder,
    read_idx_split,
)
from deepres.data.index import FolderIndex, max_image_side, scan_folder
from deepres.data.resized import load_resized
from deepres.data.stats import folder_stats
from deepres.data.synthetic import parse_synthetic, synthetic_data
from deepres.errors import DeepresError

DATA_ENV = "DEEPRES_DATA"
SPLITS = ("train", "test", "val")
# Image-folder data sets under the data root: name -> in-memory mode?
FOLDER_SETS = {"cifar10-jpeg": True, "imagenette-224": False}
NAMES = ("cifar10", "cifar100", *FOLDER_SETS, "fashion-mnist", "synthetic")
SYNTHETIC_SIZES = {"train": 1024, "test": 256}
_FIX = f"pass --data-root DIR or set {DATA_ENV}=DIR"


@dataclass
class Source:
    """Where and how a data set is read."""

    kind: str  # 'cifar', 'idx', 'folder' or 'synthetic'
    name: str
    path: Path | None = None
    in_memory: bool = True  # folders only: TensorData (small images) or Dataset


def repo_root() -> Path:
    """The checkout holding this package (src/deepres/data/registry.py -> repo)."""
    return Path(__file__).resolve().parents[3]


def data_root_candidates(data_root: str | os.PathLike[str] | None = None) -> list[Path]:
    """`data_root`, else $DEEPRES_DATA, else ../shared/data from the cwd and from the repo."""
    if data_root is not None:
        return [Path(data_root)]
    if os.environ.get(DATA_ENV):
        return [Path(os.environ[DATA_ENV])]
    out: list[Path] = []
    for base in (Path.cwd(), repo_root()):
        p = (base / ".." / "shared" / "data").resolve()
        if p not in out:
            out.append(p)
    return out


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DeepresError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def split_dir(root: Path, split: str) -> Path:
    """`root/split`, mapping test <-> val when only the other exists."""
    _check_split(split)
    tried = [split] + {"test": ["val"], "val": ["test"]}.get(split, [])
    for name in tried:
        if (root / name).is_dir():
            return root / name
    raise DeepresError(
        f"{root}: no split folder {' or '.join(repr(t) for t in tried)}; expected "
        f"{root}/<split>/<class>/<images>"
    )


def _under_roots(name: str, sub: str, data_root: str | os.PathLike[str] | None) -> Path:
    tried = [r / sub for r in data_root_candidates(data_root)]
    for p in tried:
        if p.is_dir():
            return p
    raise DeepresError(
        f"data set {name!r} not found; tried {', '.join(str(p) for p in tried)} - {_FIX} "
        f"to the folder holding {sub}/"
    )


def resolve(name_or_path: str, data_root: str | os.PathLike[str] | None = None) -> Source:
    """Find a data set by short name or path (see module docstring)."""
    name = name_or_path
    if name == "synthetic" or name.startswith("synthetic:"):
        return Source("synthetic", name)
    if name in ("cifar10", "cifar100"):
        roots = data_root_candidates(data_root)
        for r in roots:
            found = find_cifar(r, name)
            if found is not None:
                return Source("cifar", name, found[1])
        py_dir, bin_dir = CIFAR_FOLDERS[name]
        raise DeepresError(
            f"{name} not found: no {py_dir}/ or {bin_dir}/ under "
            f"{', '.join(str(r) for r in roots)} - {_FIX} to the folder holding it, or run "
            f"deepres.data.download_cifar(DIR, {name!r})"
        )
    if name in FOLDER_SETS:
        return Source("folder", name, _under_roots(name, name, data_root), FOLDER_SETS[name])
    if name == "fashion-mnist":
        tried = [r / "fashion-mnist" for r in data_root_candidates(data_root)]
        tried.append(FASHION_MNIST_DIR)
        for p in tried:
            if is_idx_folder(p):
                return Source("idx", name, p)
        raise DeepresError(
            f"fashion-mnist not found; tried {', '.join(str(p) for p in tried)} - install it "
            f"with `{FASHION_MNIST_APT}` (lands in {FASHION_MNIST_DIR}), or {_FIX}"
        )
    path = _existing_path(name)
    cifar = detect_cifar(path)
    if cifar is not None:
        return Source("cifar", cifar[0], cifar[2])
    if is_idx_folder(path):
        return Source("idx", path.name, path)
    train = split_dir(path, "train")
    return Source("folder", path.name, path, max_image_side(scan_folder(train)) <= SMALL_IMAGE_MAX)


def _existing_path(name: str) -> Path:
    path = Path(name).expanduser()
    if not path.exists():
        raise DeepresError(
            f"{name!r} is neither a known data set ({', '.join(NAMES)}) nor an existing path; "
            f"check the spelling or the path"
        )
    return path


def check_data(
    name_or_path: str, data_root: str | os.PathLike[str] | None = None, split: str = "train"
) -> None:
    """Fail fast, before any work, on a data set that ``load_split`` would not find: a bad
    synthetic spec, a named set missing from the data roots, a path that does not exist, an
    image-folder tree without the ``split`` folder. Reads no image."""
    if name_or_path == "synthetic" or name_or_path.startswith("synthetic:"):
        parse_synthetic(name_or_path)
        return
    if name_or_path in NAMES:
        src = resolve(name_or_path, data_root)
        folder = src.path if src.kind == "folder" else None
    else:
        path = _existing_path(name_or_path)
        folder = None if detect_cifar(path) or is_idx_folder(path) else path
    if folder is not None:
        split_dir(folder, split)


def load_split(
    name_or_path: str,
    split: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    subset: int | None = None,
    subset_seed: int | None = None,
    image_size: int = 224,
    train_transform: bool | None = None,
    ten_crop: bool = False,
    stats: Stats | None = None,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_side: int | None = None,
    mmap: bool = False,
) -> TensorData | ImageFolderDataset:
    """Load one split ('train', 'test' or 'val'; test <-> val mapped for folders).

    Returns a uint8 `TensorData` (CIFAR, Fashion-MNIST, synthetic, small-image folders) or an
    `ImageFolderDataset` (large-image folders, e.g. imagenette-224). For the latter,
    `image_size`, `train_transform` (default: split == 'train'), `ten_crop` and `stats`
    (default: `dataset_stats` of the train split) configure the transforms.
    `subset` keeps the first k images of each class, or a random k with
    `subset_seed`. With `cache_side` S a large-image folder is instead a uint8 `TensorData`
    of S x S images, decoded once and cached (`deepres.data.resized`; `mmap`: memory-mapped
    from the cache file).
    """
    _check_split(split)
    src = resolve(name_or_path, data_root)
    if src.kind == "folder" and not src.in_memory and cache_side is not None:
        assert src.path is not None
        return load_resized(
            split_dir(src.path, split),
            cache_side,
            mmap=mmap,
            subset=subset,
            subset_seed=subset_seed,
            use_cache=use_cache,
            cache_dir=cache_dir,
        )
    if src.kind == "folder" and not src.in_memory:
        assert src.path is not None
        index = scan_folder(split_dir(src.path, split))
        if subset is not None:
            index = index.subset(subset, subset_seed)
        mean, std = stats or dataset_stats(name_or_path, data_root, cache_dir=cache_dir)
        train = split == "train" if train_transform is None else train_transform
        return ImageFolderDataset(
            index.root,
            train=train,
            mean=mean,
            std=std,
            size=image_size,
            ten_crop=ten_crop,
            index=index,
        )
    if src.kind == "folder":
        assert src.path is not None
        return load_folder_tensors(
            split_dir(src.path, split),
            subset=subset,
            subset_seed=subset_seed,
            use_cache=use_cache,
            cache_dir=cache_dir,
        )
    data = _read_tensor_source(src, split)
    if subset is not None:
        data = take_subset(data, subset, subset_seed)
    return data


def _read_tensor_source(src: Source, split: str) -> TensorData:
    assert src.kind in ("cifar", "idx", "synthetic")
    if src.kind == "synthetic":
        (c, h, w), num_classes, n = parse_synthetic(src.name)
        key = "train" if split == "train" else "test"
        return synthetic_data(n or SYNTHETIC_SIZES[key], c, h, w, num_classes, SPLITS.index(key))
    assert src.path is not None
    if src.kind == "cifar":
        return read_cifar(src.path, src.name, split)
    classes = FASHION_MNIST_CLASSES if src.name == "fashion-mnist" else None
    return read_idx_split(src.path, split, classes)


def dataset_stats(
    name_or_path: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Stats:
    """Default normalisation: per-channel (mean, std) of the train split, in 0..1 scale.

    Computed with `channel_stats` (or streamed over a large-image folder) and cached as
    `<cache>/stats-<key>.json`, the key a fingerprint of the train files.
    """
    src = resolve(name_or_path, data_root)
    if src.kind == "synthetic":
        return channel_stats(_read_tensor_source(src, "train").images)
    assert src.path is not None
    index: FolderIndex | None = None
    if src.kind == "folder":
        index = scan_folder(split_dir(src.path, "train"))
        key = fingerprint(index.entries, tag="stats-folder")
    else:
        files = sorted(p for p in src.path.iterdir() if p.is_file())
        key = fingerprint(file_entries(src.path, files), tag=f"stats-{src.kind}-{src.name}")
    cache = default_cache_dir(cache_dir)
    found = load_stats(key, cache)
    if found is not None:
        return found
    if index is not None and not src.in_memory:
        result = folder_stats(index)
    elif index is not None:
        data = load_folder_tensors(index.root, index=index, cache_dir=cache_dir)
        result = channel_stats(data.images)
    else:
        result = channel_stats(_read_tensor_source(src, "train").images)
    save_stats(key, result, cache, source=str(src.path))
    return result
