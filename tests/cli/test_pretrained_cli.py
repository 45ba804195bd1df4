"""Published weights on the command line: ``predict``/``serve --model NAME --pretrained SPEC``,
the preprocessing that belongs to the weights (against torchvision's and timm's own
transforms), ``train --init-from URL``, ``info NAME`` and ``publish RUN FOLDER``.

Weight files are real ones the tests write (random weights) and serve from a real HTTP server
on 127.0.0.1; no other network. torchvision's own files cannot be had here, and a random file
cannot carry the sha256 prefix in torchvision's file names (the cache is checked against it
too), so ``--pretrained torchvision`` is followed to the mirror and its hash check, and
torchvision's metadata (ImageNet class names, resize 232 then crop 224, ...) is tested on a
deepres folder that carries it."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from local_server import FileServer, serving
from PIL import Image
from safetensors.torch import load_file
from timm.data import create_transform, resolve_data_config
from torchvision.transforms.functional import pil_to_tensor

from deepres import create_model
from deepres.checkpoints.published import save_pretrained
from deepres.cli import main
from deepres.data import decode_rgb, normalize
from deepres.inference import Predictor
from deepres.inference.predictor import resize_for
from deepres.models.pretrained import published_weights, timm_meta, torchvision_meta
from deepres.runtime.download import MIRROR_ENV, weights_cache

SYNTHETIC = "synthetic:3x8x8:3:16"


@pytest.fixture(scope="module")
def server() -> Iterator[FileServer]:
    with serving() as state:
        yield state


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPRES_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def torch_file(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 400x300 PNG written with PIL: smooth colour ramps and a disc, larger than 232."""
    y, x = np.mgrid[0:300, 0:400]
    disc = ((x - 250) ** 2 + (y - 140) ** 2 < 70**2) * 90
    arr = np.stack([(x * 0.6) % 256, (y * 0.8 + disc) % 256, ((x + y) * 0.3) % 256], -1)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def prepared(meta: dict, photo: Path) -> torch.Tensor:
    return Predictor("", model=torch.nn.Identity(), meta=meta).prepare(photo.read_bytes(), "p")[0]


@pytest.mark.parametrize("tag,resize", [("IMAGENET1K_V2", 232), ("IMAGENET1K_V1", 256)])
def test_preprocessing_is_torchvisions_own_transforms(photo, tag, resize):
    """The Predictor with torchvision's metadata prepares an image as ``weights.transforms()``
    does on the same decoded tensor (resize 232 or 256, bilinear, crop 224)."""
    meta = torchvision_meta("resnet50", tag)[1]
    assert meta["resize_size"] == resize and meta["interpolation"] == "bilinear"
    reference = torchvision.models.ResNet50_Weights[tag].transforms()
    expected = reference(pil_to_tensor(Image.open(photo).convert("RGB")))
    mine = prepared(meta, photo)
    assert mine.shape == expected.shape == (3, 224, 224)
    assert (mine - expected).abs().max().item() < 1e-6
    # without resize_size: as before, the shorter side to 224 / 0.875 = 256, then the crop
    plain = {k: meta[k] for k in ("classes", "mean", "std", "input_size")}
    old = torchvision.transforms.v2.Resize(256, antialias=True)(decode_rgb(photo.read_bytes(), "p"))
    old = torchvision.transforms.v2.CenterCrop(224)(old)
    assert torch.equal(prepared(plain, photo), normalize(old[None], meta["mean"], meta["std"])[0])
    assert (prepared(plain, photo) - mine).abs().max().item() > 0.01  # the two differ


def test_preprocessing_follows_timms_crop_pct_and_interpolation(photo):
    model = timm.create_model("resnet50d")
    cfg = {**model.pretrained_cfg, "crop_pct": 0.95, "interpolation": "bicubic"}
    meta = timm_meta({"architecture": "resnet50d", "pretrained_cfg": cfg}, "test")
    assert meta["resize_size"] == 235 and meta["interpolation"] == "bicubic"
    transform = create_transform(**resolve_data_config({}, model=model, pretrained_cfg=cfg))
    resize, crop = transform.transforms[:2]
    assert resize.size == 235 and crop.size == (224, 224)
    image = Image.open(photo).convert("RGB")
    assert torch.equal(
        resize_for(meta)(decode_rgb(photo.read_bytes(), "p")), crop(resize(pil_to_tensor(image)))
    )
    # timm on a PIL image: PIL's bicubic resize, within a level or two of torch's
    diff = (prepared(meta, photo) - transform(image)).abs()
    assert diff.max().item() < 2.01 / (255 * 0.224) and diff.mean().item() < 0.005


@pytest.fixture(scope="module")
def torchvision_folder(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A deepres folder carrying torchvision's ResNet-18 metadata and random weights, and
    torchvision's own model with those weights."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    model = create_model("resnet18")
    model.load_state_dict(reference.state_dict())
    folder = tmp_path_factory.mktemp("tv") / "resnet18-imagenet"
    save_pretrained(model, folder, torchvision_meta("resnet18")[1])
    return folder, reference


def predict_json(capsys, *args: str) -> list[dict]:
    assert main(["predict", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_prints_imagenet_class_names_as_torchvision_does(capsys, photo, torchvision_folder):
    folder, reference = torchvision_folder
    [result] = predict_json(
        capsys,
        "--model",
        "resnet18",
        "--pretrained",
        str(folder),
        str(photo),
        "--runtime",
        "eager",
        "--top-k",
        "3",
    )
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    image = weights.transforms()(pil_to_tensor(Image.open(photo).convert("RGB")))
    with torch.no_grad():
        probs = reference(image[None]).softmax(-1)[0]
    top = probs.topk(3)
    assert [r["class"] for r in result["top"]] == [
        weights.meta["categories"][i] for i in top.indices.tolist()
    ]
    assert all(
        abs(r["probability"] - p) < 1e-5
        for r, p in zip(result["top"], top.values.tolist(), strict=True)
    )
    # no --model: the folder names its model; --runtime torch and --tta keep working
    for extra in (["--runtime", "torch"], ["--runtime", "eager", "--tta", "flip"]):
        [other] = predict_json(capsys, "--pretrained", str(folder), str(photo), *extra)
        assert other["top"][0]["class"] == result["top"][0]["class"]
    assert main(["predict", "--pretrained", str(folder), str(photo), "--runtime", "eager"]) == 0
    assert weights.meta["categories"][top.indices[0]] in capsys.readouterr().out


def test_predict_torchvision_goes_through_the_mirror_and_checks_the_hash(
    capsys, server, photo, monkeypatch
):
    """``--pretrained torchvision`` asks the mirror for torchvision's file by its real name;
    a random file there cannot have the sha256 in that name, and is refused."""
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    path = "/pt" + url.split("download.pytorch.org", 1)[1]
    server.files[path] = torch_file(torchvision.models.resnet18().state_dict())
    monkeypatch.setenv(MIRROR_ENV, server.url("/pt"))
    argv = ["predict", "--model", "resnet18", "--pretrained", "torchvision", str(photo)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert path in server.requests
    assert "sha256" in err and url.rsplit("-", 1)[1].split(".")[0] in err
    assert hashlib.sha256(server.files[path]).hexdigest() in err
    assert not [p for p in weights_cache().rglob("*") if p.is_file()]  # nothing kept


def test_predict_refuses_weights_without_class_names_and_bad_pairs(
    capsys, server, photo, torchvision_folder
):
    server.files["/plain/resnet18.pth"] = torch_file(create_model("resnet18").state_dict())
    url = server.url("/plain/resnet18.pth")
    assert main(["predict", "--model", "resnet18", "--pretrained", url, str(photo)]) == 2
    err = capsys.readouterr().err
    assert "carries no classes" in err and "plain weight file or URL" in err
    cases = [
        (["--checkpoint", str(torchvision_folder[0]), "--pretrained", url], "exclude each other"),
        (["--model", "resnet18"], "--pretrained torchvision, say, for resnet18"),
        (["--pretrained", url], "does not name its model"),
        (["--pretrained", str(torchvision_folder[0]), "--ema"], "--ema reads a run's"),
    ]
    for args, message in cases:
        assert main(["predict", *args, str(photo)]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "--pretrained", "tochvision", str(photo)])
    assert "nor an http(s) URL or a published name" in capsys.readouterr().err


def test_info_lists_the_published_weights(capsys):
    assert main(["info", "resnet18"]) == 0
    out = capsys.readouterr().out
    names = published_weights("resnet18")
    assert "torchvision:IMAGENET1K_V1" in names and any(n.startswith("timm:") for n in names)
    listed = out.split("published weights", 1)[1].splitlines()[1:]
    assert [line.split()[0] for line in listed] == names
    assert "ImageNet top-1 69.76%" in out
    assert main(["info", "resnet20"]) == 0
    assert "published weights: none for resnet20" in capsys.readouterr().out


@pytest.fixture(scope="module")
def source_weights(server) -> tuple[str, dict[str, torch.Tensor]]:
    """A resnet20 for 10 classes (torch file) served at a URL with its sha256."""
    torch.manual_seed(123)
    state = create_model("resnet20", num_classes=10).state_dict()
    body = torch_file(state)
    server.files["/w/resnet20-c10.pth"] = body
    return f"{server.url('/w/resnet20-c10.pth')}#sha256={hashlib.sha256(body).hexdigest()}", state


def train_argv(out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        "resnet20",
        "--data",
        SYNTHETIC,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--progress",
        "lines",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, source_weights) -> Path:
    """One epoch on 3 synthetic classes from the URL's weights, at a learning rate so small
    that the convolutions stay as loaded (the new 3-class head is trained from scratch)."""
    out = tmp_path_factory.mktemp("init") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPRES_CACHE", str(out.parent / "cache"))
        mp.setenv("no_proxy", "*")
        argv = train_argv(out, "--init-from", source_weights[0], "--lr", "1e-12")
        assert main([*argv, "--weight-decay", "0"]) == 0
    return out


def test_init_from_a_url_starts_from_its_weights_with_a_new_head(tiny_run, source_weights):
    state = load_file(str(tiny_run / "model.safetensors"))
    source = source_weights[1]
    assert (state["conv1.weight"] - source["conv1.weight"]).abs().max().item() < 1e-6
    assert (state["layer3.2.conv2.weight"] - source["layer3.2.conv2.weight"]).abs().max() < 1e-6
    assert state["fc.weight"].shape == (3, 64) and source["fc.weight"].shape == (10, 64)


def test_init_from_a_wrong_hash_or_a_bad_name_is_refused(capsys, tmp_path, source_weights):
    url = source_weights[0].split("#")[0] + "#sha256=" + "0" * 64
    assert main(train_argv(tmp_path / "r", "--init-from", url)) == 2
    assert "0" * 64 in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(train_argv(tmp_path / "r", "--init-from", "torchvison"))
    assert "no such file or folder: torchvison" in capsys.readouterr().err


def test_publish_makes_a_folder_that_predict_and_init_from_read(capsys, tmp_path, tiny_run, photo):
    folder = tmp_path / "shared"
    assert main(["publish", str(tiny_run), str(folder)]) == 0
    assert "hf-hub:ORG/REPO" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["library_name"] == "deepres" and config["model"] == "resnet20"
    from_run = predict_json(capsys, "--checkpoint", str(tiny_run), str(photo), "--runtime", "eager")
    published = predict_json(capsys, "--pretrained", str(folder), str(photo), "--runtime", "eager")
    assert published[0]["top"] == from_run[0]["top"]
    assert main(["publish", str(tiny_run), str(folder)]) == 0  # again: its own two files
    capsys.readouterr()
    assert main(["publish", str(tiny_run), str(tiny_run)]) == 2
    assert "holds other files" in capsys.readouterr().err
    assert main(train_argv(tmp_path / "again", "--init-from", str(folder), "--lr", "1e-12")) == 0
    again = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert (
        again["conv1.weight"] - load_file(str(folder / "model.safetensors"))["conv1.weight"]
    ).abs().max() < 1e-6


def test_serve_takes_published_weights(capsys, photo, torchvision_folder):
    """The app ``deepres serve --pretrained FOLDER`` runs answers with ImageNet's names (the
    server loop itself is tested in tests/deploy/test_deploy_serve.py)."""
    from deepres.deploy.runtime import load_predictor
    from deepres.deploy.serve import create_app

    predictor = load_predictor(model="resnet18", pretrained=torchvision_folder[0], runtime="eager")
    client = create_app(predictor).test_client()
    answer = client.post("/predict", data=photo.read_bytes()).get_json()
    [expected] = predict_json(
        capsys, "--pretrained", str(torchvision_folder[0]), str(photo), "--runtime", "eager"
    )
    assert [t["class"] for t in answer["top"]] == [t["class"] for t in expected["top"]]
    assert set(predictor.classes) == set(
        torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    )
    assert main(["serve", "--model", "resnet18"]) == 2
    assert "--pretrained torchvision, say" in capsys.readouterr().err
