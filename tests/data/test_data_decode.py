"""deepres.data.decode: bytes to RGB tensors, bad files named, threaded folder decoding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepres.data import ImageFolderDataset, load_folder_tensors
from deepres.data.decode import decode_folder, decode_rgb
from deepres.data.index import scan_folder
from deepres.errors import DeepresError

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def _encoded(arr: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, fmt)
    return buf.getvalue()


def test_modes_are_converted_to_rgb() -> None:
    gray = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    g = decode_rgb(_encoded(gray, "PNG", "L"), "gray.png")
    assert g.shape == (3, 16, 16) and g.dtype == torch.uint8
    assert torch.equal(g[0], torch.from_numpy(gray)) and torch.equal(g[0], g[2])
    rgba = np.random.default_rng(1).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    a = decode_rgb(_encoded(rgba, "PNG", "RGBA"), "alpha.png")
    assert torch.equal(a, torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1))
    jpeg = decode_rgb(_encoded(rgba[..., :3].copy(), "JPEG"), "lossy.jpg")
    assert jpeg.shape == (3, 16, 16) and jpeg.dtype == torch.uint8


def test_empty_and_unreadable_bytes_are_named() -> None:
    with pytest.raises(DeepresError, match="empty.png: empty file"):
        decode_rgb(b"", "empty.png")
    with pytest.raises(DeepresError, match="junk.jpg: not a readable image"):
        decode_rgb(b"\xff\xd8 not really a jpeg", "junk.jpg")


@pytest.mark.parametrize("content", [b"this is not an image", b"\xff\xd8\xff\xe0 truncated"])
def test_corrupt_jpg_is_named(tmp_path: Path, image_tree, content: bytes) -> None:
    image_tree(tmp_path, splits=("train",), per_class=2, fmt="JPEG")
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(content)
    with pytest.raises(DeepresError) as e:
        load_folder_tensors(tmp_path / "train")
    assert str(bad) in str(e.value) and "1 file(s)" in str(e.value)
    ds = ImageFolderDataset(tmp_path / "train", train=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    i = [Path(f).name for f in ds.index.files].index("broken.jpg")
    with pytest.raises(DeepresError, match=str(bad)):
        ds[i]


def test_mixed_sizes_rejected(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=2)
    odd = tmp_path / "train" / "emu" / "wide.png"
    Image.new("RGB", (40, 32)).save(odd)
    with pytest.raises(DeepresError, match="share one size") as e:
        decode_folder(scan_folder(tmp_path / "train"))
    assert str(odd) in str(e.value)


def test_many_bad_files_are_listed_up_to_ten(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=1)
    for i in range(12):
        (tmp_path / "train" / "dog" / f"bad{i:02d}.png").write_bytes(b"junk")
    with pytest.raises(DeepresError, match=r"12 file\(s\).*; and 2 more\. Replace"):
        decode_folder(scan_folder(tmp_path / "train"), num_threads=2)


def test_threads_and_chunks_keep_the_order(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=100, size=(8, 8))  # 300 > one chunk
    index = scan_folder(tmp_path / "train")
    data = decode_folder(index, num_threads=3)
    assert data.images.shape == (300, 3, 8, 8) and data.labels.tolist() == index.labels
    for i in (0, 255, 256, 299):
        assert torch.equal(data.images[i], decode_rgb(Path(index.files[i]).read_bytes(), ""))
