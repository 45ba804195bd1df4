"""Official CIFAR formats: pickle batches (restricted unpickler), binary batches, download."""

from __future__ import annotations

import builtins
import codecs
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import pytest
import torch

from deepres.data import cifar
from deepres.data.cifar import (
    download_cifar,
    read_cifar,
    read_cifar_binary,
    read_cifar_python,
    safe_extract,
)
from deepres.errors import DeepresError


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_cifar10_python_roundtrip(tmp_path: Path, cifar_python, protocol: int) -> None:
    written = cifar_python(tmp_path, "cifar10", protocol=protocol)
    for split in ("train", "test"):
        data = read_cifar_python(tmp_path / "cifar-10-batches-py", "cifar10", split)
        assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 32, 32)
        assert torch.equal(data.images, written[split][0])
        assert torch.equal(data.labels, written[split][1])
        assert data.classes[0] == "airplane" and len(data.classes) == 10
    assert len(read_cifar(tmp_path, "cifar10", "train")) == 30


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar100_python_fine_and_coarse(tmp_path: Path, cifar_python, protocol: int) -> None:
    written = cifar_python(tmp_path, "cifar100", protocol=protocol)
    folder = tmp_path / "cifar-100-python"
    fine = read_cifar_python(folder, "cifar100", "test")
    assert torch.equal(fine.images, written["test"][0])
    assert torch.equal(fine.labels, written["test"][1])
    assert len(fine.classes) == 100 and fine.classes[3] == "fine3"
    coarse = read_cifar_python(folder, "cifar100", "train", coarse=True)
    assert torch.equal(coarse.labels, written["train"][1] // 5)
    assert len(coarse.classes) == 20


def test_cifar_binary_roundtrip(tmp_path: Path, cifar_binary) -> None:
    w10 = cifar_binary(tmp_path, "cifar10")
    w100 = cifar_binary(tmp_path, "cifar100")
    for split in ("train", "test"):
        d10 = read_cifar(tmp_path, "cifar10", split)
        assert torch.equal(d10.images, w10[split][0])
        assert torch.equal(d10.labels, w10[split][1])
        d100 = read_cifar_binary(tmp_path / "cifar-100-binary", "cifar100", split)
        assert torch.equal(d100.images, w100[split][0])
        assert torch.equal(d100.labels, w100[split][1])
    assert d10.classes[-1] == "truck" and len(d10.classes) == 10  # trailing blank lines dropped
    coarse = read_cifar_binary(tmp_path / "cifar-100-binary", "cifar100", "test", coarse=True)
    assert torch.equal(coarse.labels, w100["test"][1] // 5)


@pytest.mark.parametrize("cut", [1, 3073, 5000])
def test_truncated_binary_names_the_file(tmp_path: Path, cifar_binary, cut: int) -> None:
    cifar_binary(tmp_path, "cifar10")
    bad = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) - cut] if cut < len(raw) else b"")
    if cut == 3073:  # one whole record fewer is still a valid file
        assert len(read_cifar(tmp_path, "cifar10", "train")) == 29
        return
    with pytest.raises(DeepresError, match="data_batch_3.bin") as e:
        read_cifar(tmp_path, "cifar10", "train")
    assert "truncated" in str(e.value) and "3073" in str(e.value)


def test_cifar100_binary_record_size(tmp_path: Path, cifar_binary) -> None:
    cifar_binary(tmp_path, "cifar100")
    f = tmp_path / "cifar-100-binary" / "test.bin"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DeepresError, match="3074"):
        read_cifar(tmp_path, "cifar100", "test")


def test_missing_batch_and_folder(tmp_path: Path, cifar_python) -> None:
    with pytest.raises(DeepresError, match="download_cifar"):
        read_cifar(tmp_path, "cifar10", "train")
    cifar_python(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DeepresError, match="data_batch_4"):
        read_cifar(tmp_path, "cifar10", "train")


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the attack: os.system at load time
        return (os.system, (f"touch {self.marker}",))


class _OpensFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the attack: open(marker, 'w') at load time
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("attack", [_RunsCommand, _OpensFile])
def test_malicious_pickle_is_refused(tmp_path: Path, cifar_python, attack: type) -> None:
    cifar_python(tmp_path, "cifar10")
    marker = tmp_path / "pwned"
    evil = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    payload = {b"labels": [0], b"data": attack(marker), b"batch_label": b"x"}
    evil.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DeepresError) as e:
        read_cifar(tmp_path, "cifar10", "train")
    assert str(evil) in str(e.value)
    assert "refused" in str(e.value)
    assert ("system" in str(e.value)) or ("open" in str(e.value))
    assert not marker.exists()


def test_codecs_only_latin1(tmp_path: Path) -> None:
    class Rot13:
        def __reduce__(self):  # noqa: ANN204
            return (codecs.encode, ("secret", "rot13"))

    f = tmp_path / "batches.meta"
    f.write_bytes(pickle.dumps({b"label_names": Rot13()}, protocol=2))
    with pytest.raises(DeepresError, match="batches.meta"):
        cifar.load_pickle_dict(f)


def test_garbage_pickle_and_wrong_content(tmp_path: Path, cifar_python) -> None:
    cifar_python(tmp_path, "cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(DeepresError, match="test_batch"):
        read_cifar(tmp_path, "cifar10", "test")
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [1], b"data": [1, 2]}))
    with pytest.raises(DeepresError, match="uint8"):
        read_cifar(tmp_path, "cifar10", "test")


# --------------------------------------------------------------------------- archives


def _tar(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/deepres-abs-escape.txt", "a/../../x"])
def test_safe_extract_rejects_escaping_members(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / "a.tar.gz", {"ok/file.txt": b"1", name: b"evil"})
    with pytest.raises(DeepresError, match="outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out").exists()


def test_safe_extract_rejects_links_and_extracts_good(tmp_path: Path) -> None:
    bad = _tar(tmp_path / "b.tar.gz", {"x.txt": b"1"}, link="cifar-10-batches-py/passwd")
    with pytest.raises(DeepresError, match="link"):
        safe_extract(bad, tmp_path / "out")
    good = _tar(tmp_path / "g.tar.gz", {"d/x.txt": b"hello"})
    safe_extract(good, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "x.txt").read_bytes() == b"hello"


@pytest.fixture
def http_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real HTTP server on 127.0.0.1 (a free port) serving the files of a folder: yields
    (folder, base URL, the paths requested so far)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    folder = tmp_path / "www"
    folder.mkdir()
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=60)


def test_download_checks_md5_and_extracts(
    tmp_path: Path, cifar_python, http_folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """download_cifar from a real HTTP server on 127.0.0.1 serving a small CIFAR-10 archive
    in the official layout, written here (the tests stay offline)."""
    www, base, requested = http_folder
    src = tmp_path / "src"
    written = cifar_python(src, "cifar10")
    archive = www / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    blob = archive.read_bytes()
    url = f"{base}/cifar-10-python.tar.gz"

    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", (url, "0" * 32))
    with pytest.raises(DeepresError, match="md5"):
        download_cifar(tmp_path / "dl", "cifar10")
    assert not (tmp_path / "dl" / "cifar-10-python.tar.gz").exists()
    assert requested == ["/cifar-10-python.tar.gz"]

    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", (url, hashlib.md5(blob).hexdigest()))
    folder = download_cifar(tmp_path / "dl", "cifar10")
    assert folder == tmp_path / "dl" / "cifar-10-batches-py"
    assert len(requested) == 2 and (tmp_path / "dl" / "cifar-10-python.tar.gz").read_bytes() == blob
    test = read_cifar(tmp_path / "dl", "cifar10", "test")
    assert len(test) == 6
    assert torch.equal(test.images, written["test"][0]) and torch.equal(
        test.labels, written["test"][1]
    )
    assert download_cifar(tmp_path / "dl", "cifar10") == folder and len(requested) == 2  # kept

    missing = f"{base}/no-such-archive.tar.gz"  # the server answers 404
    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", (missing, hashlib.md5(blob).hexdigest()))
    with pytest.raises(DeepresError, match="downloading .*no-such-archive.tar.gz.* failed"):
        download_cifar(tmp_path / "dl404", "cifar10")
    assert requested[-1] == "/no-such-archive.tar.gz"
