"""``deepres serve``: a small web page and JSON API that classify uploaded images.

- ``GET /``: a page where a person picks or drops an image and sees the top-5 classes as a
  bar chart and the time taken (plain HTML/CSS/JS in ``static/index.html``, no CDN).
- ``POST /predict``: the image as multipart field ``image`` or as the raw request body;
  answers ``{"top": [{"class", "probability"}, ...], "ms": ...}``, 400 with ``{"error"}``
  for anything that is not a readable image, 413 for uploads over the size limit.
- ``GET /info``: the model, its classes, the upload limit, an ensemble's ``members``,
  the test-time augmentation (``tta``) and the inference ``runtime``.

Every error, a wrong method or path included, is answered as JSON ``{"error"}``.

Served by waitress (a multi-threaded WSGI server), on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepres.deploy.options import MAX_UPLOAD_BYTES
from deepres.deploy.runtime import load_predictor
from deepres.errors import DeepresError
from deepres.inference import Predictor

if TYPE_CHECKING:
    from flask import Flask

TOP_K = 5


def page() -> str:
    return (resources.files("deepres.deploy") / "static" / "index.html").read_text("utf-8")


def create_app(predictor: Predictor, max_bytes: int = MAX_UPLOAD_BYTES) -> Flask:
    """The Flask application around ``predictor``."""
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    html = page()
    meta = predictor.meta
    info: dict[str, Any] = {
        "model": meta.get("model"),
        "data": meta.get("data"),
        "classes": predictor.classes,
        "input_size": predictor.size,
        "quantized": meta.get("quantized"),
        "members": predictor.members,
        "tta": meta.get("tta"),
        "runtime": meta.get("runtime", "eager"),
        "max_bytes": max_bytes,
    }

    def fail(message: str, status: int) -> tuple[Response, int]:
        return jsonify(error=message), status

    @app.get("/")
    def index() -> Response:
        return Response(html, mimetype="text/html")

    @app.get("/info")
    def model_info() -> Response:
        return jsonify(info)

    @app.post("/predict")
    def predict() -> Response | tuple[Response, int]:
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("image")
            if upload is None:
                return fail(
                    "no field 'image' in the form: send the image as multipart field 'image' "
                    "or as the raw request body",
                    400,
                )
            data, name = upload.read(), upload.filename or "upload"
        else:
            data, name = request.get_data(), "request body"
        if not data:
            return fail("empty upload: send an image file (JPEG, PNG, ...)", 400)
        start = time.perf_counter()
        try:
            prediction = predictor.predict_bytes(data, name, TOP_K)
        except DeepresError as err:
            if "not a readable image" in str(err):
                return fail(
                    f"{name} is not an image: send a JPEG, PNG, BMP, GIF, WebP or TIFF", 400
                )
            return fail(str(err), 400)
        ms = 1000 * (time.perf_counter() - start)
        top = [{"class": c, "probability": round(p, 6)} for c, p in prediction.top]
        return jsonify(top=top, ms=round(ms, 2))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> tuple[Response, int]:
        return fail(f"{err.name}: {err.description}", err.code or 500)

    @app.errorhandler(413)
    def too_large(_: Exception) -> tuple[Response, int]:
        return fail(
            f"upload too large: the limit is {max_bytes / 2**20:g} MB; send a smaller image", 413
        )

    return app


def serve(
    checkpoint: str | Path | Sequence[str | Path] | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 4,
    max_bytes: int = MAX_UPLOAD_BYTES,
    tta: str | None = None,
    ema: bool = False,
    runtime: str = "auto",
    model: str | None = None,
    pretrained: str | Path | None = None,
) -> None:
    """``deepres serve``: the web page and JSON API on ``host:port`` until interrupted.
    Several checkpoints are served as their ensemble; ``tta``/``ema`` as in ``Predictor``;
    ``runtime``: what runs the model (``deepres.deploy.runtime``); ``model`` and
    ``pretrained``: published weights instead of a checkpoint (``load_predictor``)."""
    from waitress.server import create_server

    predictor = load_predictor(
        checkpoint, tta=tta, ema=ema, runtime=runtime, model=model, pretrained=pretrained
    )
    app = create_app(predictor, max_bytes)
    try:
        server = create_server(app, host=host, port=port, threads=threads)
    except OSError as err:
        raise DeepresError(
            f"cannot listen on {host}:{port}: {err.strerror}; choose another --port"
        ) from None
    shown = host if ":" not in host else f"[{host}]"
    print(
        f"serving {predictor.meta.get('model')} ({len(predictor.classes)} classes) on "
        f"http://{shown}:{server.effective_port}/  (Ctrl+C to stop)",
        flush=True,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {host}, reachable from other machines", flush=True)
    try:
        server.run()
    finally:
        server.close()
