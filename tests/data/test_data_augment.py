"""Batch augmentation (paper §4.2 pad-4 crop + flip), normalisation and BatchLoader."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepres.data import BatchLoader, TensorData, normalize, random_crop_flip
from deepres.errors import DeepresError


def coded_images(n: int, h: int = 32, w: int = 32) -> TensorData:
    """Images that carry their own coordinates and label: ch0 = row + 1, ch1 = col + 1,
    ch2 = label + 1 (so zero padding is recognisable)."""
    labels = torch.arange(n) % 7
    rows = torch.arange(1, h + 1, dtype=torch.uint8).view(1, h, 1).expand(n, h, w)
    cols = torch.arange(1, w + 1, dtype=torch.uint8).view(1, 1, w).expand(n, h, w)
    lab = (labels + 1).to(torch.uint8).view(n, 1, 1).expand(n, h, w)
    images = torch.stack([rows, cols, lab], dim=1).contiguous()
    return TensorData(images, labels, [f"c{i}" for i in range(7)])


def decode_offsets(out: torch.Tensor, padding: int) -> tuple[torch.Tensor, ...]:
    """(oy, ox, flipped) per sample, read back from the coordinate channels at the centre."""
    h, w = out.shape[2:]
    cy, cx = h // 2, w // 2
    src_row = out[:, 0, cy, cx].long() - 1
    src_col = out[:, 1, cy, cx].long() - 1
    flipped = out[:, 1, cy, cx + 1].long() < out[:, 1, cy, cx].long()
    oy = src_row - cy + padding
    ox = torch.where(flipped, src_col - (w - 1 - cx), src_col - cx) + padding
    return oy, ox, flipped


def reference(images: torch.Tensor, oy, ox, flipped, padding: int) -> torch.Tensor:
    """Naive per-sample crop + flip, the definition random_crop_flip must match."""
    padded = F.pad(images, (padding,) * 4)
    h, w = images.shape[2:]
    out = []
    for i in range(len(images)):
        crop = padded[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w]
        out.append(crop.flip(-1) if flipped[i] else crop)
    return torch.stack(out)


def test_crop_flip_exact_and_covers_every_offset() -> None:
    data = coded_images(3000)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(data.images, padding=4, generator=g)
    assert out.dtype == torch.uint8 and out.shape == data.images.shape
    oy, ox, flipped = decode_offsets(out, 4)
    assert set(oy.tolist()) == set(range(9)) and set(ox.tolist()) == set(range(9))
    assert set(flipped.tolist()) == {True, False}
    assert len(set(zip(oy.tolist(), ox.tolist(), flipped.tolist(), strict=True))) == 162
    assert torch.equal(out, reference(data.images, oy, ox, flipped, 4))
    # the label channel is intact wherever the pixel is not padding
    inside = out[:, 2] != 0
    assert torch.equal(
        out[:, 2][inside],
        (data.labels + 1).to(torch.uint8).view(-1, 1, 1).expand_as(inside)[inside],
    )


def test_crop_flip_deterministic_and_edge_cases() -> None:
    x = coded_images(16).images
    a = random_crop_flip(x, 4, torch.Generator().manual_seed(5))
    b = random_crop_flip(x, 4, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(random_crop_flip(x, 0, flip=False), x)
    flipped_only = random_crop_flip(x, 0, torch.Generator().manual_seed(1))
    for f, o in zip(flipped_only, x, strict=True):
        assert torch.equal(f, o) or torch.equal(f, o.flip(-1))
    rect = coded_images(64, h=8, w=12).images
    out = random_crop_flip(rect, 2, torch.Generator().manual_seed(2))
    assert out.shape == rect.shape
    with pytest.raises(DeepresError):
        random_crop_flip(x[0], 4)


def test_normalize() -> None:
    x = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = normalize(x, mean, std)
    ref = (x.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1).double()) / torch.tensor(
        std
    ).view(1, 3, 1, 1).double()
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), ref, atol=1e-5)
    cl = normalize(x, mean, std, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(cl, out)
    assert normalize(x, mean, std, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(DeepresError, match="one per channel"):
        normalize(x, (0.5,), (0.5,))


def _plain(data: TensorData, **kw) -> BatchLoader:
    return BatchLoader(data, kw.pop("batch_size", 8), mean=(0.0,) * 3, std=(1.0,) * 3, **kw)


def test_loader_keeps_labels_with_images() -> None:
    data = coded_images(50)
    loader = _plain(data, augment=True, seed=3)
    seen = []
    for x, y in loader:
        centre = (x[:, 2, 16, 16] * 255).round().long() - 1  # centre is never padding
        assert torch.equal(centre, y)
        seen.append(y)
    assert len(torch.cat(seen)) == 50 and len(loader) == 7


def test_loader_order_is_pure_function_of_seed_and_epoch() -> None:
    data = coded_images(60)
    a = list(_plain(data, augment=True, seed=1).iter_epoch(2))
    b = list(_plain(data, augment=True, seed=1).iter_epoch(2))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other_epoch = list(_plain(data, augment=True, seed=1).iter_epoch(3))
    assert not torch.equal(a[0][1], other_epoch[0][1])
    other_seed = list(_plain(data, augment=True, seed=2).iter_epoch(2))
    assert not torch.equal(a[0][1], other_seed[0][1])


def test_loader_resume_mid_epoch_is_bitwise_equal() -> None:
    data = coded_images(100)
    full = list(_plain(data, augment=True, seed=7).iter_epoch(4))
    fresh = _plain(data, augment=True, seed=7)
    fresh.set_epoch(4, start_batch=5)
    resumed = list(fresh)
    assert len(resumed) == len(full) - 5
    for (xa, ya), (xb, yb) in zip(full[5:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(DeepresError):
        list(fresh.iter_epoch(0, start_batch=len(fresh) + 1))


@pytest.mark.parametrize("n, world, drop_last", [(96, 3, False), (100, 3, False), (100, 3, True)])
def test_shards_disjoint_and_covering(n: int, world: int, drop_last: bool) -> None:
    data = coded_images(n)
    loaders = [
        _plain(data, seed=9, rank=r, world_size=world, drop_last=drop_last, batch_size=8)
        for r in range(world)
    ]
    assert len({len(ld) for ld in loaders}) == 1  # equal batch counts on every rank
    parts = [ld.epoch_indices(1) for ld in loaders]
    assert len({len(p) for p in parts}) == 1
    flat = torch.cat(parts)
    if drop_last:
        assert len(flat) == n // world * world and len(set(flat.tolist())) == len(flat)
    else:
        assert set(flat.tolist()) == set(range(n))  # the union is the whole epoch
        assert len(flat) - len(set(flat.tolist())) == (-n) % world  # padding repeats only
    if n % world == 0:
        assert len(set(flat.tolist())) == len(flat)
    for ld, p in zip(loaders, parts, strict=True):
        ys = torch.cat([y for _, y in ld.iter_epoch(1)])
        expected = data.labels[p]
        if drop_last:
            expected = expected[: len(ld) * ld.batch_size]
        assert torch.equal(ys, expected)


def test_loader_shuffle_off_and_drop_last() -> None:
    data = coded_images(21)
    loader = _plain(data, shuffle=False, drop_last=True, batch_size=5)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert torch.equal(torch.cat([y for _, y in batches]), data.labels[:20])
    with pytest.raises(DeepresError):
        _plain(data, rank=2, world_size=2)
