"""``deepres train --ema DECAY``: the moving average of the weights against a hand computation
(BatchNorm's statistics included), bitwise resume after a kill, and ``load_model(run,
ema=True)``.

The hand computation follows the definition: ema_0 = w_0 (the weights before the first step),
ema_t = d_t * ema_{t-1} + (1 - d_t) * w_t after step t, in float64, from the weights of a
real training captured after every step; d_t = decay (plain) or, with the default warm-up,
min(decay, (1 + t) / (10 + t)). The resume tests kill real ``deepres train``
processes at a chosen step or file write (``DEEPRES_FAULT``, as tests/train/test_faults.py)."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepres import DeepresError
from deepres.checkpoints import EMA_FILE, MODEL_FILE, load_model, resolve_weights
from deepres.cli import main
from deepres.train import distributed as dist
from deepres.train import resolve_config
from deepres.train.ema import WeightEMA
from deepres.train.evaluate import evaluate_checkpoint
from deepres.train.loop import forward_backward, set_up, sgd_step
from deepres.train.run import RunState

DECAY = 0.9
STEPS = 5


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def plain(step: int) -> float:
    return DECAY


def warming_up(step: int) -> float:
    return min(DECAY, (1 + step) / (10 + step))


@pytest.fixture(scope="module", params=[plain, warming_up], ids=["plain", "warm-up"])
def five_steps(tmp_path_factory, request):
    """Five real SGD steps of resnet20 on synthetic images with --ema 0.9 (plain, or with
    warm-up): the learner, the run's state, the weights (with BatchNorm's buffers) before
    the first step and after each one, and the decay of each step."""
    out = tmp_path_factory.mktemp("steps") / "run"
    cfg = resolve_config(
        model="resnet20",
        data="synthetic:3x32x32:10:256",
        batch_size=32,
        lr=0.1,
        epochs=1,
        ema=DECAY,
        ema_warmup=request.param is warming_up,
        threads=1,
        progress="off",
        out=str(out),
    )
    threads = torch.get_num_threads()
    try:
        data, _, learner = set_up(cfg, dist.setup(cfg.device, cfg.threads), pretrained=True)
        criterion, state = torch.nn.CrossEntropyLoss(), RunState()
        weights = [snapshot(learner.model)]
        for images, labels in islice(data.train.iter_epoch(0), STEPS):
            forward_backward(learner, criterion, images, labels, 1, state.where)
            state.step += 1
            sgd_step(learner, cfg.lr, state.step)
            weights.append(snapshot(learner.model))
    finally:
        torch.set_num_threads(threads)
    return learner, state, weights, request.param


def hand_ema(weights: list[dict[str, torch.Tensor]], decay=plain) -> dict[str, torch.Tensor]:
    """The EMA by its definition, in float64; integer buffers are the last weights' own."""
    ema = {k: v.double() for k, v in weights[0].items()}
    for step, w in enumerate(weights[1:], start=1):
        d = decay(step)
        for k, v in w.items():
            ema[k] = d * ema[k] + (1 - d) * v.double() if v.is_floating_point() else v
    return ema


def assert_matches(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], keys):
    for k in keys:
        torch.testing.assert_close(actual[k].double(), expected[k], rtol=1e-5, atol=1e-7)


def test_the_ema_equals_the_hand_computed_one_after_every_step(five_steps):
    learner, state, weights, decay = five_steps
    ema = learner.ema.state_dict()
    assert state.step == STEPS and ema.keys() == weights[0].keys()
    parameters = [name for name, _ in learner.model.named_parameters()]
    assert_matches(ema, hand_ema(weights, decay), parameters)
    # The average is none of the weights it averages: it lags behind the last ones...
    last = weights[-1]["conv1.weight"]
    assert (ema["conv1.weight"] - last).abs().max() > 100 * (last.abs().max() * 1e-5)
    # ... and the decay of each step is the one asked for, not the other one.
    other = warming_up if decay is plain else plain
    gap = (ema["fc.weight"].double() - hand_ema(weights, other)["fc.weight"]).abs().max()
    assert gap > 1e-3, "the EMA used the other decay schedule"


def test_warm_up_fades_out_the_initial_weights():
    # the share of w_0 in ema_t is the product of the decays: plain 0.999 keeps 12% of the
    # random initial weights after 2,145 steps (5 epochs of Fashion-MNIST at batch 128)
    model = torch.nn.Linear(2, 2)
    shares = {}
    for warmup in (False, True):
        ema = WeightEMA(model, 0.999, warmup=warmup)
        shares[warmup] = math.prod(ema.decay_at(t) for t in range(1, 2146))
    assert shares[False] == pytest.approx(0.999**2145) and shares[False] > 0.1
    assert shares[True] < 1e-9
    assert WeightEMA(model, 0.999).decay_at(100_000) == 0.999  # capped by the decay asked for


def test_batchnorm_statistics_are_averaged_and_the_batch_count_copied(five_steps):
    learner, _, weights, decay = five_steps
    ema, expected = learner.ema.state_dict(), hand_ema(weights, decay)
    statistics = [k for k in ema if k.endswith(("running_mean", "running_var"))]
    assert len(statistics) == 2 * 19  # resnet20: bn1 and two BatchNorms in each of 9 blocks
    assert_matches(ema, expected, statistics)
    mean = "layer1.0.bn1.running_mean"
    assert not torch.allclose(ema[mean], weights[-1][mean]), "the raw statistics were copied"
    counts = [k for k in ema if k.endswith("num_batches_tracked")]
    assert counts and all(ema[k].item() == STEPS and ema[k].dtype == torch.long for k in counts)


# --- Checkpoints and resume (real deepres train processes) ------------------------------

OPTIONS = [
    "--model", "resnet8", "--data", "synthetic:3x16x16:10:192", "--epochs", "2",
    "--batch-size", "32", "--lr", "0.05", "--checkpoint-every", "2", "--threads", "1",
    "--progress", "lines", "--ema", str(DECAY),
]  # fmt: skip
TRAIN_STEPS = 12  # 2 epochs of 6 steps


def deepres_train(*args: str, fault: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepres", "train", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DEEPRES_FAULT": fault},
    )


def rows(run: Path) -> list[dict]:
    drop = ("time", "images_per_s")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, str]:
    """An uninterrupted run with --ema 0.9, and the rows it printed."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = deepres_train(*OPTIONS, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done.stderr  # the progress and the rows go to stderr


def test_a_run_with_ema_writes_its_average_beside_the_weights(reference):
    run, printed = reference
    meta = json.loads(load_file_meta(run / EMA_FILE))
    assert meta["ema"] == DECAY and meta["step"] == TRAIN_STEPS and meta["model"] == "resnet8"
    state = torch.load(run / "state.pt", weights_only=True)
    saved = load_file(run / EMA_FILE)
    assert saved.keys() == state["ema"].keys()
    assert all(torch.equal(saved[k], state["ema"][k]) for k in saved)
    history = rows(run)
    assert len(history) == 2 and all("ema_test_top1" in r for r in history)
    assert all(r["ema_test_error"] == 1 - r["ema_test_top1"] for r in history)
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"ema_test_loss", "ema_test_top1", "ema_test_top5", "ema_test_error"} <= set(header)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_ema_top1"] == history[-1]["ema_test_top1"]
    assert not [key for key in summary if key.startswith("best")]  # chosen on the test split
    last = history[-1]
    assert f"ema err {100 * last['ema_test_error']:5.2f}%" in printed, printed


def load_file_meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata()["deepres"]


@pytest.mark.parametrize(
    "fault",
    [
        "step:3",  # inside epoch 1, between the checkpoints of steps 2 and 4
        "write:6",  # inside the ema.safetensors write of step 4 (writes: config, then model,
        # ema, state at each checkpoint), with model.safetensors already one step ahead
    ],
)
def test_a_killed_run_with_ema_resumes_to_bitwise_the_same_average(tmp_path, reference, fault):
    uninterrupted, _ = reference
    run = tmp_path / "run"
    killed = deepres_train(*OPTIONS, "--out", str(run), fault=fault)
    assert killed.returncode == -signal.SIGKILL, f"the fault {fault} did not fire"
    assert torch.load(run / "state.pt", weights_only=True)["step"] == 2
    assert main(["train", "--resume", str(run), "--threads", "1", "--progress", "off"]) == 0
    assert (run / EMA_FILE).read_bytes() == (uninterrupted / EMA_FILE).read_bytes()
    a, b = load_file(run / MODEL_FILE), load_file(uninterrupted / MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in b), "the weights differ"
    assert rows(run) == rows(uninterrupted)  # the EMA's test results included


# --- load_model(run, ema=True) ----------------------------------------------------------


def test_load_model_with_ema_gives_the_average_that_training_evaluated(reference):
    run, _ = reference
    model, meta = load_model(run, ema=True)
    saved = load_file(run / EMA_FILE)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert meta["ema"] == DECAY and not model.training
    raw, _ = load_model(run / MODEL_FILE)
    assert not torch.equal(raw.state_dict()["fc.weight"], loaded["fc.weight"])
    # Evaluated again from the file: the test top-1 that training reported for the average.
    again = evaluate_checkpoint(run / EMA_FILE).result
    last = rows(run)[-1]
    assert again.count == 192 and again.top1 == last["ema_test_top1"]
    assert again.loss == pytest.approx(last["ema_test_loss"], rel=1e-5)


def test_ema_needs_a_run_folder_that_was_trained_with_ema(reference, tmp_path):
    run, _ = reference
    without = tmp_path / "without-ema"
    without.mkdir()
    shutil.copy(run / MODEL_FILE, without / MODEL_FILE)
    load_model(without)  # its weights load without --ema
    with pytest.raises(DeepresError, match=r"was trained without --ema: it has no ema"):
        load_model(without, ema=True)
    with pytest.raises(DeepresError, match=r"give the run folder, or give the file itself"):
        load_model(run / MODEL_FILE, ema=True)
    with pytest.raises(DeepresError, match="checkpoint not found"):
        resolve_weights(tmp_path / "nothing", ema=True)
    assert resolve_weights(run, ema=True) == run / EMA_FILE
    assert resolve_weights(run) == run / MODEL_FILE  # the final weights
