"""Hostile input to ``deepres predict`` and to ``deepres serve``'s HTTP API.

``predict``: random, truncated, mis-typed, empty and oversized-header files, each either
predicted or refused with a DeepresError (exit status 2 from the command) naming the file.
``serve``: the Flask app in process, through its test client: the same payloads as a
multipart upload or a raw body under any content type, plus missing fields, wrong methods
and oversized bodies; each gets a JSON answer, 200 or a 4xx naming the problem, never a 500.
"""

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deepres import DeepresError, create_model
from deepres.checkpoints import save_weights
from deepres.cli import main
from deepres.deploy.serve import create_app
from deepres.inference import Predictor

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CLASSES = ["a", "b", "c"]
MAX_BYTES = 64 * 1024  # the test app's upload limit


def encoded(fmt: str, size=(16, 16), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 64).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


PNG, JPEG = encoded("PNG"), encoded("JPEG")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def lying_png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels, followed by ``idat``."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def lying_jpeg(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) claims ``width`` x ``height`` pixels."""
    sof = JPEG.index(b"\xff\xc0")
    return JPEG[: sof + 5] + struct.pack(">HH", height, width) + JPEG[sof + 9 :]


def bomb_png() -> bytes:
    """144 megapixels in a few KB: over the 64-megapixel decoding limit."""
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, "PNG")
    return buffer.getvalue()


# Payloads that are not images, or not whole ones.
BROKEN = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda cut: PNG[:cut], st.integers(0, len(PNG) - 1)),
    st.builds(lambda cut: JPEG[:cut], st.integers(0, len(JPEG) - 1)),
    st.builds(lambda junk: b"\xff\xd8\xff\xe0" + junk, st.binary(max_size=200)),
    st.builds(lambda junk: b"GIF89a" + junk, st.binary(max_size=100)),
    st.builds(lambda junk: b"BM" + junk, st.binary(max_size=100)),
    st.builds(
        lying_png,
        st.one_of(st.integers(1, 64), st.integers(20_000, 2**31 - 1)),
        st.one_of(st.integers(1, 64), st.integers(20_000, 2**31 - 1)),
        st.binary(max_size=64),
    ),
    st.builds(  # both sides huge (refused from the header) or at most 64 x 65535 pixels
        lying_jpeg,
        st.one_of(st.integers(1, 64), st.integers(20_000, 65_535)),
        st.one_of(st.integers(1, 64), st.integers(20_000, 65_535)),
    ),
)
CONTENT_TYPES = [
    "application/octet-stream",
    "image/png",
    "image/jpeg",
    "text/plain",
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",  # no boundary
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    meta = {
        "model": "resnet8",
        "model_args": {"num_classes": len(CLASSES)},
        "classes": CLASSES,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "input_size": 32,
        "data": "synthetic:3x32x32:3",
    }
    path = tmp_path_factory.mktemp("fuzz-model") / "tiny.safetensors"
    save_weights(path, create_model("resnet8", num_classes=len(CLASSES)).eval(), meta)
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint) -> Predictor:
    return Predictor(checkpoint)


@pytest.fixture(scope="module")
def client(predictor):
    return create_app(predictor, max_bytes=MAX_BYTES).test_client()


# --- predict --------------------------------------------------------------------------


@FUZZ
@given(data=BROKEN, suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".webp", ""]))
def test_predict_file_names_the_file_it_cannot_read(predictor, tmp_path, data, suffix):
    path = tmp_path / f"input{suffix}"
    path.write_bytes(data)
    try:
        prediction = predictor.predict_file(path, top_k=2)
    except DeepresError as err:
        assert path.name in str(err), str(err)
    else:  # a payload that happens to decode: a real answer
        assert len(prediction.top) == 2 and {name for name, _ in prediction.top} <= set(CLASSES)


@settings(FUZZ, max_examples=20)
@given(data=BROKEN)
def test_predict_command_reports_each_bad_file(checkpoint, tmp_path, capsys, data):
    bad, good = tmp_path / "bad.png", tmp_path / "good.png"
    bad.write_bytes(data)
    good.write_bytes(PNG)
    status = main(["predict", "--checkpoint", str(checkpoint), str(bad), str(good), "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    results = json.loads(out)
    assert [r["path"] for r in results] == [str(bad), str(good)]
    assert len(results[1]["top"]) == len(CLASSES)
    if "error" in results[0]:
        assert status == 2 and "bad.png" in results[0]["error"]
        assert "1 of 2 file(s) could not be predicted" in err
    else:
        assert status == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (bomb_png(), "megapixel limit"),
        (lying_png(100_000, 100_000, b"\0" * 32), "megapixel limit"),
        (lying_jpeg(65_000, 65_000), "megapixel limit"),
        (lying_png(1, 1, b""), "not a readable image"),  # crashed torchvision's decoder
        (PNG[: len(PNG) // 2], "not a readable image"),
        (b"%PDF-1.4\n" + bytes(100), "not a readable image"),
    ],
    ids=["zero-byte", "bomb", "lying-png", "lying-jpeg", "empty-idat", "truncated", "pdf"],
)
def test_predict_refuses_what_is_not_an_image(predictor, tmp_path, data, expected):
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    with pytest.raises(DeepresError, match=f"photo.png.*{expected}|{expected}.*photo.png"):
        predictor.predict_file(path)


# --- serve ----------------------------------------------------------------------------


def assert_json_answer(response, expected_status: int | None = None) -> dict:
    assert response.status_code < 500, response.get_data()[:300]
    assert response.mimetype == "application/json", response.get_data()[:300]
    answer = response.get_json()
    if expected_status is not None:
        assert response.status_code == expected_status, answer
    if response.status_code == 200:
        assert len(answer["top"]) == len(CLASSES) and answer["ms"] >= 0
    else:
        assert 400 <= response.status_code < 500 and answer["error"], answer
    return answer


@FUZZ
@given(data=BROKEN, filename=st.sampled_from(["upload.png", "x.jpg", "", "../../etc/passwd"]))
def test_serve_multipart_uploads_never_fail_the_server(client, data, filename):
    response = client.post(
        "/predict",
        data={"image": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )
    answer = assert_json_answer(response)
    if response.status_code != 200:  # names the file, or says what the upload lacks
        error = answer["error"]
        named = filename or "upload"
        assert named in error or "field 'image'" in error or "empty upload" in error, answer


@FUZZ
@given(data=BROKEN, content_type=st.sampled_from(CONTENT_TYPES))
def test_serve_raw_bodies_never_fail_the_server(client, data, content_type):
    response = client.post("/predict", data=data, content_type=content_type)
    answer = assert_json_answer(response)
    if response.status_code != 200 and content_type != "multipart/form-data":
        assert "request body" in answer["error"] or "empty upload" in answer["error"]


@pytest.mark.parametrize("content_type", CONTENT_TYPES[:6])
def test_serve_answers_a_real_image_under_any_content_type(client, content_type):
    assert_json_answer(client.post("/predict", data=PNG, content_type=content_type), 200)


@pytest.mark.parametrize(
    ("kwargs", "status", "expected"),
    [
        ({"data": b"", "content_type": "image/png"}, 400, "empty upload"),
        (
            {"data": {"image": (io.BytesIO(b""), "e.png")}, "content_type": "multipart/form-data"},
            400,
            "empty upload",
        ),
        (
            {"data": {"file": (io.BytesIO(PNG), "p.png")}, "content_type": "multipart/form-data"},
            400,
            "no field 'image'",
        ),
        ({"data": {"image": "just text"}, "content_type": "multipart/form-data"}, 400, "'image'"),
        ({"data": PNG, "content_type": "multipart/form-data"}, 400, "no field 'image'"),
        ({"data": bomb_png(), "content_type": "image/png"}, 400, "megapixel limit"),
        (
            {"data": {"image": (io.BytesIO(bomb_png()), "b.png")}},
            400,
            "b.png: 12000x12000 pixels",
        ),
        ({"data": b"\x89PNG\r\n\x1a\n", "content_type": "image/png"}, 400, "is not an image"),
        ({"data": JPEG[:40], "content_type": "image/jpeg"}, 400, "is not an image"),
        ({"data": lying_png(1, 1, b""), "content_type": "image/png"}, 400, "is not an image"),
        ({"data": lying_jpeg(65_000, 65_000)}, 400, "megapixel limit"),
        ({"data": b"\0" * (MAX_BYTES + 1), "content_type": "image/png"}, 413, "too large"),
        (
            {"data": {"image": (io.BytesIO(b"\xff" * (MAX_BYTES + 1)), "big.jpg")}},
            413,
            "too large",
        ),
    ],
    ids=[
        "zero-byte-body",
        "zero-byte-file",
        "wrong-field",
        "field-not-a-file",
        "multipart-without-boundary",
        "bomb-body",
        "bomb-file",
        "png-signature-only",
        "truncated-jpeg",
        "empty-idat",
        "jpeg-bomb-header",
        "oversized-body",
        "oversized-file",
    ],
)
def test_serve_refuses_bad_uploads_with_the_reason(client, kwargs, status, expected):
    answer = assert_json_answer(client.post("/predict", **kwargs), status)
    assert expected in answer["error"], answer


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("get", "/predict", 405), ("put", "/predict", 405), ("get", "/nope", 404)],
)
def test_serve_answers_wrong_methods_and_paths_in_json(client, method, path, status):
    response = getattr(client, method)(path)
    answer = assert_json_answer(response, status)
    assert ("Method Not Allowed" if status == 405 else "Not Found") in answer["error"]


def test_serve_keeps_answering_after_bad_uploads(client):
    for data in (b"", b"junk", bomb_png(), PNG[:50]):
        client.post("/predict", data=data, content_type="image/png")
    assert_json_answer(client.post("/predict", data=PNG, content_type="image/png"), 200)
