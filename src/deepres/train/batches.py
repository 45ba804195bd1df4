"""What the training loop iterates: batches of an epoch, resumable at any batch.

In-memory data (CIFAR, Fashion-MNIST, small-image folders) goes through ``BatchLoader``:
augmentation a batch at a time on tensors, no worker processes. So do folders of large
images: decoded once into S x S tensors (``deepres.data.resized``) and cropped a batch at a
time (``deepres.data.crops``); with ``--folder-mode per-image`` they go through a DataLoader
with workers and torchvision transforms instead (paper §3.4).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Subset

from deepres.data import (
    BatchLoader,
    ImageFolderDataset,
    TensorData,
    dataset_stats,
    load_split,
    resolve,
)
from deepres.data.augment import MIXING_STREAM, POLICIES, derive_seed
from deepres.data.crops import BatchCrops, center_crop
from deepres.data.mixing import BatchMixer, batch_mixer
from deepres.data.resized import cache_side
from deepres.errors import DeepresError
from deepres.train.config import TrainConfig
from deepres.train.distributed import RankBatches, global_batch_shard

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class FolderBatches:
    """Batches of an ``ImageFolderDataset``, in the same resumable shape as ``BatchLoader``."""

    def __init__(
        self,
        dataset: ImageFolderDataset,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        rank: int,
        world_size: int,
        workers: int,
        accum: int = 1,
        mix: BatchMixer | None = None,
    ) -> None:
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.drop_last, self.seed, self.workers = drop_last, seed, workers
        self.rank, self.world_size, self.accum = rank, world_size, accum
        self.mix = mix  # mixes each rank's local batch, seeded by (seed, epoch, batch, rank)

    def _indices(self, epoch: int) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(
                n, generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            )
        else:
            order = torch.arange(n)
        if self.drop_last:  # training: global-batch-major shards (see train/distributed.py)
            return global_batch_shard(order, self.rank, self.world_size, self.batch_size, len(self))
        return order[self.rank :: self.world_size]  # testing: every image once, no padding

    def __len__(self) -> int:
        if self.drop_last:  # whole SGD steps of accum micro-batches only
            steps = len(self.dataset) // (self.batch_size * self.world_size * self.accum)
            return steps * self.accum
        n = len(range(self.rank, len(self.dataset), self.world_size))
        return math.ceil(n / self.batch_size)

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Batches:
        indices = self._indices(epoch)[start_batch * self.batch_size :].tolist()
        loader = DataLoader(
            Subset(self.dataset, indices),
            batch_size=self.batch_size,
            shuffle=False,
            drop_last=self.drop_last,
            num_workers=self.workers,
            generator=torch.Generator().manual_seed(
                derive_seed(self.seed, epoch, start_batch, self.rank)
            ),
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )
        if self.mix is None:
            yield from loader
            return
        for index, (images, labels) in enumerate(loader, start=start_batch):
            seed = derive_seed(self.seed, epoch, index, self.rank, MIXING_STREAM)
            yield self.mix(images, labels, seed)


@dataclass
class TrainData:
    train: RankBatches | FolderBatches
    test: BatchLoader | FolderBatches
    classes: list[str]
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    # ``test``'s images are this many held out of the training split (--val-split); 0: they
    # are the test split, which then chooses nothing (no best checkpoint)
    held_out: int = 0


def default_workers(world_size: int) -> int:
    return max(1, min(8, (os.cpu_count() or 2) // world_size - 1))


def build_data(
    cfg: TrainConfig, rank: int = 0, world_size: int = 1, device: str = "cpu"
) -> TrainData:
    """Load the configured data set and wrap its splits for training and testing.

    ``cfg.batch_size`` is the global batch: each of ``world_size`` processes takes its share
    of every global micro-batch (global-batch-major sharding, see ``train/distributed.py``).
    The test set is split into disjoint shards so that every image is evaluated exactly once.
    """
    local_batch = micro_batch_size(cfg, world_size)
    train, test = load_splits(cfg)
    if isinstance(train, TensorData):
        assert isinstance(test, TensorData)
        data = tensor_batches(cfg, train, test, local_batch, rank, world_size, device)
    else:
        data = folder_batches(cfg, train, test, local_batch, rank, world_size)
    if len(data.train) == 0:
        raise DeepresError(
            f"the training split of {cfg.data} has fewer images than one global batch "
            f"({cfg.batch_size}); lower --batch-size"
        )
    return data


def micro_batch_size(cfg: TrainConfig, world_size: int) -> int:
    """Each process's share of a global micro-batch (the global batch split over processes
    and ``--grad-accum-steps``)."""
    local_batch = cfg.batch_size // world_size // cfg.grad_accum_steps
    if local_batch < 1 or cfg.batch_size % (world_size * cfg.grad_accum_steps):
        raise DeepresError(
            f"--batch-size {cfg.batch_size} (the global batch) must be a multiple of "
            f"processes x --grad-accum-steps = {world_size * cfg.grad_accum_steps}"
        )
    return local_batch


Split = TensorData | ImageFolderDataset


def load_splits(cfg: TrainConfig) -> tuple[Split, Split]:
    """The training and test splits; with ``--val-split`` the test split is held out of the
    training split (§4.2's 45k/5k split)."""
    image_size = cfg.image_size or 224
    cached = dict(cache_side=folder_cache_side(cfg), mmap=cfg.folder_mode == "mmap")
    train = load_split(
        cfg.data, "train", cfg.data_root, subset=cfg.train_subset, image_size=image_size, **cached
    )
    if not cfg.val_split:
        test = load_split(
            cfg.data, "test", cfg.data_root, subset=cfg.test_subset, image_size=image_size, **cached
        )
        return train, test
    if not isinstance(train, TensorData):
        raise DeepresError("--val-split works with in-memory data sets only")
    return hold_out(train, cfg.val_split, cfg.seed)


def tensor_batches(
    cfg: TrainConfig,
    train: TensorData,
    test: TensorData,
    local_batch: int,
    rank: int,
    world_size: int,
    device: str,
) -> TrainData:
    """In-memory data: augmented on tensors a batch at a time, on ``device`` (§4.2: 4
    pixels of padding, a random crop and a horizontal flip; then the options' policy, random
    erasing and mixing of each global micro-batch, the same on every rank)."""
    mean, std = dataset_stats(cfg.data, cfg.data_root)
    augment = data_augment(cfg)
    train, test, crop = batch_crops(cfg, augment, train, test)
    common = dict(
        mean=mean,
        std=std,
        device=device,
        channels_last=cfg.channels_last,
        dtype=torch.get_default_dtype(),  # the model's dtype (float32 unless changed)
    )
    global_micro = BatchLoader(
        train,
        local_batch * world_size,
        shuffle=True,
        drop_last=True,
        augment=augment != "none",
        padding=cfg.crop_padding if augment in ("crop-flip", *POLICIES) else 0,
        policy=augment if augment in POLICIES else None,
        random_erasing=cfg.random_erasing,
        mix=train_mixer(cfg, train.classes),
        crop=crop,
        seed=cfg.seed,
        **common,
    )  # every rank builds the global micro-batch and keeps its part
    train_batches = RankBatches(global_micro, rank, world_size, cfg.grad_accum_steps)
    shard = test_shard(cfg, test, rank, world_size)
    return TrainData(
        train_batches,
        BatchLoader(shard, 500, shuffle=False, augment=False, **common),
        list(train.classes),
        train.images.shape[1],
        tuple(mean),
        tuple(std),
        test.images.shape[-1],
        held_out=cfg.val_split,
    )


def folder_cache_side(cfg: TrainConfig) -> int | None:
    """The side S of the cached images when ``cfg.data`` is a folder of large images read
    through the decoded-once cache (``--folder-mode cached`` or ``mmap``), else None:
    ``--decode-size``, by default ceil(image size / 0.8) (160 for 128-px crops)."""
    if cfg.folder_mode == "per-image":
        return None
    src = resolve(cfg.data, cfg.data_root)
    if src.kind != "folder" or src.in_memory:
        return None
    size = cfg.image_size or 224
    side = cfg.decode_size or cache_side(size)
    if side < size:
        raise DeepresError(f"--decode-size {side} is smaller than --image-size {size}")
    return side


def batch_crops(
    cfg: TrainConfig, augment: str, train: TensorData, test: TensorData
) -> tuple[TensorData, TensorData, BatchCrops | None]:
    """Cached large images (S x S, see ``folder_cache_side``) at the image size: training
    images cut a batch at a time (random-resized crops with area share in [--crop-scale, 1]
    and flips; centre crops and flips for --augment flip, centre crops for none), test
    images their centre crops (the Imagenette scripts' resize-to-S, centre-crop). Other data:
    unchanged, and no crops (BatchLoader's padded crops and flips)."""
    if folder_cache_side(cfg) is None:
        return train, test, None
    size = cfg.image_size or 224
    test = center_crop(test, size)
    if augment == "none":
        return center_crop(train, size), test, None
    return train, test, BatchCrops(size, (cfg.crop_scale, 1.0), random_crop=augment != "flip")


def data_augment(cfg: TrainConfig) -> str:
    """``cfg.augment``, with ``auto`` made the data set's own: flips only for IDX sets such as
    Fashion-MNIST, whose images are centred and size-normalised by construction (shifted
    crops would teach an invariance their test images never need), padded random crops and
    flips (§4.2) for other small images."""
    if cfg.augment != "auto":
        return cfg.augment
    return "flip" if resolve(cfg.data, cfg.data_root).kind == "idx" else "crop-flip"


def test_shard(cfg: TrainConfig, test: TensorData, rank: int, world_size: int) -> TensorData:
    """This rank's test images: every ``world_size``-th one, so that each is tested once."""
    if len(test) < world_size:
        raise DeepresError(
            f"the test split of {cfg.data} has {len(test)} images, fewer than the "
            f"{world_size} processes; use fewer processes or more test images"
        )
    return test.select(torch.arange(rank, len(test), world_size))


def folder_batches(
    cfg: TrainConfig,
    train: ImageFolderDataset,
    test: ImageFolderDataset,
    local_batch: int,
    rank: int,
    world_size: int,
) -> TrainData:
    """Folders of large images: decoded and augmented by DataLoader workers (§3.4); each rank
    mixes its own local batches."""
    workers = cfg.workers if cfg.workers is not None else default_workers(world_size)
    common = dict(seed=cfg.seed, rank=rank, world_size=world_size, workers=workers)
    if cfg.augment in POLICIES or cfg.random_erasing > 0:
        policy = cfg.augment if cfg.augment in POLICIES else None
        train.set_augmentation(policy, cfg.random_erasing)
    return TrainData(
        FolderBatches(
            train,
            local_batch,
            shuffle=True,
            drop_last=True,
            accum=cfg.grad_accum_steps,
            mix=train_mixer(cfg, train.classes),
            **common,
        ),
        FolderBatches(test, 100, shuffle=False, drop_last=False, **common),
        list(train.classes),
        3,
        tuple(train.mean),
        tuple(train.std),
        cfg.image_size or 224,
    )


def train_mixer(cfg: TrainConfig, classes: list[str]) -> BatchMixer | None:
    """mixup / cutmix of training batches as ``cfg`` asks (None when off); the soft targets
    have as many classes as the model's output."""
    return batch_mixer(cfg.num_classes or len(classes), cfg.mixup, cfg.cutmix, cfg.mix_prob)


def hold_out(data: TensorData, count: int, seed: int) -> tuple[TensorData, TensorData]:
    """Split off ``count`` training images as a validation set (the paper's 45k/5k split)."""
    if count >= len(data):
        raise DeepresError(f"--val-split {count} leaves no training images of {len(data)}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.select(order[count:].sort().values), data.select(order[:count].sort().values)
