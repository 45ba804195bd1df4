"""deepres.data.stats: per-channel statistics streamed over an image folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepres.data import channel_stats
from deepres.data.decode import decode_folder
from deepres.data.index import scan_folder
from deepres.data.stats import folder_stats
from deepres.errors import DeepresError


def test_folder_stats_match_the_in_memory_ones(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=3)
    index = scan_folder(tmp_path / "train")
    mean, std = folder_stats(index, num_threads=2)
    expected = channel_stats(decode_folder(index).images)
    assert mean == pytest.approx(expected[0]) and std == pytest.approx(expected[1])


def test_folder_stats_name_bad_files(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=2)
    bad = tmp_path / "train" / "cat" / "zz.png"
    bad.write_bytes(b"junk")
    with pytest.raises(DeepresError, match="1 file") as e:
        folder_stats(scan_folder(tmp_path / "train"))
    assert str(bad) in str(e.value)
