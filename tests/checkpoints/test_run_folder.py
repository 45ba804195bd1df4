"""A run folder means its final weights, ``model.safetensors``, in every command that reads
one; ``best-val.safetensors`` (a --val-split run's) and an old run's test-chosen
``best.safetensors`` load when given by file name. A folder that holds such an old file says
so in one line. Every folder here also holds a decoy best file of other weights, so that a
command reading the wrong file gives other numbers."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from deepres import create_model
from deepres.checkpoints import (
    BEST_FILE,
    BEST_VAL_FILE,
    MODEL_FILE,
    load_model,
    read_meta,
    resolve_weights,
    save_weights,
)
from deepres.cli import main
from deepres.deploy import load_runner
from deepres.deploy.runtime import load_predictor
from deepres.inference import Predictor
from deepres.models.pretrained import resolve_pretrained
from deepres.train.evaluate import evaluate_checkpoint

DATA = "synthetic:3x16x16:4:64"
NOTICE = f"its {BEST_FILE} was chosen on the test split"


def other_weights(path: Path, like: Path) -> None:
    """A weight file with ``like``'s header and freshly initialised weights."""
    meta = read_meta(like)
    torch.manual_seed(1234)
    save_weights(path, create_model(meta["model"], **meta["model_args"]), meta)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """new: a --val-split run, its best-val.safetensors replaced by other weights; old: the
    same run as an older deepres left it, with a test-chosen best.safetensors (other weights)
    and no best-val.safetensors."""
    root = tmp_path_factory.mktemp("folders")
    threads = torch.get_num_threads()
    options = ["--model", "resnet8", "--data", DATA, "--epochs", "2", "--batch-size", "16",
               "--val-split", "16", "--threads", "1", "--progress", "off"]  # fmt: skip
    try:
        assert main(["train", *options, "--out", str(root / "new")]) == 0
    finally:
        torch.set_num_threads(threads)
    new, old = root / "new", root / "old"
    other_weights(new / BEST_VAL_FILE, new / MODEL_FILE)
    shutil.copytree(new, old)
    (old / BEST_VAL_FILE).rename(old / BEST_FILE)
    return {"new": new, "old": old}


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if NOTICE in r.getMessage()]


def test_a_run_folder_resolves_to_its_final_weights(folders):
    for name, best in (("new", BEST_VAL_FILE), ("old", BEST_FILE)):
        folder = folders[name]
        assert not equal(tensors(folder / best), tensors(folder / MODEL_FILE)), "no decoy"
        assert resolve_weights(folder) == folder / MODEL_FILE
        assert resolve_weights(folder / best) == folder / best  # by file name: that file
        model, _ = load_model(folder)
        assert equal(model.state_dict(), tensors(folder / MODEL_FILE))
        chosen, _ = load_model(folder / best)
        assert equal(chosen.state_dict(), tensors(folder / best))


def test_an_old_folder_says_once_that_its_best_was_chosen_on_the_test_split(
    folders, tmp_path, caplog
):
    old = tmp_path / "old"  # a folder of its own: the notice is given once per folder
    shutil.copytree(folders["old"], old)
    with caplog.at_level(logging.WARNING, logger="deepres"):
        assert resolve_weights(old / BEST_FILE) == old / BEST_FILE
        assert notices(caplog) == []  # asked for by file name: no notice
        resolve_weights(old)
        load_model(old)
        resolve_weights(old)
        resolve_weights(folders["new"])  # a folder without an old best.safetensors
    (line,) = notices(caplog)
    assert line.startswith(f"{old}: ") and "\n" not in line
    assert f"the folder means its final weights, {MODEL_FILE}" in line
    assert str(old / BEST_FILE) in line  # how to ask for the old file


def test_pretrained_takes_a_run_folder_as_its_final_weights(folders, caplog):
    new, old = folders["new"], folders["old"]
    assert resolve_pretrained(str(new)).path == new / MODEL_FILE
    with caplog.at_level(logging.WARNING, logger="deepres"):
        model = create_model("resnet8", num_classes=4, pretrained=str(old))
    assert equal(model.state_dict(), tensors(old / MODEL_FILE))
    assert len(notices(caplog)) == 1
    assert resolve_pretrained(str(old / BEST_FILE)).path == old / BEST_FILE


def test_serve_and_the_python_predictor_read_a_run_folder_as_its_final_weights(folders, tmp_path):
    image = write_image(tmp_path / "x.png")
    for folder in folders.values():
        final = Predictor(folder / MODEL_FILE).predict_file(image, top_k=4).top
        decoy = next(p for p in folder.glob("best*"))
        assert final != Predictor(decoy).predict_file(image, top_k=4).top
        assert Predictor(folder).predict_file(image, top_k=4).top == final
        served = load_predictor(str(folder), runtime="eager")  # what deepres serve runs
        assert served.predict_file(image, top_k=4).top == final


def write_image(path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def deepres(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepres", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def check_eval(old: Path, tmp_path: Path, stdout: str) -> None:
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["checkpoint"] == str(old / MODEL_FILE)
    assert report["test_top1"] == evaluate_checkpoint(old / MODEL_FILE).result.top1


def check_predict(old: Path, tmp_path: Path, stdout: str) -> None:
    (answer,) = json.loads(stdout)
    final = Predictor(old / MODEL_FILE).predict_file(tmp_path / "x.png", top_k=4)
    assert answer["top"] == final.as_dict()["top"]


def check_export(old: Path, tmp_path: Path, stdout: str) -> None:
    out = old / "model.torchscript.pt"  # named for the file it was made from
    assert f"wrote {out}" in stdout and out.is_file()
    program = load_runner(out, "torchscript")
    images = torch.randn(1, 3, 16, 16)
    model, _ = load_model(old / MODEL_FILE)
    with torch.no_grad():
        torch.testing.assert_close(program(images), model(images))


def check_average(old: Path, tmp_path: Path, stdout: str) -> None:
    averaged = tmp_path / "average" / MODEL_FILE
    assert read_meta(averaged)["averaged_from"] == [str(old / MODEL_FILE)]
    assert equal(tensors(averaged), tensors(old / MODEL_FILE))


def check_quantize(old: Path, tmp_path: Path, stdout: str) -> None:
    assert (old / "model.int8.pt2").is_file()  # named for the file it was made from
    assert not (old / "best.int8.pt2").exists()


COMMANDS = {
    "eval": (["eval", "--checkpoint", "{old}", "--runtime", "eager", "--out", "{tmp}/eval"],
             check_eval),
    "predict": (["predict", "--checkpoint", "{old}", "{tmp}/x.png", "--top-k", "4", "--json",
                 "--runtime", "eager"], check_predict),
    "export": (["export", "--checkpoint", "{old}", "--format", "torchscript"], check_export),
    "average": (["average", "{old}", "--out", "{tmp}/average", "--bn-batches", "0",
                 "--no-eval"], check_average),
    "quantize": (["quantize", "--checkpoint", "{old}", "--calib-data", DATA, "--images", "8",
                  "--check", "0"], check_quantize),
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_reads_an_old_run_folder_as_its_final_weights_with_one_notice(
    folders, tmp_path, command
):
    old = folders["old"]
    write_image(tmp_path / "x.png")
    args, check = COMMANDS[command]
    done = deepres(*(a.format(old=old, tmp=tmp_path) for a in args))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if NOTICE in line]
    assert len(lines) == 1, done.stderr
    check(old, tmp_path, done.stdout)
