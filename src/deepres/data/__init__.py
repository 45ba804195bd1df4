"""Data sets for deepres: readers, in-memory batching with GPU-side augmentation (He et al.
2016, §4.2), and per-image Datasets for ImageNet-sized folders (§3.4).

    from deepres.data import load_split, dataset_stats, BatchLoader
    train = load_split("cifar10-jpeg", "train")            # uint8 TensorData, cached
    mean, std = dataset_stats("cifar10-jpeg")
    loader = BatchLoader(train, 128, mean=mean, std=std, augment=True, seed=0)

Modules: `registry` (names and paths to splits, cached statistics); readers `cifar`, `idx`,
`synthetic`; image folders: `index` (scanning), `decode` (bomb-guarded, threaded), `cache`
(on-disk files), `folder` (the in-memory and per-image modes), `transforms`, `stats`;
`dataset` (TensorData, subsets, channel statistics), `augment` and `mixing` (batches).
"""

from deepres.data.augment import BatchLoader, derive_seed, normalize, random_crop_flip
from deepres.data.cache import cache_dir
from deepres.data.cifar import (
    RestrictedUnpickler,
    download_cifar,
    read_cifar,
    read_cifar_binary,
    read_cifar_python,
    safe_extract,
)
from deepres.data.dataset import TensorData, channel_stats, subset, subset_indices
from deepres.data.decode import decode_rgb
from deepres.data.folder import ImageFolderDataset, folder_cache_file, load_folder_tensors
from deepres.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx, read_idx_split
from deepres.data.index import IMAGE_EXTENSIONS, scan_folder
from deepres.data.registry import NAMES, check_data, dataset_stats, load_split, resolve
from deepres.data.synthetic import synthetic_data
from deepres.data.transforms import build_transform

__all__ = [
    "BatchLoader",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "NAMES",
    "RestrictedUnpickler",
    "TensorData",
    "build_transform",
    "cache_dir",
    "channel_stats",
    "check_data",
    "dataset_stats",
    "decode_rgb",
    "derive_seed",
    "download_cifar",
    "folder_cache_file",
    "load_folder_tensors",
    "load_split",
    "normalize",
    "random_crop_flip",
    "read_cifar",
    "read_cifar_binary",
    "read_cifar_python",
    "read_idx",
    "read_idx_split",
    "resolve",
    "safe_extract",
    "scan_folder",
    "subset",
    "subset_indices",
    "synthetic_data",
]
