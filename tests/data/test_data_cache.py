"""deepres.data.cache: the decoded images of an image folder on disk - hits, invalidation,
damaged or foreign files, the file format, and writes that are whole or absent."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from deepres.data import folder as folder_mod
from deepres.data import folder_cache_file, load_folder_tensors, scan_folder
from deepres.runtime import faults


def _no_decoding(*args, **kwargs):
    raise AssertionError("decoded although the cache is valid")


def test_cache_hit_and_invalidation(
    tmp_path: Path, image_tree, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    image_tree(tmp_path, splits=("train",), per_class=3)
    split = tmp_path / "train"
    first = load_folder_tensors(split)
    cache_file = folder_cache_file(split)
    assert cache_file.is_file() and cache_file.parent == tmp_path / "cache"

    monkeypatch.setattr(folder_mod, "decode_folder", _no_decoding)
    with caplog.at_level(logging.INFO, logger="deepres.data"):
        second = load_folder_tensors(split)
    assert "from cache" in caplog.text
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.classes == first.classes

    changed = split / "cat" / "001.png"
    Image.new("RGB", (32, 32), (9, 9, 9)).save(changed)
    os.utime(changed, ns=(1, 1_000_000_000))  # new content and mtime -> new key
    assert folder_cache_file(split) != cache_file
    with pytest.raises(AssertionError, match="decoded although"):
        load_folder_tensors(split)
    monkeypatch.undo()
    monkeypatch.setenv("DEEPRES_CACHE", str(tmp_path / "cache"))
    third = load_folder_tensors(split)
    assert int(third.images[1].float().mean()) == 9


def test_damaged_cache_is_rebuilt(tmp_path: Path, image_tree, caplog) -> None:
    image_tree(tmp_path, splits=("train",), per_class=2)
    first = load_folder_tensors(tmp_path / "train")
    folder_cache_file(tmp_path / "train").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="deepres.data"):
        again = load_folder_tensors(tmp_path / "train")
    assert "unreadable cache" in caplog.text
    assert torch.equal(first.images, again.images)


def test_the_file_format_is_stable(tmp_path: Path, image_tree, monkeypatch) -> None:
    """safetensors with images, labels and key/classes/source/version metadata: a file in
    that format written by any version (here: by safetensors itself) is read as it is."""
    image_tree(tmp_path, splits=("train",), per_class=2)
    split = tmp_path / "train"
    data = load_folder_tensors(split)
    path = folder_cache_file(split)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == ["images", "labels"]
    assert meta["key"] == scan_folder(split).key() and meta["version"] == "1"
    assert json.loads(meta["classes"]) == ["cat", "dog", "emu"] and meta["source"] == str(split)
    path.unlink()
    save_file({"images": data.images.flip(0).contiguous(), "labels": data.labels}, path, meta)
    monkeypatch.setattr(folder_mod, "decode_folder", _no_decoding)
    assert torch.equal(load_folder_tensors(split).images, data.images.flip(0))


def test_a_file_for_another_key_is_not_taken(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path, splits=("train",), per_class=2)
    split = tmp_path / "train"
    data = load_folder_tensors(split)
    path = folder_cache_file(split)
    meta = {"key": "someone-else", "classes": json.dumps(data.classes), "version": "1"}
    save_file({"images": torch.zeros_like(data.images), "labels": data.labels}, path, meta)
    assert torch.equal(load_folder_tensors(split).images, data.images)


def test_a_failed_write_leaves_no_file(tmp_path: Path, image_tree, monkeypatch, caplog) -> None:
    """The cache writes through atomic_write: a full disk (DEEPRES_FAULT=write:1:enospc) is a
    warning, an exception at that moment (:raise) leaves no partial file behind either."""
    image_tree(tmp_path, splits=("train",), per_class=2)
    split, cache = tmp_path / "train", tmp_path / "cache"
    for action in ("enospc", "raise"):
        monkeypatch.setattr(faults, "_passes", Counter())
        monkeypatch.setenv("DEEPRES_FAULT", f"write:1:{action}")
        if action == "enospc":
            with caplog.at_level(logging.WARNING, logger="deepres.data"):
                assert len(load_folder_tensors(split)) == 6
            assert "could not write cache file" in caplog.text
        else:
            with pytest.raises(RuntimeError, match="injected failure at write"):
                load_folder_tensors(split)
        assert list(cache.iterdir()) == []
    monkeypatch.delenv("DEEPRES_FAULT")
    load_folder_tensors(split)
    assert [p.name for p in cache.iterdir()] == [folder_cache_file(split).name]


def test_a_killed_writer_leaves_nothing_a_read_takes(tmp_path: Path, image_tree) -> None:
    """SIGKILL after the temporary file is complete, before it is renamed: the cache file
    does not exist, and the next load decodes again instead of reading the temporary."""
    image_tree(tmp_path, splits=("train",), per_class=2)
    split, cache = tmp_path / "train", tmp_path / "cache"
    code = "import sys\nfrom deepres.data import load_folder_tensors as load\nload(sys.argv[1])"
    env = {**os.environ, "DEEPRES_FAULT": "write:1:kill", "DEEPRES_CACHE": str(cache)}
    env.pop("TORCHELASTIC_RESTART_COUNT", None)
    done = subprocess.run([sys.executable, "-c", code, str(split)], env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    path = folder_cache_file(split)
    assert not path.exists()
    [left] = [p.name for p in cache.iterdir()]  # the killed writer's complete temporary
    assert left.startswith(f".{path.name}.tmp-")
    expected = load_folder_tensors(split, use_cache=False)
    assert torch.equal(load_folder_tensors(split).images, expected.images) and path.is_file()
