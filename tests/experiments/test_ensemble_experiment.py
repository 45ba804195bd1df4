"""The ensemble experiment end to end at the tiny budget on real CIFAR images: the report's
numbers are recomputed here from the members' saved weights, by hand."""

import json
import logging
import re
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from deepres import DeepresError
from deepres.checkpoints import load_model
from deepres.cli import main
from deepres.data import load_split
from deepres.experiments import Settings, run_experiment
from deepres.experiments.ensemble import configs, ensemble_settings

MEMBERS = ["resnet8-seed0", "resnet8-seed1", "resnet8-seed2"]


@pytest.fixture(scope="module")
def experiment(cifar_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "ensemble"
    run_experiment(
        "ensemble", budget="tiny", data=str(cifar_small), out=out, threads=1, progress="off"
    )
    return out


def hand_probabilities(out, data):
    """Each member's softmax probabilities on the tiny budget's test images (10 per class),
    normalised here by hand, in one batch; and the labels."""
    test = load_split(data, "test", subset=10)
    probs = []
    for member in MEMBERS:
        model, meta = load_model(out / member / "model.safetensors")
        mean = torch.tensor(meta["mean"])[:, None, None]
        std = torch.tensor(meta["std"])[:, None, None]
        with torch.no_grad():
            probs.append(model((test.images.float() / 255 - mean) / std).softmax(-1))
    return torch.stack(probs), test.labels


def top_errors(probs, labels):
    top5 = probs.topk(5, dim=1).indices
    top1_error = (top5[:, 0] != labels).double().mean().item()
    top5_error = 1 - (top5 == labels[:, None]).any(1).double().mean().item()
    return top1_error, top5_error


def test_members_are_trained_with_the_budget_recipe(experiment):
    for seed, member in enumerate(MEMBERS):
        config = json.loads((experiment / member / "config.json").read_text())
        assert (config["recipe"], config["seed"], config["epochs"]) == ("fast-cpu", seed, 2)
        assert config["label_smoothing"] == 0.1 and config["schedule"] == "onecycle"
        assert (experiment / member / "summary.json").is_file()


def test_report_numbers_equal_a_recomputation_from_the_weights(experiment, cifar_small):
    probs, labels = hand_probabilities(experiment, str(cifar_small))
    assert len(labels) == 100
    results = json.loads((experiment / "ensemble.json").read_text())
    report = (experiment / "report.md").read_text()
    for k, (member, row) in enumerate(zip(MEMBERS, results["members"], strict=True)):
        top1, top5 = top_errors(probs[k], labels)
        assert row["run"] == member
        assert (row["top1_error"], row["top5_error"]) == pytest.approx((top1, top5))
        assert f"| ResNet-8 | {k} | {100 * top1:.2f}% | {100 * top5:.2f}% |" in report
    top1, top5 = top_errors(probs.mean(0), labels)  # the ensemble: mean of the probabilities
    assert results["ensemble"]["top1_error"] == pytest.approx(top1)
    assert results["ensemble"]["top5_error"] == pytest.approx(top5)
    assert f"| **ensemble of 3** | 0-2 | **{100 * top1:.2f}%** | **{100 * top5:.2f}%** |" in report
    for k, row in enumerate(results["curve"], start=1):
        assert row["top1_error"] == pytest.approx(top_errors(probs[:k].mean(0), labels)[0])
    best = min(top_errors(p, labels)[0] for p in probs)
    assert results["gain_top1"] == pytest.approx(best - top1)
    assert f"vs {100 * best:.2f}% for its best member" in report
    saved = load_file(str(experiment / "test-probabilities.safetensors"))
    assert torch.equal(saved["labels"], labels)
    for k, member in enumerate(MEMBERS):
        torch.testing.assert_close(saved[member], probs[k], rtol=1e-4, atol=1e-5)


def test_figure_plots_error_against_ensemble_size(experiment):
    with Image.open(experiment / "ensemble-size.png") as image:
        assert image.format == "PNG" and image.width >= 1000
    assert "(ensemble-size.png)" in (experiment / "report.md").read_text()
    results = json.loads((experiment / "ensemble.json").read_text())
    sidecar = json.loads((experiment / "ensemble-size.png").with_suffix(".json").read_text())
    panels = sidecar["panels"]
    assert [p["ylabel"] for p in panels] == ["test top-1 error (%)", "test top-5 error (%)"]
    series = {s["kind"]: s for s in panels[0]["series"]}
    assert series["ensemble"]["points"] == series["members"]["points"] == 3
    assert series["ensemble"]["last"] == pytest.approx(100 * results["ensemble"]["top1_error"])
    best = min(m["top1_error"] for m in results["members"])
    assert series["best member"]["last"] == pytest.approx(100 * best)


def test_rerun_keeps_the_members_and_seeds_choose_the_size(experiment, tmp_path, caplog):
    copy = tmp_path / "ensemble"
    shutil.copytree(experiment, copy)
    before = {m: (copy / m / "summary.json").stat().st_mtime_ns for m in MEMBERS}
    data = json.loads((copy / MEMBERS[0] / "config.json").read_text())["data"]
    argv = ["experiment", "ensemble", "--budget", "tiny", "--data", data, "--out", str(copy)]
    with caplog.at_level(logging.INFO):
        assert main([*argv, "--seeds", "2", "--progress", "off"]) == 0
    assert "resnet8-seed1: finished earlier, kept" in caplog.text
    assert {m: (copy / m / "summary.json").stat().st_mtime_ns for m in MEMBERS} == before
    results = json.loads((copy / "ensemble.json").read_text())
    assert [m["run"] for m in results["members"]] == MEMBERS[:2]
    assert re.search(r"\| \*\*ensemble of 2\*\* \| 0-1 \|", (copy / "report.md").read_text())


def test_budgets_and_options():
    small = ensemble_settings(Settings.create("ensemble", budget="small"))
    cfgs = configs(small)
    assert len(cfgs) == 4 and [c.seed for c in cfgs] == [0, 1, 2, 3]
    first = cfgs[0]
    assert (first.model, first.data, first.recipe, first.epochs) == (
        "resnet20",
        "cifar10-jpeg",
        "fast-cpu",
        3,
    )
    assert first.train_subset is None and first.test_subset is None
    # about 100 s per epoch of ResNet-20 on the 50k images on two cores: well within an hour
    passes = len(cfgs) * first.epochs * (50_000 // first.batch_size) * first.batch_size
    assert passes <= 600_000
    assert len(configs(ensemble_settings(Settings.create("ensemble", budget="tiny")))) == 3
    with pytest.raises(DeepresError, match="one depth"):
        ensemble_settings(Settings.create("ensemble", budget="tiny", depths=[8, 14]))
