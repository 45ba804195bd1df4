"""deepres.data.transforms: the per-image training and evaluation pipelines."""

from __future__ import annotations

import pickle

import pytest
import torch

from deepres.data import build_transform
from deepres.errors import DeepresError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _image() -> torch.Tensor:
    return torch.randint(0, 256, (3, 60, 50), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


def test_eval_is_a_deterministic_normalised_centre_crop() -> None:
    t = build_transform(False, 32, MEAN, STD)
    x = t(_image())
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, t(_image()))
    assert float(x.min()) >= -2.0 and float(x.max()) <= 2.0  # (0..1 - 0.5) / 0.25


def test_ten_crop_stacks_ten_and_pickles() -> None:
    t = build_transform(False, 32, MEAN, STD, ten_crop=True)
    crops = pickle.loads(pickle.dumps(t))(_image())  # DataLoader workers pickle it
    assert crops.shape == (10, 3, 32, 32)
    assert torch.equal(crops[5], crops[1].flip(-1))  # flipped top-left = mirrored top-right


@pytest.mark.parametrize("crop", ["random-resized", "scale-256-480"])
def test_train_crops_with_policy_and_erasing(crop: str) -> None:
    t = build_transform(True, 32, MEAN, STD, train_crop=crop, policy="trivial", random_erasing=1)
    assert t(_image()).shape == (3, 32, 32)


def test_unknown_train_crop_is_refused() -> None:
    with pytest.raises(DeepresError, match="unknown train_crop 'square'"):
        build_transform(True, 32, MEAN, STD, train_crop="square")
