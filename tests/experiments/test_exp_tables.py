"""cifar-table (with a real interruption and resume), shortcuts, ``deepres plot`` and the
budgets, on real CIFAR images at the tiny budget."""

import json
import logging
import os
import signal
import statistics
import subprocess
import sys

import pytest
import torch
from PIL import Image

from deepres.cli import build_parser, main
from deepres.cli.experiment import options_from
from deepres.errors import DeepresError
from deepres.experiments import ExperimentOptions, Settings, get_budget, run_experiment
from deepres.models import count_params
from deepres.models.resnet import cifar_resnet


def test_interrupted_cifar_table_resumes_without_retraining(cifar_small, tmp_path, caplog):
    out = tmp_path / "table"
    command = [
        sys.executable,
        "-m",
        "deepres",
        "experiment",
        "cifar-table",
        "--budget",
        "tiny",
        "--depths",
        "8",
        "--seeds",
        "2",
        "--data",
        str(cifar_small),
        "--out",
        str(out),
        "--threads",
        "1",
        "--progress",
        "off",
    ]
    # SIGKILL right after the second run has checkpointed its first epoch: the 4th epoch of
    # the process (3 epochs per run at the tiny budget), counted by DEEPRES_FAULT, not timed
    env = {**os.environ, "DEEPRES_FAULT": "epoch:4"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "resnet8" / "summary.json").is_file()
    assert not (out / "resnet8-seed1" / "summary.json").exists()
    state = torch.load(out / "resnet8-seed1" / "state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 5
    finished = (out / "resnet8" / "summary.json").stat().st_mtime_ns
    first_row = (out / "resnet8-seed1" / "metrics.jsonl").read_text().splitlines()[0]

    with caplog.at_level(logging.INFO):
        report = run_experiment(
            "cifar-table", budget="tiny", depths=[8], seeds=2, data=str(cifar_small), out=out
        )
    assert "resnet8: finished earlier, kept" in caplog.text
    assert "resnet8-seed1: resuming from its last checkpoint" in caplog.text
    assert (out / "resnet8" / "summary.json").stat().st_mtime_ns == finished
    rows = (out / "resnet8-seed1" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3 and rows[0] == first_row  # epoch 1 kept, not trained again

    text = report.read_text()
    assert "shortened schedule (15 iterations instead of the paper's 64,000" in text
    finals = [
        100 * json.loads((out / run / "metrics.jsonl").read_text().splitlines()[-1])["test_error"]
        for run in ("resnet8", "resnet8-seed1")
    ]
    mean, std = statistics.mean(finals), statistics.stdev(finals)
    params = count_params(cifar_resnet(8))
    assert f"| ResNet-8 | {params:,} | {mean:.2f} ± {std:.2f}% | {min(finals):.2f}% | 2 |" in text
    assert "paper, published" in text
    with Image.open(out / "cifar-table.png") as image:
        assert image.width >= 1000
    panels = json.loads((out / "cifar-table.json").read_text())["panels"]
    assert panels[1]["xlabel"] == "depth (layers)"
    assert [s["kind"] for s in panels[1]["series"]] == ["ours"]  # no paper figure for 8/14


@pytest.fixture(scope="module")
def shortcuts(cifar_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "shortcuts"
    run_experiment(
        "shortcuts", budget="tiny", data=str(cifar_small), out=out, threads=1, progress="off"
    )
    return out


def test_shortcut_options_side_by_side(shortcuts):
    out = shortcuts
    text = (out / "report.md").read_text()
    params = {o: count_params(cifar_resnet(8, shortcut=o)) for o in "ABC"}
    assert params["A"] < params["B"] < params["C"]
    for option in "ABC":
        row = json.loads((out / f"resnet8-{option}" / "metrics.jsonl").read_text().splitlines()[-1])
        assert f"| ResNet-8 | {option} | {params[option]:,} | {100 * row['test_error']:.2f}% |" in (
            text
        )
    assert "25.03%" in text and "ImageNet" in text
    sidecar = json.loads((out / "shortcuts.json").read_text())
    labels = [s["label"] for s in sidecar["panels"][0]["series"] if s["label"]]
    assert labels == ["ResNet-8 A", "ResNet-8 B", "ResNet-8 C"]


def test_plot_command_draws_any_runs(shortcuts, tmp_path, capsys):
    out = shortcuts
    figure = tmp_path / "figs" / "loss.png"
    runs = [str(out / "resnet8-A"), str(out / "resnet8-C")]
    assert main(["plot", *runs, "--out", str(figure), "--metric", "loss", "--x", "epoch"]) == 0
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.width >= 500
    panel = json.loads(figure.with_suffix(".json").read_text())["panels"][0]
    assert (panel["xlabel"], panel["ylabel"]) == ("epochs", "loss")
    assert [s["label"] for s in panel["series"] if s["label"]] == ["resnet8-A", "resnet8-C"]
    assert main(["plot", str(tmp_path), "--out", str(figure)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_budgets_are_data():
    paper = Settings.create("cifar-table", budget="paper").config("resnet110", "r")
    assert (paper.iters, paper.batch_size, paper.lr, paper.milestones) == (
        64000,
        128,
        0.1,
        [0.5, 0.75],
    )
    assert paper.train_subset is None and paper.warmup_lr == 0.01
    assert Settings.create("cifar-table", budget="paper").depths == [20, 32, 44, 56, 110]
    # small degradation: four nets within about a million ResNet-20 image-passes on a CPU
    small = Settings.create("degradation", budget="small")
    cfg = small.config("resnet20", "r")
    per_net = (10 * cfg.train_subset // cfg.batch_size) * cfg.batch_size * cfg.epochs
    cost = {20: 1.0, 56: 2.8}  # time per image relative to ResNet-20
    assert small.depths == [20, 56] and small.data == "fashion-mnist"
    assert Settings.create("cifar-table", budget="small").data == "cifar10-jpeg"
    assert 2 * sum(per_net * cost[d] for d in small.depths) <= 1_000_000
    assert get_budget("tiny")["train"]["epochs"] <= 3


def test_options_come_as_flags_keywords_or_a_dataclass(tmp_path):
    args = build_parser().parse_args(
        ["experiment", "cifar-table", "--depths", "8", "--seeds", "2", "--from", str(tmp_path)]
    )
    options = options_from(args)
    assert options == ExperimentOptions(depths=[8], seeds=2, source=str(tmp_path))
    assert Settings.create("cifar-table", options) == Settings.create(
        "cifar-table", depths=[8], seeds=2, source=tmp_path
    )
    with pytest.raises(DeepresError, match="--epochs is for the imagenette experiment only"):
        run_experiment("cifar-table", epochs=3)


@pytest.mark.parametrize("argv", [["experiment", "nope"], ["plot", ".", "--metric", "acc"]])
def test_cli_rejects_bad_choices(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert "invalid choice" in capsys.readouterr().err
