"""Every model family trains, exports to ONNX (verified in ONNX Runtime) and quantizes to
int8: pre-activation (with dropout, as in WRN), SE, ResNeXt and ResNet-D, at small sizes; the
leaderboard's options (Mish, blur-pool, self-attention) export too."""

import pytest
import torch
from torch import nn

from deepres import create_model
from deepres.checkpoints import load_model
from deepres.deploy import export_model, load_runner, quantize_model, verify_export
from deepres.train import resolve_config, train

FAMILIES = {  # name, options, input size
    "preact": ("preact_resnet20", {}, 32),
    "wrn-dropout": ("wrn16_2", {"dropout": 0.3}, 32),
    "se": ("resnet20", {"attention": "se"}, 32),
    "resnext": ("resnext50_32x4d", {"base_width": 1}, 64),
    "resnet-d": ("resnet50d", {}, 64),
    "mish-blur-attention": (
        "resnet20",
        {"act": "mish", "blur_pool": True, "self_attention": True},
        32,
    ),
}


def build(name: str, options: dict) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **options)
    for m in model.modules():  # trained-looking BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_exports_to_onnx_exactly(family, tmp_path):
    name, options, size = FAMILIES[family]
    model = build(name, options)
    images = torch.randn(8, 3, size, size)
    path = tmp_path / f"{name}.onnx"
    meta = {
        "model": name,
        "model_args": {"num_classes": 10, **options},
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "input_size": size,
    }
    export_model(model, path, "onnx", meta, dynamic_batch=True)
    diffs = verify_export(model, load_runner(path, "onnx"), images, dynamic_batch=True)
    assert all(d.exact for d in diffs.values()), diffs


@pytest.mark.parametrize("family", ["preact", "se", "resnet-d"])
def test_family_quantizes_to_int8(family):
    pytest.importorskip("torchao", reason="int8 quantization needs torchao")
    name, options, size = FAMILIES[family]
    model = build(name, options)
    calibration = torch.randn(16, 3, size, size)
    program = quantize_model(model, calibration).module()
    with torch.inference_mode():
        fp32, int8 = model(calibration), program(calibration)
    assert int8.shape == fp32.shape and torch.isfinite(int8).all()
    assert (int8 - fp32).abs().max() < 0.25 * fp32.abs().max()  # int8 error, not garbage
    assert not torch.equal(int8, fp32)


@pytest.mark.parametrize("name", ["preact_resnet20", "wrn16_2", "resnet50d"])
def test_family_trains_and_reloads(name, tmp_path):
    cfg = resolve_config(
        model=name, data="synthetic:3x16x16:10:64", out=str(tmp_path / "run"), iters=2,
        batch_size=16, progress="off", threads=1,
    )  # fmt: skip
    summary = train(cfg)
    assert summary["iterations"] == 2 and summary["final_top1"] is not None
    model, meta = load_model(tmp_path / "run")
    assert meta["model"] == name
    # the reloaded weights are the trained ones: those the run kept in state.pt for --resume
    # at its last step, bitwise, and trained (every BatchNorm mean moved off its initial 0)
    trained = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["model"]
    reloaded = model.state_dict()
    assert reloaded.keys() == trained.keys()
    assert [k for k in trained if not torch.equal(reloaded[k], trained[k])] == []
    means = [v for k, v in reloaded.items() if k.endswith("running_mean")]
    assert means and all(v.abs().sum() > 0 for v in means)
    bare = create_model(name, num_classes=10)
    bare.load_state_dict(trained)
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        assert torch.equal(model.eval()(x), bare.eval()(x)) and torch.isfinite(model(x)).all()
