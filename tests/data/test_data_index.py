"""deepres.data.index: scanning an image folder into classes, files, labels and entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepres.data.index import max_image_side, scan_folder
from deepres.errors import DeepresError


def test_classes_files_and_order(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=2)
    d = tmp_path / "train" / "dog"
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(d / "alpha.PNG")  # upper-case extension
    (d / "notes.txt").write_text("not an image, ignored")
    (d / ".hidden.png").write_bytes(b"ignored")
    (tmp_path / "train" / ".git").mkdir()  # hidden folders are no classes
    index = scan_folder(tmp_path / "train")
    assert index.classes == ["cat", "dog", "emu"] and len(index) == 7
    assert [Path(f).name for f in index.files][2:5] == ["000.png", "001.png", "alpha.PNG"]
    assert index.labels == [0, 0, 1, 1, 1, 2, 2]
    rel, size, mtime = index.entries[4]
    assert rel == "dog/alpha.PNG" and size == (d / "alpha.PNG").stat().st_size and mtime > 0


def test_empty_or_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DeepresError, match="not found"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "a" / "cls").mkdir(parents=True)
    with pytest.raises(DeepresError, match="no image files"):
        scan_folder(tmp_path / "a")
    with pytest.raises(DeepresError, match="no class folders"):
        scan_folder(tmp_path / "a" / "cls")


def test_subset_keeps_k_per_class_in_order(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=4)
    index = scan_folder(tmp_path / "train")
    first = index.subset(2)
    assert first.labels == [0, 0, 1, 1, 2, 2]
    assert [Path(f).name for f in first.files[:2]] == ["000.png", "001.png"]
    seeded = index.subset(2, seed=3)
    assert seeded.labels == first.labels and seeded.files == sorted(seeded.files)
    assert [e[0] for e in seeded.entries] == [
        str(Path(f).relative_to(index.root).as_posix()) for f in seeded.files
    ]


def test_max_image_side_reads_headers(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=1, size=(40, 24))
    assert max_image_side(scan_folder(tmp_path / "train")) == 40
    bad = tmp_path / "train" / "cat" / "000.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DeepresError, match="000.png: not a readable image"):
        max_image_side(scan_folder(tmp_path / "train"))
