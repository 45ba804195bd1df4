"""Batch-level augmentation and batching of in-memory uint8 data (no PIL, no workers).

The CIFAR recipe of the ResNet paper (§4.2): "4 pixels are padded on each side, and a 32x32
crop is randomly sampled from the padded image or its horizontal flip". Here that runs on a
whole uint8 batch at once, on whatever device the batch lives on.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from deepres.data.dataset import TensorData
from deepres.errors import DeepresError


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integers `parts`."""
    digest = hashlib.blake2b(",".join(str(int(p)) for p in parts).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


# per-image policies applied after the crops and flips: RandAugment (Cubuk et al. 2020) and
# TrivialAugmentWide (Müller & Hutter 2021), on uint8 images
POLICIES = ("randaugment", "trivial")

# the last part of derive_seed(seed, epoch, batch, rank, part) for each random step of a batch
POLICY_STREAM, ERASING_STREAM, MIXING_STREAM = 1, 2, 3


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Inside the block torch's global CPU generator is seeded with `seed` (torchvision's
    random transforms draw from it); after it, the generator's state is what it was before.
    CUDA generators are neither seeded nor touched."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


def policy_transform(policy: str) -> v2.Transform:
    """The torchvision v2 transform of an augmentation policy ('randaugment' or 'trivial')."""
    if policy == "randaugment":
        return v2.RandAugment()
    if policy == "trivial":
        return v2.TrivialAugmentWide()
    raise DeepresError(f"unknown augmentation policy {policy!r}; use one of {POLICIES}")


def per_image(
    images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor], seed: int
) -> torch.Tensor:
    """`transform` applied to each C x H x W image of the batch on its own, with random
    numbers that are a pure function of `seed` (and of the image's place in the batch)."""
    if images.dim() != 4:
        raise DeepresError(f"per_image needs B x C x H x W images, got {tuple(images.shape)}")
    with seeded_rng(seed):
        return torch.stack([transform(image) for image in images])


def random_crop_flip(
    images: torch.Tensor,
    padding: int = 4,
    generator: torch.Generator | None = None,
    flip: bool = True,
) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch plus random horizontal flip.

    images: uint8 B x C x H x W (any device). Each sample gets its own offsets in
    0..2*padding on both axes and a coin-flip mirror. Random numbers come from the CPU
    `generator`, so results are identical on CPU and GPU. Vectorised: one pad, one gather.
    """
    if images.dim() != 4:
        raise DeepresError(
            f"random_crop_flip needs B x C x H x W images, got {tuple(images.shape)}"
        )
    if padding < 0:
        raise DeepresError(f"random_crop_flip padding must be >= 0, got {padding}")
    b, c, h, w = images.shape
    span = 2 * padding + 1
    oy = torch.randint(0, span, (b,), generator=generator)
    ox = torch.randint(0, span, (b,), generator=generator)
    fl = (
        torch.randint(0, 2, (b,), generator=generator).bool()
        if flip
        else torch.zeros(b, dtype=torch.bool)
    )
    dev = images.device
    oy, ox, fl = oy.to(dev), ox.to(dev), fl.to(dev)
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    wp = w + 2 * padding
    rows = oy[:, None] + torch.arange(h, device=dev)  # B x H
    cols = ox[:, None] + torch.arange(w, device=dev)  # B x W
    cols = torch.where(fl[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    out = padded.reshape(b, c, -1).gather(2, index)
    return out.reshape(b, c, h, w)


def normalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 B x C x H x W -> (x / 255 - mean) / std as `dtype` (computed in >= float32)."""
    c = images.shape[1]
    if len(mean) != c or len(std) != c:
        raise DeepresError(
            f"normalize got {len(mean)} means and {len(std)} stds for {c}-channel images; "
            f"give one per channel"
        )
    if any(s <= 0 for s in std):
        raise DeepresError(f"normalize std must be > 0 per channel, got {tuple(std)}")
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * s)).to(work).view(1, c, 1, 1).to(images.device)
    shift = (-m / s).to(work).view(1, c, 1, 1).to(images.device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    out = images.to(work).mul_(scale).add_(shift)
    return out if work == dtype else out.to(dtype)


class BatchMix(Protocol):
    """Mixes a whole batch (see `deepres.data.mixing.BatchMixer`): (images, int64 labels,
    seed) -> (images, float B x C soft labels)."""

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class BatchLoader:
    """Batches of an in-memory `TensorData`: (normalised float images, int64 labels).

    Augmentation, in order: `augment` (random crop of the `padding`-padded image and flip,
    or `crop(images, generator)` when given, such as `deepres.data.crops.BatchCrops`),
    `policy` ('randaugment' / 'trivial', per uint8 image), `random_erasing` (its
    probability, per normalised image) and `mix` (mixup / cutmix of the whole batch; the
    labels become float B x C soft targets).

    The sample order of an epoch is a pure function of (seed, epoch), and each batch's
    augmentation of (seed, epoch, batch index, rank), so `iter_epoch(epoch, start_batch=k)`
    resumes mid-epoch with bitwise the same batches, skipping the first k without work.

    Sharding (rank, world_size): every rank takes a disjoint contiguous slice of the same
    per-epoch permutation, of equal length: with drop_last the permutation is trimmed to a
    multiple of world_size, otherwise it is padded by wrapping around to its start (a few
    samples then appear twice in the epoch). Every rank thus yields the same batch count.
    """

    def __init__(
        self,
        data: TensorData,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = True,
        drop_last: bool = False,
        augment: bool = False,
        padding: int = 4,
        policy: str | None = None,
        random_erasing: float = 0.0,
        mix: BatchMix | None = None,
        crop: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise DeepresError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DeepresError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if len(data) == 0:
            raise DeepresError("BatchLoader got an empty data set; check the split and subset")
        self.images = data.images if device is None else data.images.to(device)
        self.labels = data.labels if device is None else data.labels.to(device)
        self.classes = list(data.classes)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        if not 0 <= random_erasing <= 1:
            raise DeepresError(f"random_erasing is a probability in [0, 1], got {random_erasing}")
        self.augment, self.padding, self.seed = augment, padding, seed
        self.policy = None if policy is None else policy_transform(policy)
        self.erasing = v2.RandomErasing(p=random_erasing) if random_erasing > 0 else None
        self.mix, self.crop = mix, crop
        self.rank, self.world_size = rank, world_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.dtype, self.channels_last = dtype, channels_last
        self.epoch, self.start_batch = 0, 0

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before drop_last trims a partial batch)."""
        n = len(self.labels)
        return n // self.world_size if self.drop_last else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices for `epoch`, in batch order (CPU int64)."""
        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        total = self.num_samples * self.world_size
        if total > n:
            order = order.repeat(math.ceil(total / n))
        order = order[:total]
        return order[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make `iter(loader)` yield `epoch`, starting at batch `start_batch`."""
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_epoch(self.epoch, self.start_batch)

    def iter_epoch(
        self, epoch: int, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield batches `start_batch`, ..., len(self) - 1 of `epoch`."""
        if not 0 <= start_batch <= len(self):
            raise DeepresError(f"start_batch must be in 0..{len(self)}, got {start_batch}")
        order = self.epoch_indices(epoch)
        for b in range(start_batch, len(self)):
            yield self.batch(epoch, b, order[b * self.batch_size : (b + 1) * self.batch_size])

    def batch(
        self, epoch: int, index: int, samples: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather, augment and normalise the samples of batch `index` of `epoch`: crop and
        flip, the policy per uint8 image, normalisation, random erasing per image, then
        mixing of the batch (labels: int64 B, or float B x C soft targets with `mix`)."""
        samples = samples.to(self.images.device)
        x, y = self.images[samples], self.labels[samples]
        seed = (self.seed, epoch, index, self.rank)
        if self.augment:
            g = torch.Generator().manual_seed(derive_seed(*seed))
            x = random_crop_flip(x, self.padding, g) if self.crop is None else self.crop(x, g)
        if self.policy is not None:
            x = per_image(x, self.policy, derive_seed(*seed, POLICY_STREAM))
        x = normalize(x, self.mean, self.std, self.dtype, self.channels_last)
        if self.erasing is not None:
            x = per_image(x, self.erasing, derive_seed(*seed, ERASING_STREAM))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        if self.mix is not None:
            x, y = self.mix(x, y, derive_seed(*seed, MIXING_STREAM))
        return x, y
