"""Training with mixup / cutmix, RandAugment / TrivialAugmentWide and random erasing: soft
targets in the loss and the error count, every rank's share of a mixed global batch, folder
batches mixed per rank, real runs, and a resume inside an epoch that is bitwise exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from deepres.checkpoints import load_model
from deepres.data import BatchLoader, synthetic_data
from deepres.data.augment import MIXING_STREAM, derive_seed
from deepres.data.folder import ImageFolderDataset
from deepres.data.mixing import BatchMixer
from deepres.train import distributed as dist
from deepres.train import resolve_config, train
from deepres.train.batches import FolderBatches, build_data
from deepres.train.distributed import RankBatches
from deepres.train.loop import forward_backward, set_up
from deepres.train.run import RunningSums

MIXING = dict(mixup=0.2, cutmix=1.0, mix_prob=0.8, augment="randaugment", random_erasing=0.25)


def tiny_config(out: Path, **overrides):
    options = dict(
        model="resnet8",
        data="synthetic:3x16x16:10:192",
        out=str(out),
        epochs=2,
        batch_size=32,
        lr=0.05,
        checkpoint_every=2,
        threads=1,
        progress="off",
    )
    options.update(overrides)
    return resolve_config(**options)


def rows(run: Path) -> list[dict]:
    drop = ("time", "images_per_s")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def test_every_rank_keeps_its_part_of_the_same_mixed_global_batch() -> None:
    data = synthetic_data(96, 3, 16, 16, 10, seed=2)

    def global_loader() -> BatchLoader:
        mixer = BatchMixer(10, mixup=0.2, cutmix=1.0)
        return BatchLoader(
            data,
            16,
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
            augment=True,
            drop_last=True,
            policy="trivial",
            random_erasing=0.5,
            mix=mixer,
            seed=3,
        )

    whole = list(global_loader().iter_epoch(0))
    parts = [list(RankBatches(global_loader(), rank, 2).iter_epoch(0, 1)) for rank in range(2)]
    for (images, soft), r0, r1 in zip(whole[1:], *parts, strict=True):
        assert soft.shape == (16, 10) and r0[1].shape == (8, 10)
        assert torch.equal(torch.cat([r0[0], r1[0]]), images)
        assert torch.equal(torch.cat([r0[1], r1[1]]), soft)


def write_folder(root: Path, n: int = 6, side: int = 72) -> Path:
    """train/ and test/ splits of two classes of random PNG and JPEG images (large enough
    for the per-image Dataset mode)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                suffix = ".png" if i % 2 else ".jpg"
                Image.fromarray(pixels).save(root / split / cls / f"{i}{suffix}")
    return root


def test_folder_batches_mix_each_rank_by_seed_epoch_batch_and_rank(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data")
    # test-mode transforms (a centre crop) so that only the mixing is random
    dataset = ImageFolderDataset(
        root / "train", train=False, mean=(0.5,) * 3, std=(0.25,) * 3, size=32
    )

    def batches(rank: int, mix: BatchMixer | None) -> FolderBatches:
        return FolderBatches(
            dataset,
            2,
            shuffle=True,
            drop_last=True,
            seed=1,
            rank=rank,
            world_size=2,
            workers=0,
            mix=mix,
        )

    mixer = BatchMixer(2, mixup=1.0, cutmix=1.0)
    for rank in range(2):
        full = list(batches(rank, mixer).iter_epoch(3))
        plain = list(batches(rank, None).iter_epoch(3))
        assert len(full) == len(plain) == 3
        for index, ((images, soft), (x, y)) in enumerate(zip(full, plain, strict=True)):
            assert images.shape == (2, 3, 32, 32) and soft.shape == (2, 2)
            torch.testing.assert_close(soft.sum(1), torch.ones(2), rtol=0, atol=1e-6)
            seed = derive_seed(1, 3, index, rank, MIXING_STREAM)
            expected = mixer(x, y, seed)
            assert torch.equal(images, expected[0]) and torch.equal(soft, expected[1])
        resumed = list(batches(rank, mixer).iter_epoch(3, start_batch=1))
        for (a, sa), (b, sb) in zip(full[1:], resumed, strict=True):
            assert torch.equal(a, b) and torch.equal(sa, sb)


def test_forward_backward_takes_soft_targets(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", label_smoothing=0.1, **MIXING)
    ctx = dist.setup(cfg.device, cfg.threads)
    data, _, learner = set_up(cfg, ctx, pretrained=False)
    images, soft = next(data.train.iter_epoch(0))
    assert soft.shape == (32, 10) and soft.dtype == torch.float32
    with torch.no_grad():
        logits = learner.model(images)  # training mode: batch statistics, as in the step
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    loss, errors = forward_backward(learner, criterion, images, soft, 1, lambda: "step 1")
    expected = F.cross_entropy(logits, soft, label_smoothing=0.1)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    sums = RunningSums()
    sums.add(loss, errors, len(soft))  # as the epoch counts it
    assert sums.loss == pytest.approx(float(expected) * 32, rel=1e-5) and sums.images == 32
    assert errors == int((logits.argmax(1) != soft.argmax(1)).sum())
    assert all(p.grad is not None for p in learner.model.parameters())


def by_hand_top1(cfg, out: Path) -> float:
    """Test top-1 of the run's saved weights, counted here over the evaluation batches."""
    model, _ = load_model(out)
    right = total = 0
    with torch.no_grad():
        for images, labels in build_data(cfg).test.iter_epoch(0):
            right += int((model.eval()(images).argmax(1) == labels).sum())
            total += len(labels)
    return right / total


def test_short_training_with_mixing_on_in_memory_data(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny_config(out, epochs=1, **MIXING)
    summary = train(cfg)
    rows_ = rows(out)
    assert len(rows_) == 1 and np.isfinite(rows_[0]["train_loss"])
    assert summary["final_top1"] == rows_[0]["test_top1"] == pytest.approx(by_hand_top1(cfg, out))
    # the same run without mixing and augmentation trains on other batches: another loss
    plain = train(tiny_config(tmp_path / "plain", epochs=1))
    assert plain["final_top1"] is not None
    assert rows(tmp_path / "plain")[0]["train_loss"] != rows_[0]["train_loss"]


def test_short_training_on_an_image_folder_with_every_option(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data")
    cfg = tiny_config(
        tmp_path / "run",
        data=str(root),
        image_size=32,
        batch_size=4,
        workers=0,
        epochs=1,
        mixup=0.2,
        cutmix=1.0,
        augment="trivial",
        random_erasing=0.5,
        folder_mode="per-image",
    )
    data = build_data(cfg)
    assert isinstance(data.train, FolderBatches)
    images, soft = next(data.train.iter_epoch(0))
    assert images.shape == (4, 3, 32, 32) and soft.shape == (4, 2)
    assert torch.allclose(soft.sum(1), torch.ones(4)) and (soft >= 0).all()
    test_images, test_labels = next(data.test.iter_epoch(0))
    assert test_labels.dtype == torch.int64  # evaluation batches are never mixed
    # every option changes the training batch: not the batch of a run without them
    bare = tiny_config(tmp_path / "bare", data=str(root), image_size=32, batch_size=4, workers=0)
    bare_images, bare_labels = next(build_data(bare).train.iter_epoch(0))
    assert bare_labels.dtype == torch.int64 and not torch.equal(bare_images, images)
    summary = train(cfg)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    options = ("mixup", "cutmix", "augment", "random_erasing")
    assert {k: recorded[k] for k in options} == {k: getattr(cfg, k) for k in options}
    row = rows(tmp_path / "run")[0]
    assert np.isfinite(row["train_loss"])
    assert summary["final_top1"] == row["test_top1"] == pytest.approx(by_hand_top1(cfg, cfg.out))


def test_resume_inside_an_epoch_with_mixing_is_bitwise_exact(tmp_path, monkeypatch) -> None:
    reference = tmp_path / "reference"
    train(tiny_config(reference, **MIXING))
    run = tmp_path / "run"
    monkeypatch.setenv("DEEPRES_FAULT", "step:3:raise")  # after step 3; checkpoint at step 2
    with pytest.raises(RuntimeError):
        train(tiny_config(run, **MIXING))
    assert torch.load(run / "state.pt", weights_only=True)["step"] == 2
    monkeypatch.delenv("DEEPRES_FAULT")
    train(tiny_config(run, **MIXING), resume=True)
    a, b = load_file(reference / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rows(run) == rows(reference)
