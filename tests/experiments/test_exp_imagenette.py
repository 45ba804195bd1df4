"""The Imagenette experiment at the tiny budget on real Imagenette photographs: one run per
seed, the report's figures read back from the runs' own metrics, and a second call that
trains nothing."""

import json

import pytest

from deepres import DeepresError
from deepres.experiments import run_experiment
from deepres.experiments.imagenette import LEADERBOARD
from deepres.train import read_metrics


def test_imagenette_experiment_reports_each_seed_and_resumes(imagenette_small, tmp_path):
    out = tmp_path / "imagenette"
    options = dict(budget="tiny", data=str(imagenette_small), out=out, threads=1, progress="off")
    report = run_experiment("imagenette", seeds=2, **options)
    text = report.read_text()
    for seed in (0, 1):
        rows = read_metrics(out / f"seed{seed}")
        assert [row["epoch"] for row in rows] == [1, 2]
        assert f"| seed {seed} | 2 | {100 * rows[-1]['test_top1']:.2f}% |" in text
        config = json.loads((out / f"seed{seed}" / "config.json").read_text())
        assert config["seed"] == seed and config["recipe"] == "imagenette"
    figure = json.loads((out / "imagenette.json").read_text())
    assert [s["label"] for s in figure["panels"][0]["series"]][:2] == ["seed 0", "seed 1"]
    assert "leaderboard" in text.lower() and "no entry" in text  # 32 px has no row
    mtime = (out / "seed0" / "model.safetensors").stat().st_mtime_ns
    run_experiment("imagenette", seeds=2, **options)  # finished runs are kept
    assert (out / "seed0" / "model.safetensors").stat().st_mtime_ns == mtime


def test_epochs_option_belongs_to_imagenette(tmp_path):
    with pytest.raises(DeepresError, match="--epochs is for the imagenette experiment"):
        run_experiment("degradation", budget="tiny", epochs=3, out=tmp_path)
    assert LEADERBOARD[128] == {5: 87.43, 20: 91.57, 80: 93.55}
