"""Every reader meets hostile bytes: a DeepresError naming the file, never a crash or a hang.

Hypothesis generates truncated, oversized, mis-typed and random inputs for the IDX, CIFAR
(binary and pickle), image, weight-file and training-state readers and for ``predict``.
"""

import gzip
import io
import pickle
import struct
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
from deepres.models import read_state_dict

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def expect_clear_error(call, path) -> None:
    """The call either succeeds or raises DeepresError whose message names the file."""
    try:
        call()
    except DeepresError as err:
        assert Path(path).name in str(err), str(err)


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
    expect_clear_error(lambda: read_idx(path), path)


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
    expect_clear_error(lambda: read_idx(path), path)


def test_idx_gzip_bomb_is_refused_without_inflating(tmp_path):
    # 10 GB of zeros claimed by the header, about 10 MB compressed: never decompressed whole.
    header = idx_bytes((100000, 1000, 100), b"")
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb") as f:
        f.write(header)
        f.write(bytes(1 << 20) * 4)  # a truncated body: 4 MiB of the 10 GB
    path = write(tmp_path, "bomb-idx3-ubyte.gz", stream.getvalue())
    with pytest.raises(DeepresError, match="bomb-idx3-ubyte.gz"):
        read_idx(path)


# --- CIFAR binary and pickle --------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=8000))
def test_cifar_binary_random_bytes(tmp_path, data):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir(exist_ok=True)
    (folder / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    path = write(folder, "test_batch.bin", data)
    expect_clear_error(lambda: read_cifar_binary(folder, "cifar10", "test"), path)


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
    expect_clear_error(lambda: read_cifar_python(folder, "cifar10", "test"), path)


def test_cifar_pickle_with_wrong_dtype_and_shape(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    )
    batch = {b"data": np.zeros((3, 100), dtype=np.float64), b"labels": [0, 1, 2]}
    write(folder, "test_batch", pickle.dumps(batch, protocol=2))
    with pytest.raises(DeepresError, match="test_batch"):
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
    try:
        image = decode_rgb(data, "upload.jpg")
    except DeepresError as err:
        assert "upload.jpg" in str(err)
    else:
        assert image.dtype == torch.uint8 and image.shape[0] == 3


def test_zero_byte_and_bomb_images():
    with pytest.raises(DeepresError, match="empty.png"):
        decode_rgb(b"", "empty.png")
    with pytest.raises(DeepresError, match="bomb.png.*megapixel"):
        decode_rgb(png_bytes((12000, 12000), "1"), "bomb.png")


# --- weight files and training state ---------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".pth", ".pt", ".safetensors"]))
def test_weight_file_random_bytes(tmp_path, data, suffix):
    path = write(tmp_path, f"weights{suffix}", data)
    with pytest.raises(DeepresError, match=f"weights{suffix}"):
        read_state_dict(path)


@FUZZ
@given(cut=st.integers(0, 2000))
def test_truncated_torch_and_safetensors_files(tmp_path, cut):
    from safetensors.torch import save_file

    tensors = {"conv1.weight": torch.randn(4, 3, 3, 3), "fc.bias": torch.randn(5)}
    good = tmp_path / "good.safetensors"
    save_file(tensors, str(good), metadata={"deepres": "{}"})
    path = write(tmp_path, "cut.safetensors", good.read_bytes()[:cut])
    expect_clear_error(lambda: read_meta(path), path)
    torch.save(tensors, tmp_path / "good.pt")
    state = write(tmp_path, "state.pt", (tmp_path / "good.pt").read_bytes()[:cut])
    expect_clear_error(lambda: load_state(state), state)
