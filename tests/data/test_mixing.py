"""mixup / cutmix of whole batches, RandAugment / TrivialAugmentWide per image and random
erasing: exact against hand computation, seeded by (seed, epoch, batch), resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from deepres.data import BatchLoader, TensorData, derive_seed, random_crop_flip, synthetic_data
from deepres.data.augment import POLICY_STREAM, per_image, seeded_rng
from deepres.data.folder import ImageFolderDataset
from deepres.data.mixing import BatchMixer, batch_mixer
from deepres.errors import DeepresError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def distinct_batch(b: int = 8, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float images with pairwise different labels, so lam can be read off a row."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 3, 16, 16, generator=g), torch.arange(b) % classes


def onehot(labels: torch.Tensor, classes: int = 10) -> torch.Tensor:
    return F.one_hot(labels, classes).float()


def test_mixup_is_lam_x_plus_one_minus_lam_x_rolled() -> None:
    x, y = distinct_batch()
    mixer = BatchMixer(10, mixup=0.4)
    lams = []
    for seed in range(20):
        mixed, soft = mixer(x.clone(), y, seed)
        lam = float(soft[0, y[0]])
        lams.append(lam)
        perm = torch.arange(len(y)).roll(1)  # image i is mixed with image i - 1
        assert soft.dtype == torch.float32 and soft.shape == (8, 10)
        assert torch.equal(soft, lam * onehot(y) + (1 - lam) * onehot(y[perm]))
        torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm], rtol=0, atol=1e-6)
        torch.testing.assert_close(soft.sum(1), torch.ones(8), rtol=0, atol=1e-6)
    assert len(set(lams)) == 20 and all(0 < lam < 1 for lam in lams)


def test_cutmix_pastes_one_box_and_leaves_the_rest() -> None:
    x, y = distinct_batch()
    mixer = BatchMixer(10, cutmix=1.0)
    areas = set()
    for seed in range(20):
        mixed, soft = mixer(x.clone(), y, seed)
        rolled = x.roll(1, 0)
        changed = (mixed != x).any(1)  # B x H x W: pixels taken from the previous image
        box = changed[0]
        assert all(torch.equal(changed[i], box) for i in range(8)), "one box for the batch"
        assert torch.equal(mixed[:, :, ~box], x[:, :, ~box])  # outside: untouched
        assert torch.equal(mixed[:, :, box], rolled[:, :, box])  # inside: the other image
        if box.any():  # a rectangle
            rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
            assert int(box.sum()) == len(rows) * len(cols)
        lam = 1 - int(box.sum()) / box.numel()  # the share of the image kept
        assert torch.equal(soft, lam * onehot(y) + (1 - lam) * onehot(y.roll(1)))
        areas.add(int(box.sum()))
    assert len(areas) > 5


def test_both_choose_per_batch_and_prob_skips_batches() -> None:
    x, y = distinct_batch()
    both = BatchMixer(10, mixup=1.0, cutmix=1.0)
    kinds = set()
    for seed in range(30):
        mixed, _ = both(x.clone(), y, seed)
        box_like = bool(((mixed == x).all(1) | (mixed == x.roll(1, 0)).all(1)).all())
        kinds.add("cutmix" if box_like else "mixup")
    assert kinds == {"mixup", "cutmix"}
    rare = BatchMixer(10, mixup=1.0, prob=0.3)
    plain = [torch.equal(rare(x.clone(), y, s)[1], onehot(y)) for s in range(60)]
    assert 20 < sum(plain) < 60  # about 70% of the batches are left as they are
    never = BatchMixer(10, mixup=1.0, prob=0.0)
    images, soft = never(x.clone(), y, 0)
    assert torch.equal(images, x) and torch.equal(soft, onehot(y))


def test_mixing_is_a_pure_function_of_the_seed_and_keeps_the_global_rng() -> None:
    x, y = distinct_batch()
    mixer = BatchMixer(10, mixup=0.2, cutmix=1.0, prob=0.9)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = mixer(x.clone(), y, 7)
    torch.manual_seed(999)  # another global state: no influence
    b = mixer(x.clone(), y, 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.manual_seed(123)
    mixer(x.clone(), y, 8)
    assert torch.equal(torch.random.get_rng_state(), before)
    c = mixer(x.clone(), y, 8)
    assert not torch.equal(a[1], c[1])
    double = mixer(x.double(), y, 7)
    assert double[1].dtype == torch.float64


def test_bad_mixing_options_are_refused() -> None:
    with pytest.raises(DeepresError, match="alpha"):
        BatchMixer(10)
    with pytest.raises(DeepresError, match="probability"):
        BatchMixer(10, mixup=1.0, prob=1.5)
    with pytest.raises(DeepresError, match="one int64 label per image"):
        BatchMixer(10, mixup=1.0)(torch.zeros(4, 3, 8, 8), torch.zeros(3, dtype=torch.long), 0)
    assert batch_mixer(10, 0.0, 0.0, 1.0) is None and batch_mixer(10, 0.2, 0.0, 0.0) is None
    assert isinstance(batch_mixer(10, 0.0, 1.0, 0.5), BatchMixer)


def loader(data: TensorData, **options) -> BatchLoader:
    settings = dict(mean=MEAN, std=STD, augment=True, seed=3, drop_last=True)
    settings.update(options)
    return BatchLoader(data, 16, **settings)


def all_options(classes: int = 10) -> dict:
    return dict(
        policy="randaugment", random_erasing=0.5, mix=BatchMixer(classes, mixup=0.2, cutmix=1.0)
    )


def test_loader_mixes_and_resumes_bitwise() -> None:
    data = synthetic_data(96, 3, 16, 16, 10, seed=2)
    batches = loader(data, **all_options())
    full = list(batches.iter_epoch(1))
    assert len(full) == 6
    for images, soft in full:
        assert images.shape == (16, 3, 16, 16) and soft.shape == (16, 10)
        torch.testing.assert_close(soft.sum(1), torch.ones(16), rtol=0, atol=1e-6)
    again = loader(data, **all_options())  # a fresh loader, as after a restart
    for k in (0, 2, 5):
        resumed = list(again.iter_epoch(1, start_batch=k))
        assert len(resumed) == 6 - k
        for (a, sa), (b, sb) in zip(full[k:], resumed, strict=True):
            assert torch.equal(a, b) and torch.equal(sa, sb)
    other = list(again.iter_epoch(2))
    assert not torch.equal(full[0][1], other[0][1])


@pytest.mark.parametrize("policy", ["randaugment", "trivial"])
@pytest.mark.parametrize("channels", [1, 3])
def test_policies_per_image_on_in_memory_data(policy: str, channels: int) -> None:
    data = synthetic_data(64, channels, 28, 28, 10, seed=4)
    mean, std = MEAN[:channels], STD[:channels]
    plain = loader(data, mean=mean, std=std)
    augmented = loader(data, mean=mean, std=std, policy=policy)
    epoch, index = 0, 1
    a, ya = plain.batch(epoch, index, plain.epoch_indices(epoch)[16:32])
    b, yb = augmented.batch(epoch, index, augmented.epoch_indices(epoch)[16:32])
    assert b.shape == a.shape == (16, channels, 28, 28) and b.dtype == torch.float32
    assert torch.equal(ya, yb)
    differ = sum(not torch.equal(a[i], b[i]) for i in range(16))
    assert differ >= 8, f"only {differ} of 16 images changed"
    # By hand: the paper's crop + flip, then torchvision's policy on each uint8 image alone.
    samples = augmented.epoch_indices(epoch)[16:32]
    cropped = random_crop_flip(
        data.images[samples], 4, torch.Generator().manual_seed(derive_seed(3, epoch, index, 0))
    )
    transform = v2.RandAugment() if policy == "randaugment" else v2.TrivialAugmentWide()
    with seeded_rng(derive_seed(3, epoch, index, 0, POLICY_STREAM)):
        expected = [transform(image) for image in cropped]
    assert expected[0].dtype == torch.uint8
    scale = torch.tensor(STD[:channels]).view(channels, 1, 1) * 255
    for i in range(16):
        back = (b[i] * scale + torch.tensor(mean).view(channels, 1, 1) * 255).round()
        assert torch.equal(back.to(torch.uint8), expected[i])


def test_random_erasing_zeroes_one_box_per_erased_image() -> None:
    data = synthetic_data(64, 3, 32, 32, 10, seed=5)
    plain = loader(data)
    order = plain.epoch_indices(0)[:16]
    a, _ = plain.batch(0, 0, order)
    always, _ = loader(data, random_erasing=1.0).batch(0, 0, order)
    half, _ = loader(data, random_erasing=0.5).batch(0, 0, order)
    assert always.shape == a.shape and always.dtype == a.dtype
    for i in range(16):
        box = (always[i] != a[i]).any(0)
        assert box.any()
        assert torch.equal(always[i][:, box], torch.zeros_like(always[i][:, box]))
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        assert int(box.sum()) == len(rows) * len(cols)  # a rectangle
        assert 0.02 * 1024 * 0.9 <= len(rows) * len(cols) <= 0.33 * 1024 * 1.1
    erased = sum(not torch.equal(half[i], a[i]) for i in range(16))
    assert 2 <= erased <= 14
    again, _ = loader(data, random_erasing=0.5).batch(0, 0, order)
    assert torch.equal(again, half)


def test_per_image_needs_a_batch() -> None:
    with pytest.raises(DeepresError, match="B x C x H x W"):
        per_image(torch.zeros(3, 8, 8, dtype=torch.uint8), v2.RandAugment(), 0)
    with pytest.raises(DeepresError, match="unknown augmentation policy"):
        loader(synthetic_data(16, 3, 8, 8, 2), policy="autoaugment")


def write_folder(root: Path, n: int = 4, side: int = 80) -> Path:
    """Two classes of small random PNG and JPEG images."""
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / cls / f"{i}{suffix}")
    return root


@pytest.mark.parametrize(
    "options",
    [{"policy": "randaugment"}, {"policy": "trivial"}, {"random_erasing": 1.0}],
)
def test_policies_and_erasing_on_an_image_folder(tmp_path: Path, options: dict) -> None:
    root = write_folder(tmp_path / "train")
    plain = ImageFolderDataset(root, train=True, mean=MEAN, std=STD, size=32)
    augmented = ImageFolderDataset(root, train=True, mean=MEAN, std=STD, size=32, **options)
    differ = 0
    for i in range(len(plain)):
        torch.manual_seed(i)
        a, label_a = plain[i]
        torch.manual_seed(i)  # the same crop and flip: only the new step differs
        b, label_b = augmented[i]
        assert b.shape == (3, 32, 32) and b.dtype == torch.float32 and label_a == label_b
        differ += not torch.equal(a, b)
    assert differ >= len(plain) // 2
    test = ImageFolderDataset(root, train=False, mean=MEAN, std=STD, size=32)
    with pytest.raises(DeepresError, match="training images only"):
        test.set_augmentation("trivial")
