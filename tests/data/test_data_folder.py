"""deepres.data.folder: an image folder's two modes, in memory (`load_folder_tensors`) and
per image (`ImageFolderDataset`), on made-up and real folders. The parts are tested in
test_data_index, test_data_decode, test_data_cache, test_data_transforms, test_data_stats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepres.data import ImageFolderDataset, load_folder_tensors, load_split, scan_folder

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO / ".." / "shared" / "data"  # read in place, relative to the repo root
# torchvision 0.29 deprecates its image decoders (superseded by torchcodec); still works.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
CIFAR10_CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()


def _rgb(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


def test_modes_extensions_and_order(tmp_path: Path, image_tree) -> None:
    files = image_tree(tmp_path, splits=("train",), per_class=3)
    d = tmp_path / "train" / "dog"
    gray = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    Image.fromarray(gray, "L").save(d / "gray.png")
    rgba = np.random.default_rng(1).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(d / "alpha.PNG")  # upper-case extension
    Image.fromarray(rgba[..., :3].copy()).save(d / "bitmap.Bmp", "BMP")  # PIL fallback path
    Image.fromarray(rgba[..., :3].copy()).save(d / "lossy.JPEG", "JPEG")
    (d / "notes.txt").write_text("not an image, ignored")
    (d / ".hidden.png").write_bytes(b"ignored")
    data = load_folder_tensors(tmp_path / "train")
    assert data.classes == ["cat", "dog", "emu"]
    assert data.images.shape == (13, 3, 32, 32)
    index = scan_folder(tmp_path / "train")
    names = [Path(f).name for f in index.files]
    assert names[3:8] == ["000.png", "001.png", "002.png", "alpha.PNG", "bitmap.Bmp"]
    assert data.labels.tolist() == [0] * 3 + [1] * 7 + [2] * 3
    for i, f in enumerate(index.files):
        if not f.endswith(".JPEG"):  # lossless files decode exactly as PIL sees them in RGB
            assert torch.equal(data.images[i], _rgb(Path(f))), f
    g = data.images[names.index("gray.png")]
    assert torch.equal(g[0], g[1]) and torch.equal(g[0], torch.from_numpy(gray))
    assert files["train"][0][1] == 0


def test_dataset_mode_transforms(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train", "val"), per_class=2, size=(96, 80), fmt="JPEG")
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    train = ImageFolderDataset(tmp_path / "train", train=True, mean=mean, std=std, size=64)
    x, y = train[3]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and y == 1
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    paper = ImageFolderDataset(
        tmp_path / "train", train=True, mean=mean, std=std, size=64, train_crop="scale-256-480"
    )
    assert paper[0][0].shape == (3, 64, 64)
    ev = ImageFolderDataset(tmp_path / "val", train=False, mean=(0.5,) * 3, std=(0.5,) * 3, size=64)
    assert ev[0][0].shape == (3, 64, 64)
    assert torch.equal(ev[0][0], ev[0][0])  # eval is deterministic
    ten = ImageFolderDataset(
        tmp_path / "val", train=False, mean=mean, std=std, size=64, ten_crop=True
    )
    crops, _ = ten[0]
    assert crops.shape == (10, 3, 64, 64)
    assert torch.equal(crops[5], crops[1].flip(-1))  # mirrored top-left = flipped top-right
    via_split = load_split(str(tmp_path), "test", stats=(mean, std), image_size=64)
    assert isinstance(via_split, ImageFolderDataset) and via_split.root.name == "val"


# --------------------------------------------------------------------------- real data

CIFAR_JPEG = SHARED_DATA / "cifar10-jpeg"
IMAGENETTE = SHARED_DATA / "imagenette-224"


@pytest.mark.skipif(not CIFAR_JPEG.is_dir(), reason=f"{CIFAR_JPEG} not present")
def test_real_cifar10_jpeg_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    data = load_split("cifar10-jpeg", "test", subset=4)  # found via ../shared/data
    assert data.classes == CIFAR10_CLASSES
    assert data.images.shape == (40, 3, 32, 32)
    assert torch.equal(data.labels.bincount(), torch.full((10,), 4))
    seeded = load_split(
        str(Path("..") / "shared" / "data" / "cifar10-jpeg"), "test", subset=4, subset_seed=1
    )
    assert seeded.images.shape == (40, 3, 32, 32)
    assert not torch.equal(seeded.images, data.images)
    assert float(data.images.float().std()) > 20  # real pictures, not blank


@pytest.mark.skipif(not IMAGENETTE.is_dir(), reason=f"{IMAGENETTE} not present")
def test_real_imagenette_dataset() -> None:
    stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    ds = load_split("imagenette-224", "test", data_root=SHARED_DATA, subset=1, stats=stats)
    assert isinstance(ds, ImageFolderDataset) and len(ds) == 10
    assert ds.root.name == "val"
    x, y = ds[0]
    assert x.shape == (3, 224, 224) and y == 0
    tr = load_split(
        "imagenette-224", "train", data_root=SHARED_DATA, subset=1, stats=stats, image_size=128
    )
    assert tr[9][0].shape == (3, 128, 128) and tr[9][1] == 9
