"""IDX (MNIST / Fashion-MNIST) files: exact round trip, header validation, real files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from deepres.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx, read_idx_split
from deepres.errors import DeepresError


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path: Path, idx_folder, gz: bool) -> None:
    written = idx_folder(tmp_path / "mnist", gz=gz)
    for split in ("train", "test"):
        data = read_idx_split(tmp_path / "mnist", split)
        assert data.images.shape[1:] == (1, 28, 28) and data.images.dtype == torch.uint8
        assert torch.equal(data.images, written[split][0])
        assert torch.equal(data.labels, written[split][1])
    assert data.classes == [str(d) for d in range(10)]
    idx_folder(tmp_path / "fashion-mnist")
    fashion = read_idx_split(tmp_path / "fashion-mnist", "val")  # val -> test (t10k)
    assert fashion.classes == FASHION_MNIST_CLASSES and len(fashion) == 5


def test_idx_bad_magic_type_and_length(tmp_path: Path, make_idx) -> None:
    good = make_idx(np.zeros((3, 28, 28), dtype=np.uint8))
    f = tmp_path / "x-idx3-ubyte"
    f.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(DeepresError, match="magic"):
        read_idx(f)
    f.write_bytes(good[:2] + b"\x0d" + good[3:])  # float elements
    with pytest.raises(DeepresError, match="unsigned byte"):
        read_idx(f)
    f.write_bytes(gzip.compress(good[:-7]))
    with pytest.raises(DeepresError, match="truncated") as e:
        read_idx(f)
    assert str(f) in str(e.value)
    f.write_bytes(good[:9])
    with pytest.raises(DeepresError, match="truncated"):
        read_idx(f)
    f.write_bytes(b"\x1f\x8b broken gzip")
    with pytest.raises(DeepresError, match=str(f.name)):
        read_idx(f)


def test_idx_count_mismatch_and_missing(tmp_path: Path, idx_folder, make_idx) -> None:
    idx_folder(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(make_idx(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DeepresError, match="5 images but .* 4 labels"):
        read_idx_split(tmp_path, "test")
    with pytest.raises(DeepresError, match="apt-get install -y dataset-fashion-mnist"):
        read_idx_split(tmp_path / "nowhere", "train")


@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)",
)
def test_real_fashion_mnist() -> None:
    from deepres.data import load_split

    test = load_split("fashion-mnist", "test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.equal(test.labels.bincount(), torch.full((10,), 1000))
    assert test.classes == FASHION_MNIST_CLASSES
    train = load_split("fashion-mnist", "train", subset=3)
    assert train.images.shape == (30, 1, 28, 28)
