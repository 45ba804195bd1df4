"""``deepres average``: weight averaging of real (tiny) runs, BatchNorm statistics recomputed,
checked against hand computation and against torch's own update_bn on the run itself."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from deepres import DeepresError
from deepres.checkpoints import load_model, read_meta, resolve_weights, save_weights
from deepres.cli import main
from deepres.data import load_split
from deepres.train import resolve_config, train
from deepres.train.average import average_checkpoints
from deepres.train.evaluate import evaluate_checkpoint

DATA = "synthetic:3x32x32:10:64"


def tiny_run(out, model="resnet8", seed=0):
    cfg = resolve_config(
        model=model,
        data=DATA,
        out=str(out),
        epochs=1,
        batch_size=16,  # 4 iterations
        lr=0.05,
        seed=seed,
        threads=1,
        progress="off",
    )
    train(cfg)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = tiny_run(root / "a", seed=0)
    copy = root / "a-copy"
    shutil.copytree(a, copy)
    b = tiny_run(root / "b", seed=1)
    deeper = tiny_run(root / "deeper", model="resnet14")
    return {"a": a, "copy": copy, "b": b, "deeper": deeper}


def weights(run):
    return load_file(str(resolve_weights(run)))


def test_identical_runs_with_kept_statistics_give_that_run(runs, tmp_path):
    result = average_checkpoints([runs["a"], runs["copy"]], tmp_path / "avg", bn_batches=0)
    assert result.path == tmp_path / "avg" / "model.safetensors"
    assert result.bn_images == 0
    averaged, original = load_file(str(result.path)), weights(runs["a"])
    assert averaged.keys() == original.keys()
    for key, value in original.items():
        assert averaged[key].dtype == value.dtype
        assert torch.equal(averaged[key], value), key
    meta = read_meta(result.path)
    assert meta["averaged_from"] == [str(resolve_weights(runs[r])) for r in ("a", "copy")]
    assert meta["model"] == "resnet8" and meta["data"] == DATA and "step" not in meta


def test_identical_runs_with_recomputed_statistics_match_update_bn_on_the_run(runs, tmp_path):
    # one batch of the whole training split: the statistics do not depend on the image order
    result = average_checkpoints(
        [runs["a"], runs["copy"]], tmp_path / "avg", bn_batches=5, batch_size=64
    )
    assert result.bn_images == 64
    model, meta = load_model(runs["a"])
    stored = {k: v.clone() for k, v in model.state_dict().items()}
    images = load_split(DATA, "train").images.float() / 255
    mean, std = torch.tensor(meta["mean"]), torch.tensor(meta["std"])
    torch.optim.swa_utils.update_bn([(images - mean[:, None, None]) / std[:, None, None]], model)
    expected, averaged = model.state_dict(), load_file(str(result.path))
    params = {name for name, _ in model.named_parameters()}
    for key, value in expected.items():
        if key in params:
            assert torch.equal(averaged[key], value), key
        else:
            torch.testing.assert_close(averaged[key], value, rtol=1e-5, atol=1e-6)
    assert averaged["bn1.num_batches_tracked"].item() == 1
    # the training-time statistics (momentum 0.1 over 4 batches) were really replaced
    assert not torch.allclose(averaged["bn1.running_var"], stored["bn1.running_var"], rtol=0.01)


def test_two_checkpoints_average_to_their_mean(runs, tmp_path):
    first, second = weights(runs["a"]), weights(runs["b"])
    kept = load_file(str(average_checkpoints([runs["a"], runs["b"]], tmp_path / "k", 0).path))
    for key, value in first.items():
        if value.is_floating_point():
            assert not torch.equal(value, second[key]) or "running" in key
            torch.testing.assert_close(kept[key], (value + second[key]) / 2, rtol=1e-6, atol=0)
        else:  # num_batches_tracked: the first checkpoint's
            assert torch.equal(kept[key], value)
    redone = average_checkpoints([runs["a"], runs["b"]], tmp_path / "r", 2, batch_size=16)
    assert redone.bn_images == 32
    recomputed = load_file(str(redone.path))
    model, _ = load_model(redone.path)
    for name, _ in model.named_parameters():  # only the BatchNorm buffers were recomputed
        assert torch.equal(recomputed[name], kept[name]), name
    assert not torch.equal(recomputed["bn1.running_mean"], kept["bn1.running_mean"])


def test_mismatched_checkpoints_are_refused_naming_both_files(runs, tmp_path):
    a, deeper = resolve_weights(runs["a"]), resolve_weights(runs["deeper"])
    with pytest.raises(DeepresError, match="model differs") as err:
        average_checkpoints([runs["a"], runs["deeper"]], tmp_path / "x")
    assert str(a) in str(err.value) and str(deeper) in str(err.value)
    model, meta = load_model(runs["a"])
    renamed = tmp_path / "renamed.safetensors"
    save_weights(renamed, model, {**meta, "classes": [f"c{i}" for i in range(10)]})
    with pytest.raises(DeepresError, match="classes differs") as err:
        average_checkpoints([runs["a"], renamed], tmp_path / "x")
    assert str(a) in str(err.value) and str(renamed) in str(err.value)
    assert not (tmp_path / "x").exists()
    with pytest.raises(DeepresError, match="training run folder"):
        average_checkpoints([runs["a"], runs["b"]], runs["b"])


def test_cli_averages_and_the_result_reads_like_any_run(runs, tmp_path, capsys):
    out = tmp_path / "avg"
    argv = ["average", str(runs["a"]), str(runs["b"]), "--out", str(out)]
    assert main([*argv, "--bn-batches", "2", "--batch-size", "16", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "averaged 2 checkpoints of resnet8" in printed
    for run in ("a", "b"):
        assert str(resolve_weights(runs[run])) in printed
    assert "recomputed on 32 training images" in printed
    assert f"saved {out / 'model.safetensors'}" in printed
    tested = evaluate_checkpoint(out).result
    assert f"top-1 error {100 * (1 - tested.top1):.2f}%" in printed
    assert main(["eval", "--checkpoint", str(out), "--out", str(tmp_path / "e")]) == 0
    report = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert report["test_top1"] == tested.top1 and report["count"] == 64
    assert main(["average", str(runs["a"]), "--out", str(runs["b"]), "--no-eval"]) == 2
    assert "training run folder" in capsys.readouterr().err
