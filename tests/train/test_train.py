"""Training end to end on real images: artefacts, exact resume, NaN stop, bad input."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepres import DeepresError, create_model
from deepres.checkpoints import load_model
from deepres.train import load_recipe, resolve_config, train
from deepres.train.schedule import learning_rate


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "deepres", *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def small_config(data, out, **overrides):
    options = dict(
        model="resnet20",
        data=str(data),
        out=str(out),
        epochs=2,
        batch_size=32,
        lr=0.05,
        progress="lines",
        threads=2,
    )
    options.update(overrides)
    return resolve_config(**options)


def test_two_epochs_lower_the_loss_and_write_every_artefact(cifar_small, tmp_path):
    out = tmp_path / "run"
    summary = train(small_config(cifar_small, out))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    for name in (
        "config.json",
        "metrics.csv",
        "model.safetensors",
        "state.pt",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("best*")), "a best checkpoint chosen on the test split"
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,lr")
    assert json.loads((out / "config.json").read_text())["model"] == "resnet20"
    assert summary["final_top1"] == rows[-1]["test_top1"]
    # The weights load into a bare model with load_state_dict.
    bare = create_model("resnet20", num_classes=10)
    bare.load_state_dict(load_file(out / "model.safetensors"))
    model, meta = load_model(out)
    assert meta["classes"][0] == "airplane" and len(meta["classes"]) == 10


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def test_sigkill_and_resume_give_bitwise_the_same_weights(tmp_path):
    data = "synthetic:3x32x32:10:384"
    common = [
        "--data",
        data,
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--checkpoint-every",
        "5",
        "--progress",
        "lines",
    ]
    reference = tmp_path / "reference"
    done = run_cli("train", *common, "--out", str(reference))
    assert done.returncode == 0, done.stderr

    # SIGKILL right after step 18 of 36 (DEEPRES_FAULT counts steps, not seconds): in epoch 2
    # of 12 steps, after the mid-epoch checkpoint of step 15 and before that of step 20
    killed = tmp_path / "killed"
    crashed = run_cli(
        "train", *common, "--out", str(killed), env={**os.environ, "DEEPRES_FAULT": "step:18"}
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    state = torch.load(killed / "state.pt", weights_only=True)
    assert (state["step"], state["epoch"]) == (15, 1), "not killed mid-epoch after step 15"
    assert not (killed / "summary.json").exists()
    resumed = run_cli("train", "--resume", str(killed), "--threads", "1")
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(reference), weights(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref_rows = (reference / "metrics.jsonl").read_text().splitlines()
    res_rows = (killed / "metrics.jsonl").read_text().splitlines()
    assert len(ref_rows) == len(res_rows) == 3


def test_nan_loss_stops_cleanly_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "nan"
    cfg = small_config("synthetic:3x32x32:10:256", out, lr=1e12, checkpoint_every=1, momentum=0.0)
    # Whichever comes first: a non-finite loss, or BatchNorm statistics that overflow.
    fault = r"(the loss became (nan|inf) at iteration|\S+ became non-finite at step) \d+"
    with pytest.raises(DeepresError, match=fault):
        train(cfg)
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] >= 1 and all(v.isfinite().all() for v in state["model"].values())
    load_model(out)  # the last good checkpoint still loads


def test_resume_refuses_another_model(tmp_path):
    out = tmp_path / "run"
    train(small_config("synthetic:3x32x32:10:64", out, epochs=1))
    result = run_cli("train", "--resume", str(out), "--model", "resnet32")
    assert result.returncode == 2
    assert "--model resnet32 differs from the run's resnet20" in result.stderr
    config = json.loads((out / "config.json").read_text())
    config["model"] = "resnet32"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(DeepresError, match="made for model 'resnet20'"):
        train(resolve_config(**{k: v for k, v in config.items() if k != "recipe"}), resume=True)


def test_a_second_run_in_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    train(small_config("synthetic:3x32x32:10:64", out, epochs=1))
    with pytest.raises(DeepresError, match="already holds a run"):
        train(small_config("synthetic:3x32x32:10:64", out, epochs=1))


def test_missing_data_folder_is_a_clear_error(tmp_path):
    result = run_cli("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_he2016_cifar_recipe_schedule():
    cfg = resolve_config("he2016-cifar", model="resnet110")
    assert cfg.iters == 64000 and cfg.batch_size == 128 and cfg.weight_decay == 1e-4
    lr = [learning_rate(cfg, s, 64000, 391) for s in (0, 31999, 32000, 47999, 48000, 63999)]
    assert lr == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert cfg.warmup_lr == 0.01 and cfg.warmup_until_error == 0.8
    assert load_recipe("he2016-imagenet")["batch_size"] == 256


def test_onecycle_and_cosine_schedules():
    cfg = resolve_config("fast-cpu")
    total = 1000
    lrs = [learning_rate(cfg, s, total, 100) for s in range(total)]
    peak = lrs.index(max(lrs))
    assert peak == int(cfg.warmup * total) and max(lrs) == pytest.approx(cfg.lr)
    assert lrs[0] < cfg.lr / 10 and lrs[-1] < cfg.lr / 100
    cosine = resolve_config(schedule="cosine", lr=0.2)
    assert learning_rate(cosine, 500, 1000, 10) == pytest.approx(0.1)


def test_bad_options_are_refused():
    with pytest.raises(DeepresError, match="unknown recipe 'fast'"):
        resolve_config("fast")
    with pytest.raises(DeepresError, match="--batch-size must be positive"):
        resolve_config(batch_size=0)
    result = run_cli("train", "--epochs", "0")
    assert result.returncode == 2 and "must be a positive integer" in result.stderr


def by_hand_input(path: Path, meta: dict) -> torch.Tensor:
    """A 32x32 RGB image file as the model's (1, 3, 32, 32) input, normalised by hand."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = torch.tensor(np.asarray(image.convert("RGB")), dtype=torch.float32)
    x = pixels.permute(2, 0, 1).unsqueeze(0) / 255
    mean, std = (torch.tensor(meta[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    return (x - mean) / std


def test_eval_and_predict_on_real_images(cifar_small, tmp_path):
    out = tmp_path / "run"
    train(small_config(cifar_small, out, epochs=1))
    result = run_cli("eval", "--checkpoint", str(out), "--data", str(cifar_small))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "eval.json").read_text())
    # top-1 against the saved model run here by hand on the same 200 real test images
    model, meta = load_model(out)
    files = sorted((cifar_small / "test").glob("*/*"))
    labels = torch.tensor([meta["classes"].index(f.parent.name) for f in files])
    with torch.no_grad():
        logits = model.eval()(torch.cat([by_hand_input(f, meta) for f in files]))
    assert report["count"] == 200 and len(files) == 200
    assert report["test_top1"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert len(report["confusion"]) == 10 and sum(map(sum, report["confusion"])) == 200
    assert "top-1 error" in result.stdout and (out / "confusion.png").stat().st_size > 1000

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    real = sorted((cifar_small / "test" / "cat").iterdir())[0]
    Image.open(real).convert("L").save(images / "gray.png")
    Image.open(real).convert("RGBA").resize((50, 37)).save(images / "rgba.png")
    (images / "broken.jpg").write_bytes(b"this is not an image")
    result = run_cli("predict", "--checkpoint", str(out), str(real), str(images), "--json")
    assert result.returncode == 2
    predictions = json.loads(result.stdout)
    assert len(predictions) == 4
    good = [p for p in predictions if "top" in p]
    assert len(good) == 3 and all(len(p["top"]) == 5 for p in good)
    for p in good:  # the 5 largest of the 10 softmax probabilities, largest first
        probs = [t["probability"] for t in p["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # the real 32x32 image: the model's own softmax, computed here by hand
    with torch.no_grad():
        soft = model(by_hand_input(real, meta)).softmax(1)[0]
    expected = [(meta["classes"][i], v) for v, i in zip(*soft.topk(5), strict=True)]
    (answer,) = [p for p in good if p["path"] == str(real)]
    assert [t["class"] for t in answer["top"]] == [c for c, _ in expected]
    for t, (_, v) in zip(answer["top"], expected, strict=True):
        assert t["probability"] == pytest.approx(v.item(), abs=1e-5)
    bad = [p for p in predictions if "error" in p]
    assert bad[0]["path"].endswith("broken.jpg") and "broken.jpg" in bad[0]["error"]
