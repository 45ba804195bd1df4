"""No code runs from a file deepres reads: pickles that would run a command when unpickled are
refused by real `deepres` processes, and the command's side effect never appears.

(The CIFAR batch reader, weight files given to ``create_model(pretrained=...)`` and ``.pt2``
programs are attacked in tests/data, tests/models and tests/deploy.)"""

import subprocess
import sys
from pathlib import Path

import torch

from deepres.cli import main


class Evil:
    """Unpickling this runs ``touch MARKER`` through os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the attack
        import os

        return (os.system, (f"touch {self.marker}",))


def deepres(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepres", *args], capture_output=True, text=True, timeout=300
    )


OPTIONS = ["--model", "resnet8", "--data", "synthetic:3x16x16:10:64", "--epochs", "1",
           "--batch-size", "32", "--threads", "1", "--progress", "off"]  # fmt: skip


def test_a_hostile_state_file_in_a_run_folder_is_refused_on_resume(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    assert main(["train", *OPTIONS, "--out", str(run)]) == 0
    state = torch.load(run / "state.pt", weights_only=True)
    state["rng_torch"] = Evil(marker)  # a real state file with one hostile object inside
    torch.save(state, run / "state.pt")
    done = deepres("train", "--resume", str(run), "--threads", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"refusing to load {run / 'state.pt'}" in done.stderr
    assert not marker.exists(), "the pickle ran"


def test_a_hostile_weight_file_for_init_from_is_refused(tmp_path):
    marker, weights = tmp_path / "pwned", tmp_path / "resnet8.pth"
    state = {k: v for k, v in torch.load(_weights(tmp_path), weights_only=True).items()}
    state["fc.bias"] = Evil(marker)
    torch.save(state, weights)
    done = deepres("train", *OPTIONS, "--init-from", str(weights), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "resnet8.pth" in done.stderr
    assert not marker.exists(), "the pickle ran"


def _weights(tmp_path: Path) -> Path:
    from deepres import create_model

    path = tmp_path / "good.pth"
    torch.save(create_model("resnet8", num_classes=10).state_dict(), path)
    return path
