"""Each runtime of ``--runtime torch|eager|onnxruntime|openvino`` (``deepres.deploy.runtimes``)
gives logits exact against the model as loaded, at the batch size it was prepared for and
another; an unknown or impossible runtime is a clear error. A real resnet20 trained briefly
on real CIFAR images (conftest), real ONNX Runtime and OpenVINO sessions."""

import pytest
import torch

from deepres.deploy.runtime import prepare
from deepres.deploy.runtimes import PreparedModel
from deepres.errors import DeepresError
from deepres.inference import InferenceModel, agreement
from deepres.inference.onnx import OnnxModule, runtime_installed

OPENVINO = pytest.mark.skipif(not runtime_installed("openvino"), reason="openvino is not installed")


def logits(model, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(images)


@pytest.mark.parametrize(
    "runtime", ["eager", "torch", "onnxruntime", pytest.param("openvino", marks=OPENVINO)]
)
def test_each_runtime_is_exact_against_eager(loaded, batch, shared_cache, runtime):
    model, meta = loaded
    prepared = prepare(model, meta, runtime, batch_size=7, cache=shared_cache)
    assert isinstance(prepared, PreparedModel) and prepared.runtime == runtime
    assert prepared.reason == "asked" and prepared.source == "asked"
    reference = logits(model, batch)
    for images in (batch, batch[:1]):  # the batch size prepared for and another one
        got = logits(prepared, images)
        assert got.dtype == torch.float32 and got.shape == (len(images), 10)
        assert agreement(logits(model, images), got).exact
    if runtime == "torch":  # BatchNorm really folded away, in fp32
        assert isinstance(prepared.runner, InferenceModel)
        assert prepared.runner.dtype == torch.float32
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
        assert not torch.equal(logits(prepared, batch), reference)  # another computation
    if runtime in ("onnxruntime", "openvino"):  # a real session on the cached ONNX file
        assert isinstance(prepared.runner, OnnxModule)
        assert prepared.runner.path.parent == shared_cache / "onnx"
        assert prepared.runner.path.stat().st_size > 100_000  # 0.27 M fp32 weights


def test_unknown_and_impossible_runtimes_are_clear_errors(loaded):
    model, meta = loaded
    with pytest.raises(DeepresError, match="unknown runtime 'tensorrt': choose one of auto"):
        prepare(model, meta, "tensorrt")

    def broken(model, target):
        raise RuntimeError("cannot trace this")

    with pytest.raises(DeepresError, match="runtime broken cannot run resnet20: cannot trace"):
        prepare(model, meta, "broken", candidates={"broken": broken})
