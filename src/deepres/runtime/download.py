"""Weight files downloaded once, checked, and kept in a cache.

- The cache is ``$DEEPRES_CACHE/weights`` (default ``~/.cache/deepres/weights``), not
  torch's hub folder. A URL's file lives at ``<cache>/<host>[_<port>]/<path of the URL>``, e.g.
  ``~/.cache/deepres/weights/download.pytorch.org/models/resnet50-11ad3fa6.pth``: with no
  network, a file put there by hand is used (and hash-checked like a download).
- A download streams into ``<file>.part-<pid>`` in the same folder; it is renamed to the
  file only once the whole body has arrived and its sha256 matches. A partial file is never
  used; an interrupted or refused download leaves no file, and the next try starts afresh.
- A wrong sha256 is refused naming both hashes, and the downloaded file is removed. A hash
  is a full sha256 (``url#sha256=HEX``) or, as in torchvision's file names
  (``name-<first hex digits of the sha256>.pth``), a prefix of at least 8 digits.
- ``DEEPRES_WEIGHTS_MIRROR=http[s]://host[:port][/path]`` replaces the scheme, host and port
  of every URL by the mirror's, and puts the mirror's path in front of the URL's path:
  ``https://download.pytorch.org/models/x.pth`` with mirror ``http://m.local:8080/pt`` is
  fetched from ``http://m.local:8080/pt/models/x.pth``. The cache path stays that of the
  original URL, so a cache filled through a mirror serves the original names too.
- A progress bar is drawn on stderr when stderr is a terminal, and never otherwise.

Only ``http``/``https`` URLs are fetched (``urllib.request``). Nothing here reads the files:
see ``deepres.models.weights.read_state_dict`` (safetensors, or ``weights_only`` torch files).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deepres.errors import DeepresError, first_line

CACHE_ENV = "DEEPRES_CACHE"
MIRROR_ENV = "DEEPRES_WEIGHTS_MIRROR"
CHUNK = 1 << 20
TIMEOUT_S = 30.0
_HEX = re.compile(r"[0-9a-f]+")
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")  # torchvision's convention
_SAFE_PART = re.compile(r"[^A-Za-z0-9._+=@,-]")


@dataclass(frozen=True)
class Expected:
    """The hash a file must have: a full sha256, or a prefix of one (8+ hex digits)."""

    sha256: str

    def __post_init__(self) -> None:
        if not (8 <= len(self.sha256) <= 64 and _HEX.fullmatch(self.sha256)):
            raise DeepresError(
                f"bad sha256 {self.sha256!r}: give 8 to 64 lower-case hex digits (a full "
                "sha256 has 64)"
            )

    def matches(self, digest: str) -> bool:
        return digest.startswith(self.sha256)

    def describe(self) -> str:
        full = len(self.sha256) == 64
        return self.sha256 if full else f"a hash starting with {self.sha256}"


def weights_cache() -> Path:
    """The folder of downloaded weights: ``$DEEPRES_CACHE/weights``, default
    ``~/.cache/deepres/weights``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "deepres"
    return Path(root).expanduser() / "weights"


def split_url(spec: str) -> tuple[str, Expected | None]:
    """``URL#sha256=HEX`` -> (URL, its hash); a bare URL whose file name follows torchvision's
    ``name-<hex prefix of sha256>.ext`` gets that prefix; else no hash."""
    url, _, fragment = spec.partition("#")
    if fragment:
        key, _, value = fragment.partition("=")
        if key != "sha256" or not value:
            raise DeepresError(f"{spec}: the only URL fragment understood is #sha256=HEX")
        return url, Expected(value.lower())
    match = _HASH_IN_NAME.search(urllib.parse.urlsplit(url).path)
    return url, Expected(match[1]) if match else None


def cache_path(url: str, cache: Path | None = None) -> Path:
    """Where ``url``'s file is kept: ``<cache>/<host>[_<port>]/<URL path>`` (odd characters
    -> ``_``; a ``.`` or ``..`` part is refused)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeepresError(f"{url}: only http:// and https:// URLs can be downloaded")
    host = parts.hostname + (f"_{parts.port}" if parts.port else "")
    names = [host] + [p for p in urllib.parse.unquote(parts.path).split("/") if p]
    names = [_SAFE_PART.sub("_", n) for n in names]
    if len(names) < 2 or any(n in (".", "..") for n in names):
        raise DeepresError(f"{url}: the URL names no file")
    return (cache or weights_cache()).joinpath(*names)


def mirrored(url: str) -> str:
    """``url`` with its scheme and host replaced by ``$DEEPRES_WEIGHTS_MIRROR`` (when set),
    whose path goes in front of the URL's path; query and fragment are kept."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    base = urllib.parse.urlsplit(mirror)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise DeepresError(
            f"{MIRROR_ENV}={mirror!r}: give a URL such as https://mirror.example.com/weights"
        )
    parts = urllib.parse.urlsplit(url)
    path = base.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def fetch(url: str, expected: Expected | None = None, *, timeout: float = TIMEOUT_S) -> Path:
    """The cached file of ``url`` (downloaded first if missing), its hash checked against
    ``expected`` when given. See the module docstring for the cache, mirror and errors."""
    dest = cache_path(url)
    if dest.is_file():
        if expected is not None:
            check_file(dest, expected, url)
        return dest
    source = mirrored(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest)
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    try:
        label = source if source == url else f"{source} (the mirror of {url})"
        digest = _download(source, part, timeout, label, manual=dest)
        if expected is not None and not expected.matches(digest):
            raise DeepresError(
                f"{label}: the downloaded file's sha256 is {digest}, but {expected.describe()} "
                "was expected; it was removed. The server or a proxy sent another file."
            )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    _fsync_folder(dest.parent)
    return dest


def check_file(path: Path, expected: Expected, url: str) -> None:
    """Refuse (and remove) a cached file whose sha256 is not ``expected``."""
    digest = sha256_of(path)
    if not expected.matches(digest):
        path.unlink(missing_ok=True)
        raise DeepresError(
            f"{path} (the cached copy of {url}) has sha256 {digest}, but {expected.describe()} "
            "was expected; it was removed: run again to download it afresh"
        )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only (urllib would follow ftp:// too)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(url: str, part: Path, timeout: float, label: str, manual: Path) -> str:
    """Stream ``url`` into ``part`` (fsynced); its sha256. Any failure -> DeepresError."""
    h = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "deepres"})
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        with opener.open(request, timeout=timeout) as response, open(part, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = _copy(response, f, h, total, Path(urllib.parse.urlsplit(url).path).name)
            if total is not None and done != total:
                raise http.client.IncompleteRead(b"", total - done)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, http.client.HTTPException) as err:
        raise DeepresError(_failure(label, err, manual)) from None
    return h.hexdigest()


def _copy(source: IO[bytes], f: IO[bytes], h: hashlib._Hash, total: int | None, name: str) -> int:
    """Copy in chunks, hashing, with a progress bar on a terminal; the byte count."""
    bar = _Progress(name, total) if sys.stderr.isatty() else None
    done = 0
    try:
        while block := source.read(CHUNK):
            f.write(block)
            h.update(block)
            done += len(block)
            if bar:
                bar.update(done)
    finally:
        if bar:
            bar.close()
    return done


def _failure(url: str, err: BaseException, manual: Path) -> str:
    if isinstance(err, http.client.IncompleteRead):
        why = f"the transfer stopped {err.expected} bytes short of the announced length"
    elif isinstance(err, urllib.error.HTTPError):
        why = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, urllib.error.URLError):
        why = str(err.reason)
    else:
        why = first_line(err)
    return (
        f"cannot download {url}: {why}. Nothing was kept; running again starts afresh. "
        f"Without network access, download that file elsewhere and put it at {manual} "
        f"(or set {MIRROR_ENV} to a server that has it)."
    )


def _remove_stale_parts(dest: Path) -> None:
    """Delete ``.part-<pid>`` files of ``dest`` left by processes that no longer run."""
    for part in dest.parent.glob(f"{glob_escape(dest.name)}.part-*"):
        pid = part.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            part.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Progress:
    """``name  42%  12.0/28.5 MiB`` redrawn on one stderr line."""

    def __init__(self, name: str, total: int | None) -> None:
        self.name, self.total, self.shown = name, total, -1

    def update(self, done: int) -> None:
        mib = done / 2**20
        if self.total:
            percent = 100 * done // self.total
            if percent == self.shown:
                return
            self.shown = percent
            bar = "#" * (percent // 4)
            text = f"{self.name}  [{bar:<25}] {percent:3d}%  {mib:.1f}/{self.total / 2**20:.1f} MiB"
        else:
            text = f"{self.name}  {mib:.1f} MiB"
        sys.stderr.write("\r" + text)
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()
