"""The extreme-depth experiment end to end at the tiny budget: the real ResNet-1202 and
pre-activation ResNet-1001 (and ResNet-110, pre-activation ResNet-164), each trained for a
few iterations on real CIFAR-10 images shrunk to 8x8 pixels (at 32x32 the two 1000-layer
nets would take minutes on a CPU; the nets are the full-depth ones, only the images are
small). The report's numbers come from the runs' metrics files and memory.json; no NaN."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from deepres import DeepresError
from deepres.experiments import EXPERIMENTS, run_experiment
from deepres.experiments.extreme_depth import LABELS, NETS, PROBE
from deepres.models import count_params, create_model

SIDE = 8


@pytest.fixture(scope="module")
def tiny_cifar(cifar_small, tmp_path_factory):
    """The first 2 training and 1 test CIFAR image of each class, shrunk to 8x8."""
    dest = tmp_path_factory.mktemp("cifar-8px")
    for split, keep in (("train", 2), ("test", 1)):
        for class_dir in sorted((cifar_small / split).iterdir()):
            (dest / split / class_dir.name).mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:keep]:
                with Image.open(image) as im:
                    small = im.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR)
                small.save(dest / split / class_dir.name / f"{image.stem}.png")
    return dest


@pytest.fixture(scope="module")
def extreme(tiny_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "extreme-depth"
    report = run_experiment(
        "extreme-depth", budget="tiny", data=str(tiny_cifar), out=out, threads=1, progress="off"
    )
    return report.parent


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_registered():
    assert "extreme-depth" in EXPERIMENTS


def test_the_real_thousand_layer_nets_train_and_the_report_says_so(extreme):
    report = (extreme / "report.md").read_text()
    for net in NETS:
        config = json.loads((extreme / net / "config.json").read_text())
        assert config["model"] == net and config["batch_size"] == 5
        assert config["grad_checkpointing"] == (net in ("resnet1202", "preact_resnet1001"))
        metrics = rows(extreme / net)
        assert len(metrics) == 2 and metrics[-1]["step"] == 4
        for row in metrics:  # no NaN in training (eval may blow up: see the report)
            assert all(math.isfinite(row[k]) for k in ("lr", "train_loss", "train_error"))
        test_bad = [r["epoch"] for r in metrics if not math.isfinite(r["test_loss"])]
        first, last = metrics[0]["train_loss"], metrics[-1]["train_loss"]
        label = LABELS[net]
        assert f"| {label} |" in report
        assert f"- {label}: training loss {first:.4f} (epoch 1) -> {last:.4f} (epoch 2" in report
        assert "no NaN in its training loss, error and lr (2 epochs)" in report
        if test_bad:
            assert f"a NaN or infinite test loss at epoch(s) {test_bad}" in report
        assert f"{100 * metrics[-1]['train_error']:.2f}%" in report
    # real depths: the full nets, not scaled-down stand-ins
    params = {net: count_params(create_model(net, num_classes=10)) for net in NETS[1::2]}
    assert params["resnet1202"] > 19_000_000 and params["preact_resnet1001"] > 10_000_000
    assert f"{params['resnet1202']:,}" in report


def test_memory_is_measured_with_and_without_checkpointing(extreme):
    memory = json.loads((extreme / "memory.json").read_text())
    assert memory["setup"]["shape"] == {"chans": 3, "size": SIDE, "classes": 10}
    report = (extreme / "report.md").read_text()
    for net in NETS:
        off, on = memory["results"][net]["off"], memory["results"][net]["on"]
        assert off["peak_mb"] > 0 and on["peak_mb"] > 0 and off["finite"] and on["finite"]
        assert not off["grad_checkpointing"] and on["grad_checkpointing"]
        assert f"| {LABELS[net]} | {off['peak_mb']:,.0f} | {on['peak_mb']:,.0f} |" in report
    # At 8 px the activations are too small for checkpointing to lower the peak; the same
    # probe on ResNet-110 with 32 images of 32 px shows that it does (measured: 277 MiB above
    # the model without, 94 MiB with)
    grown = {ckpt: probe_growth_mib("resnet110", 32, 32, ckpt) for ckpt in (False, True)}
    assert grown[True] < 0.6 * grown[False], grown


def probe_growth_mib(net: str, batch: int, side: int, checkpointing: bool) -> float:
    """Peak minus start memory of one training step in the experiment's own probe process."""
    args = [net, batch, 3, side, 10, int(checkpointing), 1, 1, "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", PROBE, *map(str, args)],
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},  # freed tensors leave at once
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["finite"]
    return result["peak_mb"] - result["base_mb"]


def test_figure_has_loss_and_error_of_all_four_nets(extreme):
    with Image.open(extreme / "extreme-depth.png") as image:
        assert image.format == "PNG" and image.width >= 1000
    panels = json.loads((extreme / "extreme-depth.json").read_text())["panels"]
    assert [(p["xlabel"], p["ylabel"]) for p in panels] == [
        ("iterations", "loss"),
        ("iterations", "error (%)"),
    ]
    train_loss = {s["kind"]: s["last"] for s in panels[0]["series"]}
    for net in NETS:
        assert train_loss[f"train {LABELS[net]}"] == pytest.approx(
            rows(extreme / net)[-1]["train_loss"]
        )
    assert "(extreme-depth.png)" in (extreme / "report.md").read_text()


def test_report_numbers_follow_the_metrics_files(extreme, tmp_path):
    copy = tmp_path / "extreme-depth"
    shutil.copytree(extreme, copy)
    metrics = copy / "resnet1202" / "metrics.jsonl"
    changed = rows(copy / "resnet1202")
    changed[-1]["train_loss"], changed[-1]["train_error"] = 9.8765, 0.4321
    metrics.write_text("".join(json.dumps(r) + "\n" for r in changed))
    data = json.loads((copy / "resnet1202" / "config.json").read_text())["data"]

    run_experiment("extreme-depth", budget="tiny", data=data, out=copy)

    report = (copy / "report.md").read_text()
    assert "-> 9.8765 (epoch 2" in report and "43.21%" in report
    assert "ResNet-1202: training loss" in report and "does NOT fall" in report
    assert "All four nets train: NO." in report


def test_depths_do_not_apply(tmp_path):
    with pytest.raises(DeepresError, match="--depths does not apply"):
        run_experiment("extreme-depth", budget="tiny", depths=[20], out=tmp_path / "x")
