"""--freeze-epochs under torchrun: DDP is rebuilt when the body thaws (a DDP wrapper only
reduces the gradients of the parameters that required them when it was built), and two
processes train like one with the whole batch.

As in test_dist_torchrun: resnet20 on 129 seeded random 32x32 images, global batch 32,
2 epochs of 4 steps (the first frozen), ``--sync-bn`` and ``--augment none``, every
process computing in float64 (a ``sitecustomize`` sets the default dtype), so that one and
two processes, which sum in different orders, agree to far below any real difference.
"""

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from deepres import create_model

OPTIONS = [
    "--data", "synthetic:3x32x32:10:129", "--epochs", "2", "--batch-size", "32",
    "--lr", "0.01", "--augment", "none", "--sync-bn", "--threads", "1", "--progress", "off",
    "--freeze-epochs", "1", "--optimizer", "adamw", "--layer-lr-decay", "0.7",
]  # fmt: skip


def deepres_train(*args: str, env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "deepres", "train", *OPTIONS, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_processes_freeze_then_thaw_like_one_process(tmp_path):
    site = tmp_path / "float64"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import torch\ntorch.set_default_dtype(torch.float64)\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "DEEPRES_CACHE": str(tmp_path / "cache")}
    deepres_train("--nproc", "2", "--out", str(tmp_path / "two"), env=env)
    deepres_train("--out", str(tmp_path / "one"), env=env)
    two, one = (
        load_file(tmp_path / "two/model.safetensors"),
        load_file(tmp_path / "one/model.safetensors"),
    )
    assert two.keys() == one.keys() and two["conv1.weight"].dtype == torch.float64
    assert max((two[k] - one[k]).abs().max().item() for k in two) < 1e-9
    # After the thaw every parameter trained: each has AdamW state.
    state = torch.load(tmp_path / "two/state.pt", weights_only=True)
    parameters = list(create_model("resnet20", num_classes=10).parameters())
    assert state["step"] == 8 and len(state["optimizer"]["state"]) == len(parameters)
