"""Export to ONNX (run by ONNX Runtime), TorchScript and torch.export programs, checked
against PyTorch on real CIFAR images; BatchNorm folding; dynamic batch sizes."""

import copy
import json
import subprocess
import sys

import onnx
import pytest
import torch
from torch import nn

from deepres import DeepresError, create_model
from deepres.checkpoints import load_model, save_weights
from deepres.data import dataset_stats
from deepres.deploy import export_checkpoint, export_model, load_runner, verify_export
from deepres.deploy.export import compare
from deepres.deploy.inputs import check_images, images_from_split
from deepres.inference import fold_batchnorm

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def with_running_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """A model whose BatchNorms are not the identity, as after training (else folding is
    trivially exact)."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=generator))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            m.bias.data.copy_(0.4 * torch.rand(n, generator=generator) - 0.2)
    return model.eval()


def meta_for(name: str, size: int, data) -> dict:
    mean, std = dataset_stats(str(data))
    return {
        "model": name,
        "model_args": {"num_classes": 10},
        "classes": CLASSES,
        "mean": list(mean),
        "std": list(std),
        "input_size": size,
        "data": str(data),
    }


CASES = {"resnet20": 32, "resnet18": 64}


@pytest.fixture(scope="module")
def models(cifar_small):
    """resnet20 (CIFAR family) at 32 px and resnet18 (ImageNet family) at 64 px, with
    real test images of each size (CIFAR photos, resized for resnet18)."""
    out = {}
    for seed, (name, size) in enumerate(CASES.items()):
        meta = meta_for(name, size, cifar_small)
        model = with_running_stats(create_model(name, num_classes=10), seed)
        out[name] = (model, meta, images_from_split(str(cifar_small), "test", meta, 8))
    return out


def test_fold_batchnorm_removes_every_bn_and_keeps_the_logits(models):
    for name, (model, _, images) in models.items():
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules()), name
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # a copy
        assert not folded.training
        assert folded.conv1.bias is not None
        assert compare(model, folded, images).exact


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
def test_onnx_runtime_matches_pytorch_for_batches_of_1_and_7(models, tmp_path, name, fold):
    model, meta, images = models[name]
    target = fold_batchnorm(model) if fold else model
    path = tmp_path / f"{name}.onnx"
    export_model(target, path, "onnx", meta, dynamic_batch=True)
    diffs = verify_export(model, load_runner(path, "onnx"), images, dynamic_batch=True)
    assert set(diffs) == {"batch 7", "batch 1"}
    assert all(d.exact for d in diffs.values()), diffs
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 18
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert json.loads({p.key: p.value for p in proto.metadata_props}["deepres"]) == meta
    if fold:
        assert not any(node.op_type == "BatchNormalization" for node in proto.graph.node)


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
@pytest.mark.parametrize("name", list(CASES))
def test_torchscript_and_exported_program_match_with_and_without_folding(
    models, tmp_path, fmt, name
):
    model, meta, images = models[name]
    for fold in (False, True):
        target = fold_batchnorm(model) if fold else model
        path = tmp_path / f"{name}-{fold}.{fmt}"
        export_model(target, path, fmt, meta, dynamic_batch=True)
        diffs = verify_export(model, load_runner(path, fmt), images, dynamic_batch=True)
        assert all(d.exact for d in diffs.values()), (fold, diffs)


def test_static_program_loads_as_a_checkpoint_and_takes_batches_of_one(models, tmp_path):
    model, meta, images = models["resnet20"]
    path = tmp_path / "model.pt2"
    export_model(model, path, "exported-program", meta)
    loaded, loaded_meta = load_model(path)
    assert loaded_meta == meta
    assert verify_export(model, loaded, images, dynamic_batch=False)["batch 1"].exact
    with pytest.raises(Exception, match="== 1|equal to 1"):  # the program's shape guard
        loaded(images[:7])
    with pytest.raises(DeepresError, match="inference mode only"):
        loaded.train()


def test_check_images_falls_back_to_random_input_and_says_so(models):
    _, meta, _ = models["resnet20"]
    batch, source = check_images({**meta, "data": "/nonexistent/data"}, 8)
    assert batch.shape == (8, 3, 32, 32)
    assert source.startswith("8 random inputs") and "/nonexistent/data" in source
    with pytest.raises(DeepresError, match="no images"):
        check_images({**meta, "data": "/nonexistent/data"}, 8, allow_random=False)


def test_cli_exports_folds_and_verifies_on_given_images(
    models, cifar_small, tmp_path, one_thread_env
):
    model, meta, _ = models["resnet20"]
    checkpoint = tmp_path / "best.safetensors"
    save_weights(checkpoint, model, meta)
    cat_images = cifar_small / "test" / "cat"
    result = subprocess.run(
        [sys.executable, "-m", "deepres", "export", "--checkpoint", str(checkpoint)]
        + ["--format", "torchscript", "--fold-bn", "--dynamic-batch", "--images", str(cat_images)],
        capture_output=True,
        text=True,
        timeout=300,
        env=one_thread_env,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "best-folded.torchscript.pt"
    assert out.is_file()
    lines = result.stdout.splitlines()
    assert any(line.startswith("folded BatchNorm") for line in lines)
    verified = next(line for line in lines if line.startswith("verified"))
    assert f"8 image file(s) from {cat_images}" in verified
    assert "(batch 7)" in verified and "(batch 1)" in verified
    batch = torch.randn(3, 3, 32, 32)
    assert compare(model, load_runner(out, "torchscript"), batch).exact
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_opsets_the_exporter_cannot_write_are_refused(models, tmp_path):
    model, meta, _ = models["resnet20"]
    with pytest.raises(DeepresError, match="--opset 17: .* use --opset 18 or higher"):
        export_model(model, tmp_path / "old.onnx", "onnx", meta, opset=17)
    assert not (tmp_path / "old.onnx").exists()


def test_a_confident_model_exports_to_onnx(models, tmp_path):
    """Logits in the thousands round differently in ONNX Runtime by more than 1e-4 absolute;
    the relative rule keeps the export (it used to be refused and deleted)."""
    model, meta, images = models["resnet18"]
    confident = copy.deepcopy(model)
    with torch.no_grad():
        confident.fc.weight.mul_(2000.0)
    checkpoint = tmp_path / "best.safetensors"
    save_weights(checkpoint, confident, meta)
    out = export_checkpoint(checkpoint, "onnx", dynamic_batch=True)
    with torch.inference_mode():
        scale = confident(images).abs().max().item()
    assert scale > 1000
    diffs = verify_export(confident, load_runner(out, "onnx"), images, dynamic_batch=True)
    assert all(d.exact for d in diffs.values()), diffs
