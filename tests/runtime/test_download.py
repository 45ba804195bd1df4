"""Downloads from a real HTTP server on 127.0.0.1 that the test starts: real weight files in
torchvision's format (torch.save, the sha256 prefix in the name) and timm's (safetensors);
wrong hashes, a truncated transfer, a server gone and the mirror setting. No other network."""

from __future__ import annotations

import hashlib
import http.server
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torchvision
from local_server import TIMEOUT, FileServer, serving

from deepres.errors import DeepresError
from deepres.models import create_model, load_pretrained, read_state_dict
from deepres.models.pretrained import resolve_pretrained
from deepres.runtime.download import (
    MIRROR_ENV,
    Expected,
    cache_path,
    fetch,
    mirrored,
    split_url,
    weights_cache,
)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPRES_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setenv("no_proxy", "*")  # 127.0.0.1 directly, whatever proxy is set


@pytest.fixture
def server() -> Iterator[FileServer]:
    with serving() as state:
        yield state


@pytest.fixture
def dead_url() -> str:
    """A URL on a port where nothing listens any more (a server started and stopped)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    httpd.server_close()
    return f"http://127.0.0.1:{port}/models/resnet18-00000000.pth"


@pytest.fixture(scope="module")
def torchvision_file() -> tuple[str, bytes, dict[str, torch.Tensor]]:
    """A random-init torchvision ResNet-18 saved as torchvision does, named by its hash."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = buffer.getvalue()
    return f"resnet18-{hashlib.sha256(body).hexdigest()[:8]}.pth", body, state


@pytest.fixture(scope="module")
def timm_file() -> bytes:
    """timm's format: a random-init timm ResNet-18's state dict as safetensors."""
    torch.manual_seed(1)
    state = timm.create_model("resnet18").state_dict()
    return safetensors.torch.save({k: v.contiguous() for k, v in state.items()})


def no_partials() -> bool:
    return not [p for p in weights_cache().rglob("*") if ".part-" in p.name]


def test_the_cache_is_under_deepres_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPRES_CACHE", str(tmp_path))
    assert weights_cache() == tmp_path / "weights"
    monkeypatch.delenv("DEEPRES_CACHE")
    assert weights_cache() == Path.home() / ".cache" / "deepres" / "weights"
    url = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
    assert (
        cache_path(url, tmp_path) == tmp_path / "download.pytorch.org/models/resnet50-11ad3fa6.pth"
    )
    assert cache_path("http://h.org:8080/a/b.pth", tmp_path) == tmp_path / "h.org_8080/a/b.pth"
    with pytest.raises(DeepresError, match="names no file"):
        cache_path("https://h.org/a/b%2F..%2F..%2Fc.pth", tmp_path)


def test_hashes_come_from_the_fragment_or_torchvisions_file_name():
    assert split_url("https://h/x.pth") == ("https://h/x.pth", None)
    assert split_url("https://h/resnet18-f37072fd.pth")[1] == Expected("f37072fd")
    assert split_url(f"https://h/x.bin#sha256={'A' * 64}")[1] == Expected("a" * 64)
    with pytest.raises(DeepresError, match="sha256"):
        split_url("https://h/x.bin#sha256=xyz")
    with pytest.raises(DeepresError, match="only http"):
        fetch("file:///etc/passwd")


def test_download_success_is_cached_and_loads(server, torchvision_file, capsys):
    name, body, state = torchvision_file
    server.files[f"/models/{name}"] = body
    url = server.url(f"/models/{name}")
    path = fetch(url, split_url(url)[1], timeout=TIMEOUT)
    assert path == cache_path(url) and path.read_bytes() == body
    assert fetch(url, split_url(url)[1], timeout=TIMEOUT) == path
    assert server.requests == [f"/models/{name}"]  # the second call used the cache
    assert capsys.readouterr().err == ""  # no progress bar off a terminal
    loaded = read_state_dict(path)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    model = create_model("resnet18")
    load_pretrained(model, resolve_pretrained(url, "resnet18").path)
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])


def test_timm_safetensors_with_a_full_sha256(server, timm_file):
    server.files["/timm/model.safetensors"] = timm_file
    url = server.url("/timm/model.safetensors") + "#sha256=" + hashlib.sha256(timm_file).hexdigest()
    weights = resolve_pretrained(url, "resnet18")
    assert weights.meta["url"] == server.url("/timm/model.safetensors")
    load_pretrained(create_model("resnet18"), weights.path)  # strict but for nothing


def test_a_wrong_hash_is_refused_naming_both_and_nothing_is_kept(server, torchvision_file):
    name, body, _ = torchvision_file
    actual = hashlib.sha256(body).hexdigest()
    server.files["/w/resnet18-0badc0de.pth"] = body
    server.files["/w/plain.pth"] = body
    with pytest.raises(DeepresError, match=f"(?s){actual}.*starting with 0badc0de"):
        fetch(server.url("/w/resnet18-0badc0de.pth"), Expected("0badc0de"), timeout=TIMEOUT)
    wrong = "0" * 64
    with pytest.raises(DeepresError, match=f"(?s){actual}.*{wrong}.*removed"):
        resolve_pretrained(server.url("/w/plain.pth") + f"#sha256={wrong}")
    assert not cache_path(server.url("/w/plain.pth")).exists() and no_partials()


def test_a_cached_file_with_a_wrong_hash_is_refused_and_removed(server, tmp_path):
    url = server.url("/w/resnet18-12345678.pth")
    path = cache_path(url)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the file")
    with pytest.raises(DeepresError, match="starting with 12345678"):
        fetch(url, Expected("12345678"), timeout=TIMEOUT)
    assert not path.exists()


def test_a_truncated_transfer_leaves_no_file_and_a_second_try_succeeds(server, torchvision_file):
    name, body, _ = torchvision_file
    server.files[f"/t/{name}"] = body
    server.truncate.add(f"/t/{name}")
    url = server.url(f"/t/{name}")
    with pytest.raises(DeepresError, match="short of the announced length"):
        fetch(url, timeout=TIMEOUT)  # no hash to catch it: the length does
    assert not cache_path(url).exists() and no_partials()
    assert fetch(url, split_url(url)[1], timeout=TIMEOUT).read_bytes() == body


def test_a_stale_partial_file_is_not_used(server, torchvision_file):
    name, body, _ = torchvision_file
    server.files[f"/s/{name}"] = body
    url = server.url(f"/s/{name}")
    stale = cache_path(url).with_name(f"{name}.part-999999999")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(body[:100])
    assert fetch(url, split_url(url)[1], timeout=TIMEOUT).read_bytes() == body
    assert no_partials()


def test_the_server_gone_names_the_url_and_the_manual_path(dead_url, torchvision_file):
    manual = cache_path(dead_url)
    with pytest.raises(DeepresError) as err:
        fetch(dead_url, timeout=TIMEOUT)
    assert dead_url in str(err.value) and str(manual) in str(err.value)
    assert not manual.exists() and no_partials()
    manual.write_bytes(torchvision_file[1])  # put there by hand: used as it is
    assert fetch(dead_url, timeout=TIMEOUT) == manual


def test_the_mirror_replaces_the_host(server, dead_url, torchvision_file, monkeypatch):
    name, body, _ = torchvision_file
    server.files[f"/mirror/models/{name}"] = body
    url = dead_url.replace("resnet18-00000000.pth", name)
    monkeypatch.setenv(MIRROR_ENV, server.url("/mirror/"))
    assert mirrored(url) == server.url(f"/mirror/models/{name}")
    assert mirrored("https://a.org/x.pth?v=1") == server.url("/mirror/x.pth?v=1")
    path = fetch(url, split_url(url)[1], timeout=TIMEOUT)
    assert path == cache_path(url) and path.read_bytes() == body  # cached under the original
    assert server.requests == [f"/mirror/models/{name}"]
    monkeypatch.setenv(MIRROR_ENV, "ftp://nowhere")
    with pytest.raises(DeepresError, match=MIRROR_ENV):
        mirrored(url)


def test_a_failure_through_the_mirror_names_both_urls(server, dead_url, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, server.url("/empty"))
    with pytest.raises(DeepresError, match=r"(?s)HTTP 404.*put it at") as err:
        fetch(dead_url, timeout=TIMEOUT)
    assert dead_url in str(err.value) and server.url("/empty/models/") in str(err.value)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_on_a_terminal_only(server, timm_file, monkeypatch):
    server.files["/p/model.safetensors"] = timm_file
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fetch(server.url("/p/model.safetensors"), timeout=TIMEOUT)
    assert "model.safetensors" in terminal.getvalue() and "100%" in terminal.getvalue()


def test_redirects_are_followed_to_http_only(server, timm_file):
    server.files["/new/model.safetensors"] = timm_file
    server.redirects["/old/model.safetensors"] = server.url("/new/model.safetensors")
    server.redirects["/ftp/model.safetensors"] = "ftp://127.0.0.1/model.safetensors"
    path = fetch(server.url("/old/model.safetensors"), timeout=TIMEOUT)
    assert path.read_bytes() == timm_file
    with pytest.raises(DeepresError, match="redirect to ftp://"):
        fetch(server.url("/ftp/model.safetensors"), timeout=TIMEOUT)
    assert no_partials()
