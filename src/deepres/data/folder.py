"""Image-folder trees `root/<split>/<class>/*.jpg` (class order = sorted folder names), read
in one of two modes:

* small images (CIFAR-sized): `load_folder_tensors` decodes every file once into an in-memory
  uint8 `TensorData` and caches it as a safetensors file, keyed by the file list, sizes and
  mtimes; augmentation then runs on whole batches (`deepres.data.augment`, paper §4.2).
* large images (ImageNet-sized): `ImageFolderDataset`, a torch Dataset that decodes and
  transforms one image per item (paper §3.4 scale augmentation, 10-crop testing), or
  `deepres.data.resized.load_resized`: decoded once at a fixed S x S into the same kind of
  cache file, cropped a batch at a time (`deepres.data.crops`).

The parts live in `index` (scanning), `decode`, `cache`, `transforms` and `stats`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from deepres.data.cache import cache_dir as default_cache_dir
from deepres.data.cache import load_tensors, save_tensors, tensor_cache_file
from deepres.data.dataset import TensorData
from deepres.data.decode import decode_file, decode_folder
from deepres.data.index import FolderIndex, scan_folder
from deepres.data.transforms import build_transform
from deepres.errors import DeepresError

log = logging.getLogger("deepres.data")

SMALL_IMAGE_MAX = 64  # images up to this many pixels per side go to the in-memory mode


def load_folder_tensors(
    split_dir: str | Path,
    *,
    subset: int | None = None,
    subset_seed: int | None = None,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = None,
    index: FolderIndex | None = None,
) -> TensorData:
    """Decode a folder of small images once into a uint8 `TensorData`, cached on disk.

    The cache file (`<cache_dir>/folder-<key>.safetensors`, cache dir from $DEEPRES_CACHE or
    ~/.cache/deepres) is keyed by the sorted relative file list with sizes and mtimes, so any
    change to the files rebuilds it. `subset` = k files per class (decoded, not cached).
    """
    index = index or scan_folder(split_dir)
    if subset is not None:
        return decode_folder(index.subset(subset, subset_seed), num_threads)
    key = index.key()
    path = tensor_cache_file(key, default_cache_dir(cache_dir))
    if use_cache and path.is_file():
        data = load_tensors(path, key)
        if data is not None:
            log.info("loaded %s from cache %s", index.root, path)
            return data
    data = decode_folder(index, num_threads)
    if use_cache:
        save_tensors(path, key, data, index.root)
        log.info("decoded %s (%d images) and cached it at %s", index.root, len(data), path)
    return data


def folder_cache_file(
    split_dir: str | Path, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where `load_folder_tensors` caches `split_dir` (whether or not it exists yet)."""
    return tensor_cache_file(scan_folder(split_dir).key(), default_cache_dir(cache_dir))


class ImageFolderDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Per-image Dataset over `split_dir/<class>/*`: returns (transformed tensor, label).

    Decoding errors raise DeepresError naming the file.
    """

    def __init__(
        self,
        split_dir: str | Path,
        *,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        size: int = 224,
        ten_crop: bool = False,
        train_crop: str = "random-resized",
        index: FolderIndex | None = None,
        policy: str | None = None,
        random_erasing: float = 0.0,
    ) -> None:
        self.index = index or scan_folder(split_dir)
        self.root = self.index.root
        self.classes = list(self.index.classes)
        self.targets = list(self.index.labels)
        self.train, self.size, self.ten_crop = train, size, ten_crop
        self.mean, self.std = tuple(mean), tuple(std)
        self.train_crop = train_crop
        self.transform = build_transform(train, size, mean, std, ten_crop, train_crop)
        if policy is not None or random_erasing > 0:
            self.set_augmentation(policy, random_erasing)

    def set_augmentation(self, policy: str | None = None, random_erasing: float = 0.0) -> None:
        """Training images: add the `policy` ('randaugment' / 'trivial') after the crop and
        flip, and RandomErasing(p=random_erasing) after the normalisation."""
        if not self.train:
            raise DeepresError(
                f"{self.root}: augmentation policies and random erasing are for training "
                "images only; this data set makes test images"
            )
        if not 0 <= random_erasing <= 1:
            raise DeepresError(f"random_erasing is a probability in [0, 1], got {random_erasing}")
        self.transform = build_transform(
            True,
            self.size,
            self.mean,
            self.std,
            train_crop=self.train_crop,
            policy=policy,
            random_erasing=random_erasing,
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def samples(self) -> list[tuple[str, int]]:
        return list(zip(self.index.files, self.index.labels, strict=True))

    def load(self, i: int) -> torch.Tensor:
        """The decoded, untransformed uint8 image i."""
        return decode_file(self.index.files[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(i)), self.index.labels[i]
