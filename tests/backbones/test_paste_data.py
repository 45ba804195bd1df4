"""The pasted detection / segmentation set: deterministic, exact boxes and masks."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepres.backbones.paste_data import PasteDataset, PasteSpec, generate, shape_mask
from deepres.errors import DeepresError

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SPEC = PasteSpec(classes=("frog", "ship"), image_size=64, sizes={"train": 6, "val": 3}, seed=3)


@pytest.fixture(scope="module")
def pasted(tmp_path_factory):
    if not (SHARED_DATA / "cifar10-jpeg").is_dir():
        pytest.skip(f"{SHARED_DATA} is not here (see ../shared/data/README.md)")
    return generate(tmp_path_factory.mktemp("paste") / "set", SPEC, SHARED_DATA)


def test_generation_is_deterministic_and_cached(pasted, tmp_path):
    again = generate(tmp_path / "again", SPEC, SHARED_DATA)
    for split in ("train", "val"):
        for name in ["annotations.json", "00000.png", "00002_mask.png"]:
            assert (pasted / split / name).read_bytes() == (again / split / name).read_bytes()
    stamp = (again / "train" / "00000.png").stat().st_mtime_ns
    generate(again, SPEC, SHARED_DATA)  # same spec: kept
    assert (again / "train" / "00000.png").stat().st_mtime_ns == stamp
    other = PasteSpec(**{**SPEC.__dict__, "seed": 4})
    generate(again, other, SHARED_DATA)  # another spec: made anew
    assert json.loads((again / "meta.json").read_text())["seed"] == 4
    assert (again / "train" / "00000.png").read_bytes() != (
        pasted / "train" / "00000.png"
    ).read_bytes()


def test_boxes_and_masks_are_exact(pasted):
    data = PasteDataset(pasted, "train")
    assert len(data) == 6 and data.classes == ("frog", "ship")
    for index in range(len(data)):
        image, target = data[index]
        assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
        n = len(target["labels"])
        assert 1 <= n <= 3 and target["masks"].shape == (n, 64, 64)
        assert set(target["labels"].tolist()) <= {1, 2}
        for box, mask in zip(target["boxes"], target["masks"], strict=True):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            tight = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert box.tolist() == [float(v) for v in tight]
        assert (target["masks"].sum(0) <= 1).all()  # no overlaps
        semantic = data.semantic(index)
        assert semantic.shape == (64, 64)
        assert set(semantic.unique().tolist()) == {0, *target["labels"].tolist()}


def test_shapes_and_bad_specs():
    assert shape_mask(5, 3, ellipse=False).all()
    ellipse = shape_mask(8, 8, ellipse=True)
    assert ellipse[4, 4] and not ellipse[0, 0] and abs(ellipse.sum() - np.pi * 16) < 3
    with pytest.raises(DeepresError, match="shape"):
        PasteSpec(shape="star").check()
    with pytest.raises(DeepresError, match="unknown CIFAR-10 classes"):
        generate("/nonexistent/never", PasteSpec(classes=("zebra",), sizes={"val": 1}), SHARED_DATA)
    with pytest.raises(DeepresError, match="no generated data set"):
        PasteDataset("/nonexistent/never")
