"""load_split name/path resolution, split mapping, subsets, errors and dataset_stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepres.data import (
    FASHION_MNIST_CLASSES,
    ImageFolderDataset,
    TensorData,
    channel_stats,
    dataset_stats,
    load_split,
    subset,
    synthetic_data,
)
from deepres.data import registry as registry_mod
from deepres.errors import DeepresError

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def test_synthetic_specs() -> None:
    a = load_split("synthetic:1x8x6:4:20", "train")
    assert isinstance(a, TensorData)
    assert a.images.shape == (20, 1, 8, 6) and int(a.labels.max()) < 4 and a.num_classes == 4
    assert torch.equal(a.images, load_split("synthetic:1x8x6:4:20", "train").images)
    assert not torch.equal(a.images, load_split("synthetic:1x8x6:4:20", "test").images)
    assert load_split("synthetic", "test").images.shape == (256, 3, 32, 32)
    for bad in ("synthetic:3x32:10", "synthetic:axbxc", "synthetic:3x32x32:0"):
        with pytest.raises(DeepresError, match="synthetic"):
            load_split(bad, "train")
    assert torch.equal(synthetic_data(5, seed=3).labels, synthetic_data(5, seed=3).labels)


def test_cifar_by_name_path_and_env(
    tmp_path: Path, cifar_binary, cifar_python, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = cifar_binary(tmp_path / "root", "cifar10")
    by_name = load_split("cifar10", "val", data_root=tmp_path / "root")  # val -> test
    assert torch.equal(by_name.images, written["test"][0])
    by_path = load_split(str(tmp_path / "root" / "cifar-10-batches-bin"), "train")
    assert torch.equal(by_path.labels, written["train"][1])
    monkeypatch.setenv("DEEPRES_DATA", str(tmp_path / "root"))
    assert len(load_split("cifar10", "test")) == 6
    w100 = cifar_python(tmp_path / "root", "cifar100")
    assert torch.equal(load_split("cifar100", "train").images, w100["train"][0])
    assert torch.equal(load_split(str(tmp_path / "root" / "cifar-100-python"), "test").labels,
                       w100["test"][1])  # fmt: skip


def test_missing_data_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DeepresError) as e:
        load_split("cifar10", "train", data_root=tmp_path)
    assert str(tmp_path) in str(e.value) and "DEEPRES_DATA" in str(e.value)
    with pytest.raises(DeepresError) as e:
        load_split("cifar10-jpeg", "train", data_root=tmp_path)
    assert str(tmp_path / "cifar10-jpeg") in str(e.value) and "--data-root" in str(e.value)
    monkeypatch.setattr(registry_mod, "FASHION_MNIST_DIR", tmp_path / "not-installed")
    with pytest.raises(DeepresError, match="apt-get install -y dataset-fashion-mnist"):
        load_split("fashion-mnist", "train", data_root=tmp_path)
    with pytest.raises(DeepresError, match="neither a known data set"):
        load_split("no-such-set", "train")
    with pytest.raises(DeepresError, match="unknown split"):
        load_split("synthetic", "holdout")


def test_fashion_mnist_under_data_root(tmp_path: Path, idx_folder) -> None:
    written = idx_folder(tmp_path / "fashion-mnist")
    data = load_split("fashion-mnist", "test", data_root=tmp_path)
    assert data.classes == FASHION_MNIST_CLASSES
    assert torch.equal(data.images, written["test"][0])
    plain = load_split(str(tmp_path / "fashion-mnist"), "train")
    assert torch.equal(plain.labels, written["train"][1])


def test_folder_split_mapping_and_subset(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path / "set", splits=("train", "val"), per_class=5)
    test = load_split(str(tmp_path / "set"), "test")  # no test/ -> val/
    assert isinstance(test, TensorData) and len(test) == 15
    first = load_split(str(tmp_path / "set"), "train", subset=2)
    assert torch.equal(first.labels, torch.tensor([0, 0, 1, 1, 2, 2]))
    full = load_split(str(tmp_path / "set"), "train")
    assert torch.equal(first.images, full.images[[0, 1, 5, 6, 10, 11]])
    seeded = load_split(str(tmp_path / "set"), "train", subset=2, subset_seed=4)
    again = subset(full, 2, seed=4)
    assert torch.equal(seeded.images, again.images)
    with pytest.raises(DeepresError, match="split folder"):
        load_split(str(tmp_path / "set" / "train"), "train")  # a split, not a root


def test_default_data_root_relative_to_cwd(
    tmp_path: Path, image_tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_tree(tmp_path / "shared" / "data" / "cifar10-jpeg", per_class=2)
    (tmp_path / "main").mkdir()
    monkeypatch.chdir(tmp_path / "main")
    data = load_split("cifar10-jpeg", "test")
    assert isinstance(data, TensorData) and len(data) == 6


def test_dataset_stats_cached(tmp_path: Path, image_tree, monkeypatch, _private_cache) -> None:
    image_tree(tmp_path / "set", per_class=3)
    stats = dataset_stats(str(tmp_path / "set"))
    expected = channel_stats(load_split(str(tmp_path / "set"), "train").images)
    assert stats[0] == pytest.approx(expected[0]) and stats[1] == pytest.approx(expected[1])
    [cached] = _private_cache.glob("stats-*.json")
    assert json.loads(cached.read_text())["mean"] == pytest.approx(list(expected[0]))
    monkeypatch.setattr(registry_mod, "channel_stats", lambda *a: pytest.fail("recomputed"))
    assert dataset_stats(str(tmp_path / "set")) == stats


def test_large_image_folder_is_a_dataset(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path / "big", splits=("train", "val"), per_class=2, size=(72, 72))
    ds = load_split(str(tmp_path / "big"), "val", image_size=48)
    assert isinstance(ds, ImageFolderDataset)
    x, y = ds[0]
    assert x.shape == (3, 48, 48) and y == 0
    # default normalisation = statistics of the train split, streamed over every image
    train_imgs = torch.stack(_raw(tmp_path / "big" / "train"))
    mean, std = channel_stats(train_imgs)
    assert ds.mean == pytest.approx(mean) and ds.std == pytest.approx(std)


def _raw(split: Path) -> list[torch.Tensor]:
    ds = ImageFolderDataset(split, train=False, mean=(0,) * 3, std=(1,) * 3)
    return [ds.load(i) for i in range(len(ds))]


def test_tensor_data_validation() -> None:
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(DeepresError, match="uint8"):
        TensorData(x.float(), torch.zeros(2, dtype=torch.int64), ["a"])
    with pytest.raises(DeepresError, match="labels"):
        TensorData(x, torch.zeros(3, dtype=torch.int64), ["a"])
    with pytest.raises(DeepresError, match="class names"):
        TensorData(x, torch.tensor([0, 1]), ["a"])
    mean, std = channel_stats(torch.tensor([[[[0, 255]]], [[[255, 0]]]], dtype=torch.uint8))
    assert mean == pytest.approx((0.5,)) and std == pytest.approx((0.5,))
