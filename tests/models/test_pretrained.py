"""Pretrained weights by name, without the internet: the published-name tables checked
against torchvision's enums and timm's models, a pre-filled Hugging Face cache read with
HF_HUB_OFFLINE=1 (timm's layout and deepres folders), and save_pretrained's folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torchvision
from torchvision.models import get_model, get_model_weights

from deepres import DeepresError, create_model
from deepres.checkpoints.load import load_model
from deepres.checkpoints.published import save_pretrained
from deepres.checkpoints.run_files import save_weights
from deepres.models import load_pretrained, pretrained
from deepres.models.pretrained import (
    published_weights,
    resolve_pretrained,
    timm_architectures,
    timm_model,
    torchvision_meta,
    torchvision_names,
)
from deepres.models.weights import from_timm_resnetv2
from deepres.runtime.download import Expected, cache_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TIMM_NAME = "resnet50d.a1_in1k"
TIMM_CONFIG = {
    "architecture": "resnet50d",
    "num_classes": 1000,
    "num_features": 2048,
    "pretrained_cfg": {
        "tag": "a1_in1k",
        "input_size": [3, 224, 224],
        "interpolation": "bicubic",
        "crop_pct": 0.95,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "num_classes": 1000,
        "classifier": "fc",
    },
}


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty private Hub cache, HF_HUB_OFFLINE=1, and a private deepres cache."""
    hub = tmp_path / "hf-hub"
    hub.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DEEPRES_CACHE", str(tmp_path / "cache"))
    return hub


def fill_hub_cache(hub: Path, repo_id: str, files: dict[str, Path]) -> None:
    """huggingface_hub's cache layout: refs/main names a snapshot holding the files."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


# --- the published-name tables ---------------------------------------------------------------


def test_the_torchvision_table_is_torchvisions_resnet_module():
    expected = {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    expected |= {"resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"}
    expected |= {"wide_resnet50_2", "wide_resnet101_2"}
    assert set(torchvision_names()) == expected


@pytest.mark.parametrize("name", torchvision_names())
def test_every_torchvision_name_is_a_real_enum_entry_whose_keys_load_strictly(name):
    enum = get_model_weights(name)
    for tag in enum.__members__:
        url, meta = torchvision_meta(name, tag)
        assert url == enum[tag].url and Path(url).name.startswith(f"{name}-")
        assert len(meta["classes"]) == 1000 and meta["classes"][0] == "tench"
        assert meta["input_size"] == enum[tag].transforms().crop_size[0]
        assert meta["metrics"]["ImageNet-1K"]["acc@1"] > 60
    assert f"torchvision:{enum.DEFAULT.name}" == published_weights(name)[0]
    with torch.device("meta"):  # every key and shape, without the memory of real weights
        reference, model = get_model(name), create_model(name)
    model.load_state_dict(reference.state_dict(), strict=True, assign=True)


@pytest.mark.parametrize("arch", timm_architectures())
def test_every_timm_architecture_loads_strictly(arch):
    name, args = timm_model(arch)
    with torch.device("meta"):
        reference, model = timm.create_model(arch), create_model(name, **args)
    state = reference.state_dict()
    if arch.startswith("resnetv2"):
        state = from_timm_resnetv2(state)  # as read_state_dict does for such files
    model.load_state_dict(state, strict=True, assign=True)


def test_torchvision_weights_give_their_url_hash_and_metadata(tmp_path, monkeypatch):
    """The download itself is tested in tests/runtime/test_download.py; here its arguments."""
    torch.manual_seed(0)
    file = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), file)
    calls = []
    monkeypatch.setattr(
        pretrained, "fetch", lambda url, expected: calls.append((url, expected)) or file
    )
    weights = resolve_pretrained("torchvision", "resnet18")
    v1 = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert calls == [(v1.url, Expected(v1.url.rsplit("-", 1)[1].split(".")[0]))]
    assert weights.meta["classes"] == v1.meta["categories"] and weights.meta["resize_size"] == 256
    load_pretrained(create_model("resnet18"), weights.path)
    assert weights.for_model("resnet18", {})["classes"] == v1.meta["categories"]
    assert "classes" not in weights.for_model("resnet18", {"num_classes": 10})  # a new head
    resolve_pretrained("torchvision:IMAGENET1K_V2", "resnet50")
    assert calls[-1][0].endswith("resnet50-11ad3fa6.pth") and calls[-1][1] == Expected("11ad3fa6")


def test_bad_torchvision_names_are_refused():
    with pytest.raises(DeepresError, match="IMAGENET1K_V1, DEFAULT"):
        resolve_pretrained("torchvision:IMAGENET9K", "resnet18")
    with pytest.raises(DeepresError, match="publishes no weights for resnet50d"):
        resolve_pretrained("torchvision", "resnet50d")
    with pytest.raises(DeepresError, match="name the model"):
        resolve_pretrained("torchvision")
    with pytest.raises(DeepresError, match="not a layout deepres loads"):
        timm_model("resnet10t")


# --- timm through the Hugging Face cache -----------------------------------------------------


def timm_files(tmp_path: Path) -> tuple[torch.nn.Module, dict[str, Path]]:
    torch.manual_seed(0)
    reference = randomised(timm.create_model("resnet50d"))
    weights = tmp_path / "model.safetensors"
    safetensors.torch.save_file(reference.state_dict(), weights)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TIMM_CONFIG))
    return reference, {"model.safetensors": weights, "config.json": config}


def test_timm_name_from_a_prefilled_hub_cache_matches_timms_logits(tmp_path, offline_hub):
    reference, files = timm_files(tmp_path)
    fill_hub_cache(offline_hub, f"timm/{TIMM_NAME}", files)
    weights = resolve_pretrained(f"timm:{TIMM_NAME}", "resnet50d")
    assert weights.path.is_relative_to(offline_hub)
    meta = weights.meta
    assert meta["model"] == "resnet50d" and meta["model_args"] == {"num_classes": 1000}
    assert meta["classes"][0] == "tench" and len(meta["classes"]) == 1000
    assert (meta["input_size"], meta["resize_size"], meta["interpolation"]) == (224, 235, "bicubic")
    model = create_model("resnet50d", **weights.model_args)
    load_pretrained(model, weights.path)
    x = torch.randn(1, 3, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        expected, logits = reference.double()(x), model.eval().double()(x)
    assert (logits - expected).abs().max().item() < 1e-4
    assert resolve_pretrained(f"hf-hub:timm/{TIMM_NAME}").path == weights.path
    with pytest.raises(DeepresError, match="for resnet50d, not resnet50"):
        resolve_pretrained(f"timm:{TIMM_NAME}", "resnet50")


def test_offline_without_the_file_names_the_url_and_the_manual_path(tmp_path):
    url = f"https://huggingface.co/timm/{TIMM_NAME}/resolve/main/config.json"
    with pytest.raises(DeepresError, match="HF_HUB_OFFLINE") as err:
        resolve_pretrained(f"timm:{TIMM_NAME}", "resnet50d")
    assert url in str(err.value) and str(cache_path(url)) in str(err.value)
    _, files = timm_files(tmp_path)  # put by hand where the message says
    for name, source in files.items():
        manual = cache_path(url.replace("config.json", name))
        manual.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, manual)
    assert resolve_pretrained(f"timm:{TIMM_NAME}", "resnet50d").meta["model"] == "resnet50d"


# --- deepres folders: save_pretrained, paths and hf-hub --------------------------------------


def run_folder(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = randomised(create_model("resnet20", num_classes=4))
    meta = {
        "model": "resnet20",
        "model_args": {"num_classes": 4, "in_chans": 3},
        "classes": ["ant", "bee", "cat", "dog"],
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.2, 0.2],
        "input_size": 32,
        "data": "pets",
        "step": 7,
    }
    run = tmp_path / "run"
    run.mkdir()
    save_weights(run / "model.safetensors", model, meta)
    return run, model


def test_save_pretrained_makes_a_folder_that_create_model_and_load_model_read(tmp_path):
    run, source = run_folder(tmp_path)
    folder = save_pretrained(run, tmp_path / "shared")
    config = json.loads((folder / "config.json").read_text())
    assert config["library_name"] == "deepres" and config["format_version"] == 1
    assert config["classes"] == ["ant", "bee", "cat", "dog"] and "step" not in config
    weights = resolve_pretrained(folder, "resnet20")
    assert weights.meta["model_args"] == {"num_classes": 4, "in_chans": 3}
    model = create_model("resnet20", **weights.model_args)
    load_pretrained(model, weights.path)
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
    loaded, meta = load_model(folder)
    assert meta["classes"] == config["classes"] and torch.equal(
        loaded.state_dict()["fc.weight"], source.state_dict()["fc.weight"]
    )
    assert resolve_pretrained(run).meta["classes"] == config["classes"]  # a run folder too
    with pytest.raises(DeepresError, match="for resnet20, not resnet56"):
        resolve_pretrained(str(folder), "resnet56")


def test_save_pretrained_from_a_model_needs_its_metadata(tmp_path):
    model = create_model("resnet20")
    with pytest.raises(DeepresError, match="classes, mean, std, input_size"):
        save_pretrained(model, tmp_path / "x", {"model": "resnet20"})
    meta = {"model": "resnet20", "classes": list("abcdefghij"), "mean": [0.5] * 3}
    folder = save_pretrained(model, tmp_path / "x", {**meta, "std": [0.2] * 3, "input_size": 32})
    assert resolve_pretrained(folder).meta["model_args"] == {}


def test_a_deepres_folder_on_the_hub(tmp_path, offline_hub):
    run, source = run_folder(tmp_path)
    folder = save_pretrained(run, tmp_path / "shared")
    files = {name: folder / name for name in ("model.safetensors", "config.json")}
    fill_hub_cache(offline_hub, "someone/pets-resnet20", files)
    weights = resolve_pretrained("hf-hub:someone/pets-resnet20", "resnet20")
    assert weights.meta["source"] == "hf-hub:someone/pets-resnet20"
    assert weights.meta["classes"] == ["ant", "bee", "cat", "dog"]
    model = create_model("resnet20", **weights.model_args)
    load_pretrained(model, weights.path)
    assert torch.equal(model.state_dict()["fc.bias"], source.state_dict()["fc.bias"])
    with pytest.raises(DeepresError, match="ORG/NAME"):
        resolve_pretrained("hf-hub:not-a-repo")


def test_bad_deepres_configs_are_refused(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    safetensors.torch.save_file({"x": torch.zeros(1)}, folder / "model.safetensors")
    config = {"library_name": "deepres", "model": "resnet20", "classes": [1, 2]}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DeepresError, match="bad classes"):
        resolve_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "format_version": 9}))
    with pytest.raises(DeepresError, match="format 9"):
        resolve_pretrained(folder)
    (folder / "config.json").write_text("[1, 2")
    with pytest.raises(DeepresError, match="cannot read"):
        resolve_pretrained(folder)


def test_published_weights_lists_torchvision_then_timm():
    names = published_weights("resnet50")
    assert names[:2] == ["torchvision:IMAGENET1K_V2", "torchvision:IMAGENET1K_V1"]
    assert "timm:resnet50.a1_in1k" in names
    assert f"timm:{TIMM_NAME}" in published_weights("resnet50d")
    assert published_weights("resnet20") == []
