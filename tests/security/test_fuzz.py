"""Every reader meets hostile bytes: a DeepresError naming the file, never a crash or a hang.

Hypothesis generates truncated, oversized, mis-typed and random inputs for the IDX, CIFAR
(binary and pickle), image, weight-file and training-state readers and for ``predict``.
A read may succeed only where the input is valid by an independent reading of the format
(written here from its specification, or PIL for images), and then must give what that
reading gives; a truncated file must be refused. "Never a hang": each case runs under a
per-case time bound (an alarm in Python code, and a watchdog that ends the process with
every thread's traceback if a C call never returns).
"""

import contextlib
import faulthandler
import gzip
import io
import math
import pickle
import signal
import struct
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deepres import DeepresError
from deepres.checkpoints import load_state, read_meta
from deepres.data import decode_rgb, read_cifar_binary, read_cifar_python, read_idx
from deepres.data.idx import MAX_IDX_BYTES
from deepres.models import read_state_dict

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


CASE_SECONDS = 60  # one case takes milliseconds; only a hang comes near this bound


@contextlib.contextmanager
def bounded(what: str = "the case"):
    """Fail a case that hangs: SIGALRM after CASE_SECONDS raises in Python code; a C call
    that never returns is ended by faulthandler's watchdog (the process exits with every
    thread's traceback) at twice the bound."""

    def hung(signum, frame):
        raise AssertionError(f"{what} hung: no answer within {CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    faulthandler.dump_traceback_later(2 * CASE_SECONDS, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


def expect_clear_error(call, path, valid=None) -> None:
    """The call raises DeepresError whose message names the file, in bounded time. ``valid``:
    for inputs that may be valid, a function of the result that says whether an independent
    reading of the input gives the same; a success is accepted only where it says so (without
    ``valid``, an error is required)."""
    with bounded(f"reading {Path(path).name}"):
        try:
            result = call()
        except DeepresError as err:
            assert Path(path).name in str(err), str(err)
            return
    assert valid is not None, f"{Path(path).name}: read without error, but it is not valid"
    assert valid(result), f"{Path(path).name}: read, but not as the format says"


def idx_by_hand(raw: bytes) -> np.ndarray | None:
    """An unsigned-byte IDX file by its specification (gzip detected by content): magic
    00 00 08 NDIM, NDIM big-endian uint32 sizes, then exactly their product of bytes; None
    when the bytes are not such a file (or exceed the reader's documented size limit)."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] == 0:
        return None
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        return None
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    if math.prod(dims) > MAX_IDX_BYTES or len(body) != math.prod(dims):
        return None
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def same_idx(raw: bytes):
    expected = idx_by_hand(raw)
    if expected is None:
        return None  # not a valid file: an error is required
    return lambda got: got.shape == expected.shape and np.array_equal(got, expected)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- IDX (Fashion-MNIST) -------------------------------------------------------------


def idx_bytes(dims: tuple[int, ...], body: bytes, magic_type: int = 8) -> bytes:
    return bytes([0, 0, magic_type, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


@FUZZ
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_idx_random_bytes(tmp_path, data, gz):
    path = write(tmp_path, "images-idx3-ubyte", gzip.compress(data) if gz else data)
    expect_clear_error(lambda: read_idx(path), path, same_idx(path.read_bytes()))


@FUZZ
@given(
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),
    body=st.binary(max_size=64),
    magic_type=st.sampled_from([8, 9, 0x0D]),
    cut=st.booleans(),
)
def test_idx_headers_that_lie(tmp_path, dims, body, magic_type, cut):
    data = idx_bytes(tuple(dims), body, magic_type)
    path = write(tmp_path, "labels-idx1-ubyte.gz", gzip.compress(data[:-3] if cut else data))
    expect_clear_error(lambda: read_idx(path), path, same_idx(path.read_bytes()))


def test_the_idx_reference_reads_a_valid_file_and_refuses_its_truncation(tmp_path):
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes((2, 3, 4), pixels.tobytes())
    for raw in (data, gzip.compress(data)):
        path = write(tmp_path, "images-idx3-ubyte", raw)
        expect_clear_error(partial(read_idx, path), path, same_idx(raw))
        assert np.array_equal(read_idx(path), pixels)
    for cut in range(len(data)):
        assert idx_by_hand(data[:cut]) is None
        path = write(tmp_path, "cut-idx3-ubyte", data[:cut])
        expect_clear_error(partial(read_idx, path), path, same_idx(data[:cut]))


def test_idx_gzip_bomb_is_refused_without_inflating(tmp_path):
    # 10 GB of zeros claimed by the header, about 10 MB compressed: never decompressed whole.
    header = idx_bytes((100000, 1000, 100), b"")
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb") as f:
        f.write(header)
        f.write(bytes(1 << 20) * 4)  # a truncated body: 4 MiB of the 10 GB
    path = write(tmp_path, "bomb-idx3-ubyte.gz", stream.getvalue())
    with bounded(), pytest.raises(DeepresError, match="bomb-idx3-ubyte.gz"):
        read_idx(path)


# --- CIFAR binary and pickle --------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=8000))
def test_cifar_binary_random_bytes(tmp_path, data):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir(exist_ok=True)
    (folder / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    path = write(folder, "test_batch.bin", data)

    def by_hand(got) -> bool:  # records of 1 label byte (0-9) + 3072 pixel bytes
        if not data or len(data) % 3073:
            return False
        records = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3073)
        labels, pixels = records[:, 0], records[:, 1:].reshape(-1, 3, 32, 32)
        return (
            bool((labels < 10).all())
            and np.array_equal(got.images.numpy(), pixels)
            and (np.array_equal(got.labels.numpy(), labels))
        )

    expect_clear_error(lambda: read_cifar_binary(folder, "cifar10", "test"), path, by_hand)


@FUZZ
@given(
    payload=st.one_of(
        st.binary(max_size=500),
        st.builds(
            lambda obj: pickle.dumps(obj, protocol=2),
            st.recursive(
                st.one_of(st.integers(), st.text(max_size=5), st.binary(max_size=5)),
                lambda c: (
                    st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3)
                ),
                max_leaves=8,
            ),
        ),
    )
)
def test_cifar_pickle_random_payloads(tmp_path, payload):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    path = write(folder, "test_batch", payload)

    def by_hand(got) -> bool:  # a dict of b"data" (N x 3072 bytes) and b"labels" (N, 0-9)
        batch = pickle.loads(payload, encoding="bytes")  # made here from plain types only
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"])
        return np.array_equal(got.images.numpy(), data) and np.array_equal(got.labels, labels)

    expect_clear_error(lambda: read_cifar_python(folder, "cifar10", "test"), path, by_hand)


def test_cifar_pickle_with_wrong_dtype_and_shape(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    )
    batch = {b"data": np.zeros((3, 100), dtype=np.float64), b"labels": [0, 1, 2]}
    write(folder, "test_batch", pickle.dumps(batch, protocol=2))
    with bounded(), pytest.raises(DeepresError, match="test_batch"):
        read_cifar_python(folder, "cifar10", "test")


# --- images ---------------------------------------------------------------------------


def png_bytes(size=(8, 8), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.builds(lambda cut: png_bytes()[:cut], st.integers(0, 60)),
        st.builds(lambda junk: b"\xff\xd8\xff\xe0" + junk, st.binary(max_size=200)),  # JPEG head
        st.builds(lambda junk: b"GIF89a" + junk, st.binary(max_size=100)),
    )
)
def test_image_decoder_random_and_truncated(data):
    def as_pil_reads_it(image) -> bool:  # PIL, the outside reference, decodes the same pixels
        with Image.open(io.BytesIO(data)) as reference:
            pixels = np.asarray(reference.convert("RGB"))
        return image.dtype == torch.uint8 and np.array_equal(image.permute(1, 2, 0).numpy(), pixels)

    def whole_pixels(image) -> bool:
        # PIL, like zlib, reads a PNG cut after its complete pixel data (only the checksum and
        # the end chunk missing); then the pixels must be the whole original image's
        original = torch.from_numpy(np.array(Image.open(io.BytesIO(png_bytes())).convert("RGB")))
        return as_pil_reads_it(image) and torch.equal(image.permute(1, 2, 0), original)

    truncated_png = png_bytes().startswith(data) and len(data) < len(png_bytes())
    expect_clear_error(
        lambda: decode_rgb(data, "upload.jpg"),
        "upload.jpg",
        whole_pixels if truncated_png else as_pil_reads_it,
    )


def test_zero_byte_and_bomb_images():
    with bounded(), pytest.raises(DeepresError, match="empty.png"):
        decode_rgb(b"", "empty.png")
    with bounded(), pytest.raises(DeepresError, match="bomb.png.*megapixel"):
        decode_rgb(png_bytes((12000, 12000), "1"), "bomb.png")


# --- weight files and training state ---------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".pth", ".pt", ".safetensors"]))
def test_weight_file_random_bytes(tmp_path, data, suffix):
    path = write(tmp_path, f"weights{suffix}", data)
    with bounded(), pytest.raises(DeepresError, match=f"weights{suffix}"):
        read_state_dict(path)


@FUZZ
@given(share=st.floats(0, 1, exclude_max=True))
def test_truncated_torch_and_safetensors_files(tmp_path, share):
    """Each file cut at ``share`` of its length (always shorter than the whole file)."""
    from safetensors.torch import save_file

    tensors = {"conv1.weight": torch.randn(4, 3, 3, 3), "fc.bias": torch.randn(5)}
    good = tmp_path / "good.safetensors"
    save_file(tensors, str(good), metadata={"deepres": "{}"})
    whole = good.read_bytes()
    path = write(tmp_path, "cut.safetensors", whole[: int(share * len(whole))])
    assert path.stat().st_size < len(whole)
    expect_clear_error(lambda: read_meta(path), path)
    torch.save(tensors, tmp_path / "good.pt")
    whole = (tmp_path / "good.pt").read_bytes()
    state = write(tmp_path, "state.pt", whole[: int(share * len(whole))])
    assert state.stat().st_size < len(whole)
    expect_clear_error(lambda: load_state(state), state)
