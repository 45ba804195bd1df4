"""Training on a folder of large images through the decoded-once cache: the batched crops
path by default, the per-image path on request, bitwise resume, memory-mapped = in memory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from deepres.train import resolve_config, train
from deepres.train.batches import FolderBatches, build_data
from deepres.train.config import resume_config
from deepres.train.distributed import RankBatches


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """20 training and 8 test JPEGs of 200 x 150 pixels in 2 classes (written with PIL)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 4)):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                small = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)
                Image.fromarray(small).resize((200, 150)).save(folder / f"{i}.jpg")
    return root


def config(data: Path, out: Path, **overrides):
    options = dict(
        model="resnet8",
        data=str(data),
        out=str(out),
        image_size=32,
        epochs=2,
        batch_size=4,
        lr=0.05,
        checkpoint_every=2,
        threads=1,
        progress="off",
    )
    options.update(overrides)
    return resolve_config(**options)


def test_large_images_go_through_the_cache_and_batched_crops(photos, tmp_path) -> None:
    data = build_data(config(photos, tmp_path / "run"))
    assert isinstance(data.train, RankBatches) and data.input_size == 32
    images, labels = next(data.train.iter_epoch(0))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    cached = data.train.loader.images
    assert cached.shape == (20, 3, 40, 40)  # S = ceil(32 / 0.8)
    test_images, _ = next(data.test.iter_epoch(0))
    assert test_images.shape == (8, 3, 32, 32)
    crops = data.train.loader.crop
    assert crops is not None and crops.scale == (0.35, 1.0) and crops.random_crop
    other = build_data(config(photos, tmp_path / "run", decode_size=48, crop_scale=0.08))
    assert other.train.loader.images.shape[-1] == 48
    assert other.train.loader.crop.scale == (0.08, 1.0)
    old = build_data(config(photos, tmp_path / "run", folder_mode="per-image", workers=0))
    assert isinstance(old.train, FolderBatches)


def test_resume_inside_an_epoch_is_bitwise_exact(photos, tmp_path, monkeypatch) -> None:
    reference = tmp_path / "reference"
    train(config(photos, reference))
    run = tmp_path / "run"
    monkeypatch.setenv("DEEPRES_FAULT", "step:3:raise")  # after step 3; checkpoint at step 2
    with pytest.raises(RuntimeError):
        train(config(photos, run))
    assert torch.load(run / "state.pt", weights_only=True)["step"] == 2
    monkeypatch.delenv("DEEPRES_FAULT")
    train(config(photos, run), resume=True)
    a, b = load_file(reference / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    mapped = tmp_path / "mapped"
    train(config(photos, mapped, folder_mode="mmap"))
    c = load_file(mapped / "model.safetensors")
    assert all(torch.equal(a[k], c[k]) for k in a)  # the same pixels from the mapped file


def test_val_split_holds_out_cached_images(photos, tmp_path) -> None:
    data = build_data(config(photos, tmp_path / "run", val_split=6))
    assert isinstance(data.test.images, torch.Tensor) and len(data.test.labels) == 6
    assert data.test.images.shape[1:] == (3, 32, 32)
    assert len(data.train.loader.labels) == 14  # 20 - 6 held out


def test_a_run_saved_before_the_cache_resumes_on_the_per_image_path(tmp_path) -> None:
    saved = dataclasses.asdict(resolve_config(data="synthetic", epochs=1))
    assert saved.pop("folder_mode") == "cached"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert resume_config(tmp_path, {}).folder_mode == "per-image"
    (tmp_path / "config.json").write_text(json.dumps({**saved, "folder_mode": "mmap"}))
    assert resume_config(tmp_path, {}).folder_mode == "mmap"


def test_every_augmentation_option_works_on_the_cached_path(photos, tmp_path) -> None:
    options = dict(mixup=0.2, cutmix=1.0, augment="trivial", random_erasing=0.5, epochs=1)
    cfg = config(photos, tmp_path / "run", **options)
    data = build_data(cfg)
    assert isinstance(data.train, RankBatches) and data.train.loader.policy is not None
    images, soft = next(data.train.iter_epoch(0))
    assert images.shape == (4, 3, 32, 32) and soft.shape == (4, 2)
    for augment, random_crop in (("flip", False), ("scale-flip", True)):
        crops = build_data(config(photos, tmp_path / "run", augment=augment)).train.loader.crop
        assert crops.random_crop is random_crop and crops.flip
    plain = build_data(config(photos, tmp_path / "run", augment="none")).train.loader
    assert plain.crop is None and plain.images.shape[-1] == 32  # centre crops
    train(cfg)
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_each_process_takes_its_part_of_the_same_cropped_global_batch(photos, tmp_path) -> None:
    cfg = config(photos, tmp_path / "run")
    (whole, labels), *_ = build_data(cfg).train.iter_epoch(1)
    parts = [next(build_data(cfg, rank, 2).train.iter_epoch(1)) for rank in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole)
    assert torch.equal(torch.cat([p[1] for p in parts]), labels)
