"""Large-image folders decoded once at a fixed size (deepres.data.resized) and cropped a
batch at a time (deepres.data.crops): the crops against torchvision's, the boxes' ranges,
seeding, the memory-mapped cache and interrupted cache writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torchvision.transforms.v2 import functional as TF

from deepres.data import BatchLoader, TensorData, scan_folder
from deepres.data.cache import cache_dir, tensor_cache_file
from deepres.data.crops import (
    BatchCrops,
    center_boxes,
    center_crop,
    resized_crops,
    sample_boxes,
)
from deepres.data.decode import decode_file
from deepres.data.resized import cache_side, load_resized, resized_key, square
from deepres.errors import DeepresError


def write_photos(root: Path, per_class: int = 10, size: tuple[int, int] = (200, 150)) -> Path:
    """root/train/<a|b>/<i>.jpg: smooth random JPEGs (width x height = size) in 2 classes."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        folder = root / "train" / cls
        folder.mkdir(parents=True)
        for i in range(per_class):
            small = rng.integers(0, 256, (size[1] // 10, size[0] // 10, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize(size, Image.BILINEAR)
            image.save(folder / f"{i:02d}.jpg", quality=90)
    return root / "train"


def test_cache_side_is_the_image_size_over_0_8() -> None:
    assert [cache_side(s) for s in (128, 192, 224, 32, 1)] == [160, 240, 280, 40, 2]


@pytest.mark.parametrize(
    "box",
    [(0, 0, 60, 50), (3, 7, 20, 11), (10, 5, 41, 33), (59, 49, 1, 1), (0, 2, 60, 47)],
)
@pytest.mark.parametrize("size", [32, 16])
def test_a_crop_is_torchvision_resized_crop_of_the_same_box(box, size) -> None:
    images = torch.randint(0, 256, (3, 3, 60, 50), generator=torch.Generator().manual_seed(1))
    images = images.to(torch.uint8)
    boxes = torch.tensor([box] * 3)
    flips = torch.tensor([False, True, False])
    out = resized_crops(images, boxes, size, flips)
    assert out.dtype == torch.uint8 and out.shape == (3, 3, size, size)
    for i in range(3):
        ref = TF.resized_crop(images[i], *box, [size, size], antialias=False)
        ref = ref.flip(-1) if flips[i] else ref
        assert (out[i].int() - ref.int()).abs().max() <= 1, (box, size, i)


def test_a_crop_of_the_whole_image_at_its_size_is_the_image() -> None:
    images = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8)
    out = resized_crops(images, center_boxes(2, 24, 24, 24), 24, torch.tensor([False, True]))
    assert torch.equal(out[0], images[0]) and torch.equal(out[1], images[1].flip(-1))


def test_boxes_lie_inside_the_image_with_their_area_and_ratio_in_range() -> None:
    g = torch.Generator().manual_seed(0)
    for (height, width), scale in (((160, 160), (0.35, 1.0)), ((150, 200), (0.08, 1.0))):
        top, left, h, w = sample_boxes(4000, height, width, scale, generator=g).unbind(1)
        assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
        assert (top + h <= height).all() and (left + w <= width).all()
        share = (h * w).double() / (height * width)
        slack = 2 * (height + width) / (height * width)  # w and h are rounded to pixels
        assert share.min() >= scale[0] - slack and share.max() <= 1 + slack
        ratio = w.double() / h
        assert ratio.min() >= 3 / 4 - 0.05 and ratio.max() <= 4 / 3 + 0.05
        assert share.min() < scale[0] + 0.05 and share.max() > 0.9  # the whole range is used
        assert top.unique().numel() > 10 and left.unique().numel() > 10


def test_boxes_fall_back_to_a_centred_crop_of_the_clamped_ratio() -> None:
    # a 10 x 300 strip: no box of ratio 3/4..4/3 and area share >= 0.9 fits, as in torchvision
    boxes = sample_boxes(5, 10, 300, (0.9, 1.0), generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([0, (300 - round(10 * 4 / 3)) // 2, 10, round(10 * 4 / 3)])
    assert torch.equal(boxes, expected.expand(5, 4))


def test_bad_scales_are_refused() -> None:
    with pytest.raises(DeepresError, match="scale"):
        sample_boxes(2, 10, 10, (0.0, 1.0))
    with pytest.raises(DeepresError, match="scale"):
        sample_boxes(2, 10, 10, (0.5, 1.5))


def loader(data: TensorData, seed: int = 0, rank: int = 0) -> BatchLoader:
    return BatchLoader(
        data,
        4,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        augment=True,
        crop=BatchCrops(24, (0.35, 1.0)),
        seed=seed,
        rank=rank,
        world_size=2,
    )


def test_the_batch_is_a_function_of_seed_epoch_batch_and_rank() -> None:
    g = torch.Generator().manual_seed(3)
    data = TensorData(
        torch.randint(0, 256, (16, 3, 40, 40), generator=g).to(torch.uint8),
        torch.arange(16) % 2,
        ["a", "b"],
    )
    samples = torch.arange(4)
    first, labels = loader(data).batch(1, 2, samples)
    assert first.shape == (4, 3, 24, 24) and first.dtype == torch.float32
    assert torch.equal(labels, data.labels[:4])
    assert torch.equal(first, loader(data).batch(1, 2, samples)[0])
    for other in (
        loader(data).batch(1, 3, samples)[0],
        loader(data).batch(2, 2, samples)[0],
        loader(data, seed=1).batch(1, 2, samples)[0],
        loader(data, rank=1).batch(1, 2, samples)[0],
    ):
        assert not torch.equal(first, other)
    # a resumed epoch (start_batch) gives bitwise the batches of the whole epoch
    whole = list(loader(data).iter_epoch(5))
    resumed = list(loader(data).iter_epoch(5, start_batch=1))
    assert torch.equal(whole[1][0], resumed[0][0])


def test_centre_crops_are_views_of_the_cached_images() -> None:
    images = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    data = TensorData(images, torch.zeros(2, dtype=torch.long), ["a"])
    crop = center_crop(data, 32)
    assert torch.equal(crop.images, data.images[:, :, 4:36, 4:36])
    assert crop.images.untyped_storage().data_ptr() == data.images.untyped_storage().data_ptr()


def test_images_are_decoded_once_at_side_s_and_cached(tmp_path: Path, monkeypatch) -> None:
    split = write_photos(tmp_path)
    data = load_resized(split, 40)
    assert data.images.shape == (20, 3, 40, 40) and data.classes == ["a", "b"]
    assert data.labels.tolist() == [0] * 10 + [1] * 10
    index = scan_folder(split)
    first = decode_file(index.files[0])
    assert first.shape == (3, 150, 200)
    assert torch.equal(
        data.images[0], TF.center_crop(TF.resize(first, 40, antialias=True), [40, 40])
    )
    path = tensor_cache_file(resized_key(index, 40), cache_dir())
    with safe_open(str(path), framework="pt") as f:  # a plain safetensors file
        assert torch.equal(f.get_tensor("images"), data.images)
        assert f.metadata()["side"] == "40"
    assert resized_key(index, 48) != resized_key(index, 40)  # S is part of the key
    assert load_resized(split, 48).images.shape[-1] == 48

    from deepres.data import resized

    monkeypatch.setattr(resized, "fill_resized", lambda *a, **k: pytest.fail("decoded again"))
    assert torch.equal(load_resized(split, 40).images, data.images)


def test_the_memory_mapped_cache_reads_the_same_tensors(tmp_path: Path) -> None:
    split = write_photos(tmp_path)
    memory = load_resized(split, 40)
    mapped = load_resized(split, 40, mmap=True)
    assert (
        isinstance(mapped.images.numpy().base, np.memmap) or mapped.images.numpy().base is not None
    )
    assert torch.equal(memory.images, mapped.images) and torch.equal(memory.labels, mapped.labels)
    assert mapped.classes == memory.classes
    fresh = load_resized(split, 40, use_cache=False)
    assert torch.equal(fresh.images, memory.images)
    mapped.images[0].zero_()  # copy-on-write: the file keeps its pixels
    assert torch.equal(load_resized(split, 40, mmap=True).images[0], memory.images[0])


def test_a_square_keeps_the_centre_of_the_short_side() -> None:
    image = torch.zeros(3, 30, 60, dtype=torch.uint8)
    image[:, :, 15:45] = 255  # the centre 30 columns
    assert square(image, 30).min() == 255 and square(image, 15).shape == (3, 15, 15)


def test_damaged_cache_files_are_rebuilt(tmp_path: Path, caplog) -> None:
    split = write_photos(tmp_path, per_class=3)
    data = load_resized(split, 32)
    path = tensor_cache_file(resized_key(scan_folder(split), 32), cache_dir())
    damaged = path.with_name("damaged")
    damaged.write_bytes(path.read_bytes()[:1000])  # truncated
    os.replace(damaged, path)
    again = load_resized(split, 32, mmap=True)
    assert "unreadable cache" in caplog.text
    assert torch.equal(again.images, data.images)


CHILD = """
import sys
from deepres.data.resized import load_resized
load_resized(sys.argv[1], 32)
"""


def test_an_interrupted_cache_write_leaves_nothing_a_later_run_reads(tmp_path: Path) -> None:
    split = write_photos(tmp_path, per_class=3)
    cache = tmp_path / "cache"
    path = tensor_cache_file(resized_key(scan_folder(split), 32), cache)
    env = {**os.environ, "DEEPRES_CACHE": str(cache), "DEEPRES_FAULT": "write:1"}
    killed = subprocess.run([sys.executable, "-c", CHILD, str(split)], env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL  # killed after decoding, before the rename
    assert not path.exists()
    leftovers = list(cache.glob(".folder-*.tmp-*"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 3 * 32 * 32 * 6
    data = load_resized(split, 32)  # decodes afresh, and clears the dead process's file
    assert path.is_file() and not list(cache.glob(".folder-*.tmp-*"))
    assert torch.equal(data.images, load_resized(split, 32, use_cache=False).images)


def test_a_failed_cache_write_falls_back_to_memory(tmp_path: Path, monkeypatch) -> None:
    split = write_photos(tmp_path, per_class=2)
    monkeypatch.setenv("DEEPRES_FAULT", "write:1:enospc")
    data = load_resized(split, 32)
    assert data.images.shape == (4, 3, 32, 32)
    assert not list((tmp_path / "cache").glob("*folder-*"))


def test_undecodable_files_are_named(tmp_path: Path) -> None:
    split = write_photos(tmp_path, per_class=2)
    (split / "a" / "00.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DeepresError, match="00.jpg"):
        load_resized(split, 32)
    assert not list((tmp_path / "cache").glob("*folder-*"))


def test_a_changed_file_changes_the_key_and_is_decoded_again(tmp_path: Path) -> None:
    split = write_photos(tmp_path, per_class=2)
    before = load_resized(split, 32)
    key = resized_key(scan_folder(split), 32)
    changed = split / "b" / "01.jpg"
    Image.new("RGB", (200, 150), (7, 7, 7)).save(changed)
    os.utime(changed, ns=(1, 2_000_000_000))
    assert resized_key(scan_folder(split), 32) != key
    after = load_resized(split, 32)
    assert torch.equal(after.images[:3], before.images[:3])
    assert int(after.images[3].float().mean().round()) == 7
