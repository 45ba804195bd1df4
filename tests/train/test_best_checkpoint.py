"""A best checkpoint is chosen only on images held out of the training split, never on the
test split: real `deepres train` runs on synthetic data (random labels, so the held-out top-1
goes up and down), one with ``--val-split`` and one without, from the same seed.

Without held-out images a run keeps no best file and its summary gives the final test
figures only. With ``--val-split N`` it keeps ``best-val.safetensors``: the weights of the
first epoch with the highest held-out top-1 in ``metrics.jsonl``, checked bitwise against a
run of the same command stopped right after that epoch, and across a kill inside its write.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepres.checkpoints import BEST_FILE, BEST_VAL_FILE, MODEL_FILE, load_model, read_meta
from deepres.train import distributed as dist
from deepres.train import resolve_config
from deepres.train.batches import build_data
from deepres.train.evaluate import evaluate
from deepres.train.loop import add_test_results, set_up
from deepres.train.metrics import format_summary
from deepres.train.run import RunState

HELD_OUT = 96
OPTIONS = [
    "--model", "resnet8", "--data", "synthetic:3x16x16:10:256", "--epochs", "5",
    "--batch-size", "32", "--lr", "0.3", "--threads", "1", "--progress", "lines",
]  # fmt: skip
VAL = ["--val-split", str(HELD_OUT)]
STEPS_PER_EPOCH = (256 - HELD_OUT) // 32


def deepres_train(*args: str, fault: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepres", "train", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DEEPRES_FAULT": fault},
    )


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def same_tensors(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """test: evaluated on the test split; val: the same command with --val-split. Each with
    what it printed (the rows and the summary go to stderr)."""
    root = tmp_path_factory.mktemp("runs")
    found = {}
    for name, extra in (("test", []), ("val", VAL)):
        done = deepres_train(*OPTIONS, *extra, "--out", str(root / name))
        assert done.returncode == 0, done.stderr
        found[name] = (root / name, done.stderr)
    return found


def best_row(history: list[dict]) -> dict:
    """The first epoch with the highest top-1 (a later equal one does not replace it)."""
    top = max(r["test_top1"] for r in history)
    return next(r for r in history if r["test_top1"] == top)


def test_without_held_out_images_nothing_is_chosen_and_the_summary_is_the_final_epoch(runs):
    run, printed = runs["test"]
    history = rows(run)
    assert len(history) == 5 and all("test_top1" in r for r in history)
    assert not list(run.glob("best*")), "a checkpoint was chosen on the test split"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluated_on"] == "test split" and summary["held_out_images"] == 0
    assert summary["final_top1"] == history[-1]["test_top1"]
    assert summary["final_top5"] == history[-1]["test_top5"]
    assert not [key for key in summary if "best" in key], summary
    text = format_summary(summary)
    assert text in printed
    assert f"final weights ({MODEL_FILE}), test split: top-1" in text
    assert "per-epoch test-split figures: metrics.jsonl" in text
    assert "best" not in text.replace(str(run), "RUN")
    # what the folder holds is the final weights, those the run's state continues from
    state = torch.load(run / "state.pt", weights_only=True)
    final = load_file(run / MODEL_FILE)
    assert all(torch.equal(final[k], state["model"][k]) for k in final)


def test_with_held_out_images_best_val_is_the_epoch_with_their_best_top1(runs, tmp_path):
    run, printed = runs["val"]
    history = rows(run)
    best = best_row(history)
    # random labels: the held-out top-1 is not monotonic here, so the choice is a real one
    assert best["epoch"] < history[-1]["epoch"], [r["test_top1"] for r in history]
    assert not (run / BEST_FILE).exists()
    assert read_meta(run / BEST_VAL_FILE)["step"] == best["step"] == best["epoch"] * STEPS_PER_EPOCH
    assert not same_tensors(run / BEST_VAL_FILE, run / MODEL_FILE)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluated_on"] == "held-out training images"
    assert summary["held_out_images"] == HELD_OUT
    assert summary["final_top1"] == history[-1]["test_top1"]
    assert (summary["best_val_epoch"], summary["best_val_top1"]) == (
        best["epoch"],
        best["test_top1"],
    )
    assert format_summary(summary) in printed
    assert f"best on {HELD_OUT} held-out training images (epoch {best['epoch']}, " in printed
    # The same command stopped right after the best epoch's checkpoint: its weights then
    # are best-val's, bit for bit.
    stopped = tmp_path / "stopped"
    kill = f"step:{best['step'] + 1}"
    killed = deepres_train(*OPTIONS, *VAL, "--out", str(stopped), fault=kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert same_tensors(stopped / MODEL_FILE, run / BEST_VAL_FILE)


def test_the_rows_of_a_val_split_run_are_its_held_out_images(runs):
    """best-val, evaluated again on the images that --val-split held out, gives the top-1
    that its row in metrics.jsonl reports."""
    run, _ = runs["val"]
    cfg = resolve_config(**json.loads((run / "config.json").read_text()))
    data = build_data(cfg)
    assert data.held_out == HELD_OUT
    model, meta = load_model(run / BEST_VAL_FILE)
    result = evaluate(model, data.test.iter_epoch(0), len(meta["classes"])).result()
    assert result.count == HELD_OUT
    assert result.top1 == best_row(rows(run))["test_top1"]


@pytest.mark.parametrize("val_split", [0, 32])
def test_test_split_results_never_mark_weights_as_best(tmp_path, val_split):
    """add_test_results, the loop's own step: test-split results choose nothing however
    good they are; held-out ones choose the first of the best."""
    cfg = resolve_config(
        model="resnet8",
        data="synthetic:3x16x16:10:96",
        batch_size=32,
        val_split=val_split,
        threads=1,
        progress="off",
        out=str(tmp_path / "run"),
    )
    threads = torch.get_num_threads()
    try:
        ctx = dist.setup(cfg.device, cfg.threads)
        data, _, learner = set_up(cfg, ctx, pretrained=False)
        state, chosen = RunState(), []
        for _ in range(2):  # the same weights twice: the second is no better
            row: dict = {}
            chosen.append(add_test_results(row, ctx, data, learner, state))
            assert 0 <= row["test_top1"] <= 1
    finally:
        torch.set_num_threads(threads)
    if val_split:
        assert chosen == [True, False] and state.best_top1 == row["test_top1"]
    else:
        assert chosen == [False, False] and state.best_top1 == -1.0


def best_val_write(history: list[dict]) -> int:
    """The number of the atomic write inside which the run writes best-val.safetensors for
    its best epoch: config.json, then per epoch metrics.jsonl, metrics.csv, model, best-val
    (when the held-out top-1 is higher than before), state.pt."""
    writes, best = 1, -1.0
    for row in history:
        writes += 3
        if row["test_top1"] > best:
            best = row["test_top1"]
            writes += 1
            if row is best_row(history):
                return writes
        writes += 1
    raise AssertionError("no best epoch")


def test_a_kill_inside_the_best_val_write_resumes_to_the_same_files(runs, tmp_path):
    reference, _ = runs["val"]
    run = tmp_path / "run"
    fault = f"write:{best_val_write(rows(reference))}"
    killed = deepres_train(*OPTIONS, *VAL, "--out", str(run), fault=fault)
    assert killed.returncode == -signal.SIGKILL, f"{fault} did not fire: {killed.stderr}"
    assert len(rows(run)) == best_row(rows(reference))["epoch"]
    assert read_meta(run / MODEL_FILE)["step"] == best_row(rows(reference))["step"]
    resumed = deepres_train("--resume", str(run), "--threads", "1", "--progress", "off")
    assert resumed.returncode == 0, resumed.stderr
    for name in (MODEL_FILE, BEST_VAL_FILE):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    drop = ("time", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows(run)] == [
        {k: v for k, v in r.items() if k not in drop} for r in rows(reference)
    ]
