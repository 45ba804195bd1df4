"""Data-parallel training with real torchrun processes on CPU (gloo).

Every run is resnet20 on 129 seeded random 32x32 images (129 test images: shards of 65 and
64), global batch 32, 2 epochs = 8 SGD steps, checkpoints every 3 steps, ``--augment none``
so that the single-process run has exactly the same pixels, ``--sync-bn`` so that BatchNorm
sees the same batches. Torchrun workers run each in its own empty working directory with a
relative ``--out``: what rank 1 wrote would land in its own directory.

Every process computes in float64 (a ``sitecustomize`` on PYTHONPATH sets torch's default
dtype): in float32 the gradient of resnet20 itself carries rounding errors of ~3e-4 (conv1,
measured against float64 at initialisation), so 1 and 2 processes, which sum in different
orders, could not be compared to 1e-5; in float64 any real difference stands out.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepres.cli import main

OPTIONS = [
    "--data",
    "synthetic:3x32x32:10:129",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--lr",
    "0.05",
    "--augment",
    "none",
    "--sync-bn",
    "--threads",
    "1",
    "--checkpoint-every",
    "3",
    "--progress",
    "lines",
]
# Each worker in its own folder ROOT/rankN, as if on a machine of its own.
PER_RANK_DIR = 'root=$1; shift; mkdir -p "$root/rank$RANK" && cd "$root/rank$RANK" && exec "$@"'
RUN_FILES = {
    ".lock",
    ".torchrun-job",
    "config.json",
    "metrics.jsonl",
    "metrics.csv",
    "model.safetensors",
    "state.pt",
    "summary.json",
}


@pytest.fixture(scope="module")
def float64_env(tmp_path_factory) -> dict[str, str]:
    """Environment for subprocesses that compute in float64 (see the module docstring)."""
    site = tmp_path_factory.mktemp("float64")
    (site / "sitecustomize.py").write_text("import torch\ntorch.set_default_dtype(torch.float64)\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "DEEPRES_CACHE": str(site / "cache")}


def torchrun(root: Path, *launcher: str, env: dict[str, str]):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += [*launcher, "--no-python", "sh", "-c", PER_RANK_DIR, "sh", str(root)]
    command += [sys.executable, "-m", "deepres", "train", *OPTIONS, "--out", "run"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def in_process(*argv: str, status: int = 0, dtype: torch.dtype = torch.float64) -> None:
    """``deepres ...`` in this process (one process, no torchrun), computing in ``dtype``."""
    threads, default = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        assert main(list(argv)) == status
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(default)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def parallel(tmp_path_factory, float64_env) -> Path:
    """An uninterrupted 2-process run (plain ``torchrun --nproc-per-node 2``)."""
    root = tmp_path_factory.mktemp("parallel")
    torchrun(root, env=float64_env)
    return root


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The same training in one process with the whole batch."""
    out = tmp_path_factory.mktemp("single") / "run"
    in_process("train", *OPTIONS, "--out", str(out))
    return out


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_processes_with_sync_bn_train_like_one_process_with_the_whole_batch(parallel, single):
    two, one = weights(parallel / "rank0" / "run"), weights(single)
    assert max_difference(two, one) < 1e-5
    assert two["conv1.weight"].dtype == torch.float64
    assert two["bn1.num_batches_tracked"].item() == 8
    for a, b in zip(rows(parallel / "rank0" / "run"), rows(single), strict=True):
        assert a["step"] == b["step"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_top1"] == b["test_top1"]


def test_only_rank_0_writes_and_its_test_accuracy_is_a_plain_eval(parallel, tmp_path):
    # Rank 0 reports the metrics of the sharded evaluation (65 + 64 images, summed).
    assert list((parallel / "rank1").rglob("*")) == [], "rank 1 wrote files"
    run = parallel / "rank0" / "run"
    assert {p.name for p in run.iterdir()} - {"tensorboard"} == RUN_FILES
    last = rows(run)[-1]
    checkpoint = str(run / "model.safetensors")  # float64 weights, evaluated in float32:
    in_process("eval", "--checkpoint", checkpoint, "--out", str(tmp_path), dtype=torch.float32)
    plain = json.loads((tmp_path / "eval.json").read_text())
    assert plain["count"] == 129
    assert plain["test_top1"] == last["test_top1"] and plain["test_top5"] == last["test_top5"]
    assert plain["test_loss"] == pytest.approx(last["test_loss"], rel=1e-5)


def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_nothing_happened(
    parallel, float64_env, tmp_path
):
    # Static rendezvous on a fixed port; rank 1 SIGKILLs itself after step 7; torchrun
    # restarts both workers, which continue from the checkpoint of step 6, mid-epoch 2.
    launcher = ["--master-port", str(free_port()), "--max-restarts", "1"]
    done = torchrun(tmp_path, *launcher, env={**float64_env, "DEEPRES_FAULT": "step:7:rank1"})
    assert "torchrun restart 1: continuing from step 6" in done.stdout
    assert list((tmp_path / "rank1").rglob("*")) == []
    run, reference = tmp_path / "rank0" / "run", parallel / "rank0" / "run"
    a, b = weights(run), weights(reference)
    assert all(torch.equal(a[k], b[k]) for k in a), "not bitwise the uninterrupted weights"
    for a, b in zip(rows(run), rows(reference), strict=True):
        for key in ("epoch", "step", "lr", "train_error", "test_loss", "test_top1", "test_top5"):
            assert a[key] == b[key], key
        # The epoch's loss sum resumes from the checkpoint's total: another order of sums.
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-12)


def test_a_two_process_run_continues_in_one_process(single, float64_env, tmp_path):
    # `deepres train --nproc 2` without restarts: rank 0 dies after step 7, the job fails
    # and leaves the checkpoint of step 6 (mid-epoch 2), which one process then finishes.
    out = tmp_path / "run"
    failed = subprocess.run(
        [sys.executable, "-m", "deepres", "train", "--nproc", "2", *OPTIONS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**float64_env, "DEEPRES_FAULT": "step:7:rank0"},
    )
    assert failed.returncode == 2 and "torchrun exited with status" in failed.stderr
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 6
    in_process("train", *OPTIONS, "--out", str(out), status=2)  # a fresh run is refused
    in_process("train", "--resume", str(out), "--threads", "1")
    assert max_difference(weights(out), weights(single)) < 1e-5
    assert [r["step"] for r in rows(out)] == [4, 8]
    assert rows(out)[1]["train_loss"] == pytest.approx(rows(single)[1]["train_loss"], rel=1e-5)
