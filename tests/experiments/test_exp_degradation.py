"""The degradation and layer-responses experiments end to end at the tiny budget, on real
CIFAR images; the report's numbers come from the runs' files."""

import json
import shutil

import pytest
import torch
from PIL import Image

from deepres import DeepresError
from deepres.experiments import run_experiment
from deepres.experiments.layer_responses import layer_response_stds
from deepres.models.resnet import cifar_resnet

NETS = ["plain8", "plain14", "resnet8", "resnet14"]


@pytest.fixture(scope="module")
def degradation(cifar_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "degradation"
    report = run_experiment(
        "degradation", budget="tiny", data=str(cifar_small), out=out, threads=1, progress="off"
    )
    return report.parent


def last_row(run):
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def test_degradation_writes_runs_report_and_figures(degradation):
    for net in NETS:
        assert (degradation / net / "summary.json").is_file()
        assert len((degradation / net / "metrics.jsonl").read_text().splitlines()) == 3
    report = (degradation / "report.md").read_text()
    for label in ("plain-8", "plain-14", "ResNet-8", "ResNet-14"):
        assert f"| {label} |" in report
    # the outcome sentence quotes the final training errors read from metrics.jsonl
    deep, shallow = last_row(degradation / "plain14"), last_row(degradation / "plain8")
    # the verdict follows the numbers: degradation is shown when the deeper plain net ends
    # with no lower a training error than the shallower one
    verdict = "NOT shown" if deep["train_error"] < shallow["train_error"] else "shown"
    assert (
        f"plain-14 final training error {100 * deep['train_error']:.2f}% vs plain-8 "
        f"{100 * shallow['train_error']:.2f}%: degradation of the deeper plain net {verdict}."
    ) in report
    for name in ("degradation-plain", "degradation-resnet", "fig1-plain"):
        with Image.open(degradation / f"{name}.png") as image:
            assert image.format == "PNG" and image.width >= 500 and image.height >= 350
        assert f"({name}.png)" in report
    panel = json.loads((degradation / "degradation-plain.json").read_text())["panels"][0]
    assert (panel["xlabel"], panel["ylabel"]) == ("iterations", "error (%)")
    kinds = {s["kind"]: s for s in panel["series"]}
    assert set(kinds) == {"train plain-8", "test plain-8", "train plain-14", "test plain-14"}
    assert all(s["points"] == 3 for s in panel["series"])
    assert kinds["train plain-14"]["last"] == pytest.approx(100 * deep["train_error"])


def test_report_numbers_follow_the_metrics_files(degradation, tmp_path):
    copy = tmp_path / "degradation"
    shutil.copytree(degradation, copy)
    before = {net: (copy / net / "summary.json").stat().st_mtime_ns for net in NETS}
    metrics = copy / "plain14" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows[-1]["train_error"], rows[-1]["test_error"] = 0.4321, 0.1234
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))

    run_experiment("degradation", budget="tiny", data=data_of(copy), out=copy)

    report = (copy / "report.md").read_text()
    assert "| plain-14 |" in report and "43.21%" in report and "12.34%" in report
    assert "plain-14 final training error 43.21% vs plain-8" in report
    sidecar = json.loads((copy / "degradation-plain.json").read_text())
    series = {s["kind"]: s for s in sidecar["panels"][0]["series"]}
    assert series["train plain-14"]["last"] == pytest.approx(43.21)
    # nothing was trained again: every run was finished
    assert {net: (copy / net / "summary.json").stat().st_mtime_ns for net in NETS} == before


def data_of(run_folder):
    return json.loads((run_folder / "plain8" / "config.json").read_text())["data"]


def test_a_run_made_with_other_settings_is_not_reused(degradation, tmp_path):
    copy = tmp_path / "degradation"
    shutil.copytree(degradation, copy)
    with pytest.raises(DeepresError, match="plain8 was trained with data="):
        run_experiment("degradation", budget="tiny", data=str(tmp_path), out=copy)


def test_layer_responses_from_degradation_runs(degradation, tmp_path):
    out = tmp_path / "responses"
    report = run_experiment("layer-responses", budget="tiny", source=degradation, out=out)
    measured = json.loads((out / "responses.json").read_text())
    assert list(measured) == ["plain-8", "plain-14", "ResNet-8", "ResNet-14"]
    # stem + 2 per block: 7 layers for 8-layer nets, 13 for 14-layer nets
    assert [len(m["stds"]) for m in measured.values()] == [7, 13, 7, 13]
    assert all(m["images"] == 100 for m in measured.values())
    text = report.read_text()
    res, plain = measured["ResNet-14"]["stds"], measured["plain-14"]["stds"]
    mean = sum(res) / len(res)
    assert f"ResNet-14 vs plain-14: mean std {mean:.3f} vs {sum(plain) / len(plain):.3f}" in text
    assert "deeper ResNet has smaller responses: " in text
    with Image.open(out / "layer-responses.png") as image:
        assert image.width >= 800
    panels = json.loads((out / "layer-responses.json").read_text())["panels"]
    assert [p["xlabel"] for p in panels] == [
        "layer index (original)",
        "layer index (sorted by magnitude)",
    ]
    assert [s["label"] for s in panels[1]["series"]] == list(measured)


def test_layer_response_is_the_bn_output_before_relu_and_addition():
    torch.manual_seed(0)
    model = cifar_resnet(8).eval()
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):  # non-trivial BN so pre/post-ReLU differ
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(16, 3, 32, 32)
    stds = layer_response_stds(model, x)
    with torch.no_grad():
        stem = model.bn1(model.conv1(x))
        block = model.layer1[0]
        inner = block.bn1(block.conv1(torch.relu(stem)))
        residual = block.bn2(block.conv2(torch.relu(inner)))
    assert stds[:3] == pytest.approx([stem.std().item(), inner.std().item(), residual.std().item()])
    assert stds[1] != pytest.approx(torch.relu(inner).std().item())


def test_bad_experiment_options_are_refused(tmp_path):
    with pytest.raises(DeepresError, match="6n\\+2"):
        run_experiment("degradation", budget="tiny", depths=[10], out=tmp_path)
    with pytest.raises(DeepresError, match="unknown budget"):
        run_experiment("degradation", budget="huge", out=tmp_path)
    with pytest.raises(DeepresError, match="--from is for the layer-responses"):
        run_experiment("degradation", budget="tiny", source=tmp_path, out=tmp_path)
    with pytest.raises(DeepresError, match="no finished plain/ResNet runs"):
        run_experiment("layer-responses", budget="tiny", source=tmp_path, out=tmp_path / "o")
