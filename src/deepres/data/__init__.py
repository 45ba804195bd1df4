"""Data sets for deepres: readers, in-memory batching with GPU-side augmentation (He et al.
2016, §4.2), and per-image Datasets for ImageNet-sized folders (§3.4).

    from deepres.data import load_split, dataset_stats, BatchLoader
    train = load_split("cifar10-jpeg", "train")            # uint8 TensorData, cached
    mean, std = dataset_stats("cifar10-jpeg")
    loader = BatchLoader(train, 128, mean=mean, std=std, augment=True, seed=0)

Modules: `registry` (names and paths to splits, cached statistics); readers `cifar`, `idx`,
`synthetic`; image folders: `index` (scanning), `decode` (bomb-guarded, threaded), `cache`
(on-disk files), `folder` (the in-memory and per-image modes), `resized` (large images
decoded once at a fixed size), `crops` (their random-resized crops a batch at a time),
`transforms`, `stats`;
`dataset` (TensorData, subsets, channel statistics), `augment` and `mixing` (batches).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "augment": ["BatchLoader", "derive_seed", "normalize", "random_crop_flip"],
        "cache": ["cache_dir"],
        "crops": ["BatchCrops", "center_crop", "resized_crops", "sample_boxes"],
        "cifar": [
            "RestrictedUnpickler",
            "download_cifar",
            "read_cifar",
            "read_cifar_binary",
            "read_cifar_python",
            "safe_extract",
        ],
        "dataset": ["TensorData", "channel_stats", "subset", "subset_indices"],
        "decode": ["decode_rgb"],
        "folder": ["ImageFolderDataset", "folder_cache_file", "load_folder_tensors"],
        "idx": ["FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "read_idx", "read_idx_split"],
        "index": ["IMAGE_EXTENSIONS", "scan_folder"],
        "registry": ["NAMES", "check_data", "dataset_stats", "load_split", "resolve"],
        "resized": ["cache_side", "load_resized"],
        "synthetic": ["synthetic_data"],
        "transforms": ["build_transform"],
    },
)
