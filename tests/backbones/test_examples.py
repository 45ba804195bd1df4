"""The detection and segmentation examples run end to end at ``--budget tiny``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def test_examples_at_the_tiny_budget(tmp_path):
    if not (SHARED_DATA / "imagenette-224").is_dir():
        pytest.skip(f"{SHARED_DATA} is not here (see ../shared/data/README.md)")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    runs = {
        name: subprocess.Popen(
            [
                sys.executable,
                str(REPO / "examples" / f"{name}.py"),
                "--budget",
                "tiny",
                "--out",
                str(tmp_path / name),
                "--data-root",
                str(SHARED_DATA),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )  # fmt: skip
        for name in ("detection", "segmentation")
    }
    outputs = {name: run.communicate(timeout=300)[0] for name, run in runs.items()}
    for name, run in runs.items():
        assert run.returncode == 0, outputs[name][-3000:]
        assert "step     3" in outputs[name], outputs[name][-3000:]
    assert "detection: mAP@0.5 " in outputs["detection"].splitlines()[-1]
    last = outputs["segmentation"].splitlines()[-1]
    assert "segmentation: mIoU " in last and "all-background baseline" in last
