"""Files written whole or not at all, and one writer per folder."""

import pytest

from deepres.errors import DeepresError
from deepres.runtime import RunLock, atomic_write, remove_stale_temporaries


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(DeepresError, match="a.bin: No space left on device"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".state.pt.tmp-123").write_bytes(b"x")
    (tmp_path / "state.pt").write_bytes(b"y")
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_a_second_lock_on_a_folder_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(DeepresError, match="in use by another deepres process"):
            RunLock(tmp_path)
    RunLock(tmp_path).release()  # free again once released
