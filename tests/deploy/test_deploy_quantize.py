"""int8 post-training quantization (PT2E, X86InductorQuantizer) and the .pt2 program file:
round trip, agreement with fp32 on real images, loading through load_model / Predictor,
and refusal of archives that would unpickle code."""

import json
import subprocess
import sys
import zipfile

import pytest
import torch
from torch import nn

from deepres import DeepresError
from deepres.checkpoints import load_model, load_program, save_program, save_weights
from deepres.data import dataset_stats
from deepres.deploy import quantize_model
from deepres.deploy.inputs import images_from_split
from deepres.inference import Predictor
from deepres.models.resnet import cifar_resnet
from deepres.runtime import has_vnni

pytest.importorskip("torchao", reason="int8 quantization needs torchao")

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tiny_model() -> nn.Module:
    """ResNet-8 (n=1) with BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    model = cifar_resnet(8)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def meta(cifar_small):
    mean, std = dataset_stats(str(cifar_small))
    return {
        "model": "resnet20",
        "model_args": {},
        "classes": CLASSES,
        "mean": list(mean),
        "std": list(std),
        "input_size": 32,
        "data": str(cifar_small),
    }


@pytest.fixture(scope="module")
def quantized(cifar_small, meta, tmp_path_factory):
    """The tiny model, quantized with 100 real training images, saved and its test images."""
    model = tiny_model()
    calibration = images_from_split(str(cifar_small), "train", meta, 100)
    path = tmp_path_factory.mktemp("q") / "tiny.int8.pt2"
    save_program(path, quantize_model(model, calibration), {**meta, "quantized": "int8"})
    return model, path, images_from_split(str(cifar_small), "test", meta, 100)


def test_int8_program_round_trips_and_agrees_with_fp32(quantized, meta):
    model, path, test_images = quantized
    loaded, loaded_meta = load_model(path)
    assert loaded_meta == {**meta, "quantized": "int8"}
    with torch.inference_mode():
        fp32, int8 = model(test_images), loaded(test_images)
        single = loaded(test_images[:1])
        seven = loaded(test_images[:7])
    assert int8.shape == (100, 10) and single.shape == (1, 10) and seven.shape == (7, 10)
    agree = (fp32.argmax(1) == int8.argmax(1)).float().mean().item()
    assert agree >= 0.9, agree
    assert (int8 - fp32).abs().max() < 0.1 * fp32.abs().max()  # int8 error, not noise
    assert not torch.equal(int8, fp32)  # really quantized


def test_program_stores_int8_weights_and_is_smaller_than_fp32(quantized, tmp_path, meta):
    model, path, _ = quantized
    fp32_file = tmp_path / "fp32.safetensors"
    save_weights(fp32_file, model, meta)
    with zipfile.ZipFile(path) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("weights_config.json"))
        folder = config_name.rsplit("/", 1)[0]
        config = json.loads(archive.read(config_name))["config"]
        sizes = {
            name: (entry["tensor_meta"]["dtype"], archive.getinfo(f"{folder}/{entry['path_name']}"))
            for name, entry in config.items()
        }
    int8_bytes = sum(info.file_size for dtype, info in sizes.values() if dtype == 2)  # int8
    conv_weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("conv1.weight"))
    assert int8_bytes >= conv_weights  # the convolution weights take one byte each
    assert sum(info.file_size for _, info in sizes.values()) < 0.5 * fp32_file.stat().st_size


def test_predictor_classifies_a_real_image_with_the_int8_program(quantized, cifar_small):
    model, path, _ = quantized
    image = sorted((cifar_small / "test" / "ship").iterdir())[0]
    predictor = Predictor(path)
    prediction = predictor.predict_file(image, top_k=5)
    fp32 = Predictor("", model=model, meta=predictor.meta).predict_file(image, top_k=5)
    assert [c for c, _ in prediction.top][:1] == [c for c, _ in fp32.top][:1]
    assert abs(sum(p for _, p in prediction.top) - sum(p for _, p in fp32.top)) < 0.05


def test_archive_asking_for_pickles_is_refused_before_loading(quantized, tmp_path):
    _, path, _ = quantized
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"]))
                config["config"][first]["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(DeepresError, match="refusing to load .* as a pickle"):
        load_program(tampered)
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DeepresError, match="not a readable .pt2 archive"):
        load_model(junk)


def test_cli_quantizes_a_checkpoint_calibrated_on_real_images(
    cifar_small, meta, tmp_path, one_thread_env
):
    from deepres import create_model

    checkpoint = tmp_path / "best.safetensors"
    save_weights(checkpoint, create_model("resnet20").eval(), meta)
    result = subprocess.run(
        [sys.executable, "-m", "deepres", "quantize", "--checkpoint", str(checkpoint)]
        + ["--calib-data", str(cifar_small), "--images", "20", "--check", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        env=one_thread_env,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "best.int8.pt2"
    assert out.is_file()
    assert f"calibrating on 20 train images of {cifar_small}" in result.stdout
    assert "int8 vs fp32 on 20 test images" in result.stdout
    assert "KernelPreference" not in result.stderr  # torchao's import note stays hidden
    _, loaded_meta = load_model(out)
    assert loaded_meta["quantized"] == "int8-x86-pt2e"
    assert loaded_meta["calibration"] == {"data": str(cifar_small), "images": 20}
    assert loaded_meta["reduce_range"] is (not has_vnni())  # 7-bit activations without VNNI
    assert ("7-bit activations" in result.stdout) is loaded_meta["reduce_range"]
