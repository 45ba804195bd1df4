"""deepres bench on a folder of large images: the cached images cut by batched crops, and
the data's share of a training step in the report."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image


def test_bench_reports_the_data_share_of_a_step_on_large_images(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        folder = tmp_path / "photos" / "train" / cls
        folder.mkdir(parents=True)
        for i in range(6):
            small = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)
            Image.fromarray(small).resize((200, 150)).save(folder / f"{i}.jpg")
    out = tmp_path / "bench.json"
    options = ["--model", "resnet8", "--mode", "train", "--data", str(tmp_path / "photos"),
               "--input-size", "32", "--batch-size", "4", "--rounds", "2", "--steps", "1",
               "--threads", "1", "--json", str(out)]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "deepres", "bench", *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    ours = json.loads(out.read_text())["train"]["ours"]
    assert 0 < ours["data_share"] < 1 and len(ours["data_share_per_round"]) == 2
    assert 0 < ours["data_ms_per_batch"] < ours["ms_per_batch"]
    assert "of a training step" in result.stdout
