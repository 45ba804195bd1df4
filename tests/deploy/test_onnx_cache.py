"""The cached ONNX file of the onnxruntime and openvino runtimes (``deepres.deploy.onnx_cache``):
``<cache>/onnx/<model>-<hash>.onnx``, exported once and reused, named by the weights (other
weights, another file), exported again when the file is damaged."""

import copy

import torch

from deepres.checkpoints import MODEL_FILE
from deepres.deploy.onnx_cache import onnx_file, weights_digest
from deepres.deploy.runtime import prepare
from deepres.deploy.target import Target
from deepres.inference import agreement
from deepres.inference.onnx import OnnxModule


def logits(model, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(images)


def target(meta, cache, weights=None) -> Target:
    return Target(meta, 4, 1, cache, weights, (3, 32, 32))


def test_the_file_is_exported_once_and_reused(loaded, shared_cache):
    model, meta = loaded
    first = onnx_file(model, target(meta, shared_cache))
    digest = weights_digest(model, target(meta, shared_cache))
    assert first == shared_cache / "onnx" / f"resnet20-{digest[:24]}.onnx"
    stamp = first.stat()
    again = onnx_file(model, target(meta, shared_cache))
    assert again == first and again.stat().st_size > 100_000  # 0.27 M fp32 weights
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)


def test_the_name_follows_the_weights(loaded, trained_run, tmp_path):
    model, meta = loaded
    digest = weights_digest(model, target(meta, tmp_path))
    assert digest == weights_digest(copy.deepcopy(model), target(meta, tmp_path))
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert weights_digest(other, target(meta, tmp_path)) != digest
    assert weights_digest(model, target({**meta, "input_size": 64}, tmp_path)) != digest
    file = trained_run / MODEL_FILE  # a model loaded from a file: named by the file's bytes
    by_file = weights_digest(model, target(meta, tmp_path, file))
    assert by_file == weights_digest(other, target(meta, tmp_path, file)) != digest
    assert not (tmp_path / "onnx").exists()  # hashing exports nothing


def test_a_damaged_file_is_exported_again(loaded, batch, tmp_path):
    model, meta = loaded
    path = onnx_file(model, target(meta, tmp_path))
    path.write_bytes(b"not an onnx file")
    prepared = prepare(model, meta, "onnxruntime", batch_size=7, threads=1, cache=tmp_path)
    assert isinstance(prepared.runner, OnnxModule) and prepared.runner.path == path
    assert path.stat().st_size > 100_000
    assert agreement(logits(model, batch), logits(prepared, batch)).exact
