"""Every command refuses bad arguments before it starts work: exit status 2, a message that
names the bad value and what is allowed, no traceback, and nothing written.

Each case runs ``deepres.cli.main`` in this process, in an empty working folder; the inputs
(a tiny checkpoint, a run folder, an image, an empty folder) live in a folder of their own
that must be left as it was.
"""

import json
from pathlib import Path

import pytest
from PIL import Image

from deepres import create_model
from deepres.checkpoints import save_weights
from deepres.cli import main
from deepres.train import TrainConfig

SYNTHETIC = "synthetic:3x8x8:3:16"

# (argv, fragments of the message); {ckpt}, {run}, {img}, {empty}, {missing} are paths.
CASES = [
    # info
    (["info", "resnet5"], ["unknown model 'resnet5'", "Did you mean"]),
    (["info", "resnet20", "--input-size", "0"], ["--input-size", "positive integer, got '0'"]),
    (["info", "resnet20", "--input-size", "x"], ["--input-size", "positive integer, got 'x'"]),
    # train: sizes and numbers
    (["train", "--epochs", "0"], ["--epochs", "must be a positive integer, got '0'"]),
    (["train", "--iters", "-5"], ["--iters", "must be a positive integer, got '-5'"]),
    (["train", "--batch-size", "-1"], ["--batch-size", "positive integer, got '-1'"]),
    (["train", "--threads", "0"], ["--threads", "positive integer, got '0'"]),
    (["train", "--image-size", "0"], ["--image-size", "positive integer, got '0'"]),
    (["train", "--val-split", "0"], ["--val-split", "positive integer, got '0'"]),
    (["train", "--scale-lr", "0"], ["--scale-lr", "positive integer, got '0'"]),
    (["train", "--workers", "-1"], ["--workers", "an integer >= 0, got '-1'"]),
    (["train", "--seed", "-3"], ["--seed", "an integer >= 0, got '-3'"]),
    (["train", "--lr", "-0.1"], ["--lr must be a positive number, got -0.1"]),
    (["train", "--lr", "inf"], ["--lr must be a positive number, got inf"]),
    (["train", "--momentum", "-0.5"], ["--momentum must be >= 0, got -0.5"]),
    (["train", "--nesterov", "--momentum", "0"], ["--nesterov needs a positive --momentum"]),
    (["train", "--warmup", "-1"], ["--warmup must be >= 0", "got -1.0"]),
    (
        ["train", "--schedule", "onecycle", "--warmup", "1.5"],
        ["--warmup", "fraction of training in [0, 1)", "got 1.5"],
    ),
    (["train", "--label-smoothing", "1"], ["--label-smoothing must be in [0, 1)"]),
    (["train", "--milestones", "0.5", "1.5"], ["milestones", "each in (0, 1)"]),
    (
        ["train", "--batch-size", "10", "--grad-accum-steps", "3"],
        ["--batch-size 10 must be a multiple of --grad-accum-steps 3"],
    ),
    # train: names and paths
    (["train", "--model", "resnet21"], ["unknown model 'resnet21'", "list_models()"]),
    (["train", "--recipe", "fast"], ["unknown recipe 'fast'", "fast-cpu", "he2016-cifar"]),
    (["train", "--data", "nope"], ["'nope' is neither a known data set", "cifar10", "synthetic"]),
    (["train", "--data", "synthetic:0x8x8:3"], ["'synthetic:0x8x8:3'", "must be positive"]),
    (["train", "--data", "synthetic:3x8:3"], ["'synthetic:3x8:3'", "give CxHxW"]),
    (["train", "--data", "{empty}"], ["no split folder 'train'", "<split>/<class>/<images>"]),
    (["train", "--data-root", "{missing}"], ["--data-root", "no such folder", "missing"]),
    (["train", "--init-from", "{missing}"], ["--init-from", "no such file or folder"]),
    (["train", "--device", "gpu"], ["unknown device 'gpu'", "auto, cpu, cuda or cuda:N"]),
    (["train", "--device", "cuda:99"], ["cuda:99: this machine has", "use auto or cpu"]),
    (["train", "--schedule", "linear"], ["invalid choice: 'linear'", "cosine"]),
    (["train", "--amp", "fp8"], ["invalid choice: 'fp8'", "bf16"]),
    (["train", "--shortcut", "D"], ["invalid choice: 'D'"]),
    # train: launching through torchrun (refused before torchrun starts)
    (["train", "--nproc", "0"], ["--nproc", "positive integer, got '0'"]),
    (["train", "--nproc", "2", "--model", "nope"], ["unknown model 'nope'"]),
    (["train", "--nnodes", "0"], ["--nnodes", "N or MIN:MAX", "got '0'"]),
    (["train", "--nnodes", "3:2"], ["--nnodes", "1 <= MIN <= MAX", "got '3:2'"]),
    (["train", "--node-rank", "-1"], ["--node-rank", "an integer >= 0, got '-1'"]),
    (["train", "--max-restarts", "-2"], ["--max-restarts", "an integer >= 0, got '-2'"]),
    # train: resuming
    (["train", "--resume", "{missing}"], ["nothing to resume in", "no config.json"]),
    (["train", "--resume", "{run}", "--epochs", "3"], ["--epochs 3 differs from the run's 10"]),
    (
        ["train", "--resume", "{run}", "--recipe", "fast-cpu"],
        ["--recipe fast-cpu differs from the run's None", "start a new run"],
    ),
    # eval
    (["eval", "--checkpoint", "{missing}"], ["--checkpoint", "no such file or folder"]),
    (["eval", "--checkpoint", "{empty}"], ["holds no model.safetensors", "run folder"]),
    (["eval", "--checkpoint", "{ckpt}", "--batch-size", "0"], ["--batch-size", "got '0'"]),
    (["eval", "--checkpoint", "{ckpt}", "--subset", "-2"], ["--subset", "got '-2'"]),
    (["eval", "--checkpoint", "{ckpt}", "--data", "nope"], ["'nope' is neither", "cifar10"]),
    (
        ["eval", "--checkpoint", "{ckpt}", "--data", "{empty}", "--split", "val"],
        ["no split folder 'val' or 'test'"],
    ),
    (["eval", "--checkpoint", "{ckpt}", "--split", "dev"], ["invalid choice: 'dev'", "test"]),
    (["eval", "--checkpoint", "{ckpt}", "--data-root", "{missing}"], ["no such folder"]),
    (["eval", "--checkpoint", "{ckpt}", "--ten-crop"], ["--ten-crop is for image folders"]),
    # predict
    (["predict", "--checkpoint", "{ckpt}", "{missing}"], ["images", "no such file or folder"]),
    (["predict", "--checkpoint", "{missing}", "{img}"], ["--checkpoint", "no such file"]),
    (["predict", "--checkpoint", "{ckpt}", "{img}", "--top-k", "0"], ["--top-k", "got '0'"]),
    (["predict", "--checkpoint", "{ckpt}", "{empty}"], ["no image files found in", "empty"]),
    # bench
    (["bench", "--batch-size", "0"], ["--batch-size", "positive integer, got '0'"]),
    (["bench", "--rounds", "0"], ["--rounds", "positive integer, got '0'"]),
    (["bench", "--steps", "-1"], ["--steps", "positive integer, got '-1'"]),
    (["bench", "--threads", "0"], ["--threads", "positive integer, got '0'"]),
    (["bench", "--reference-workers", "2", "-1"], ["--reference-workers", ">= 0, got '-1'"]),
    (["bench", "--model", "resnet5"], ["unknown model 'resnet5'"]),
    (["bench", "--data", "nope"], ["'nope' is neither a known data set"]),
    (["bench", "--amp", "fp16"], ["invalid choice: 'fp16'", "bf16"]),
    (
        ["bench", "--mode", "infer", "--against", "reference"],
        ["--against reference compares training speed", "--mode train or both"],
    ),
    (
        ["bench", "--mode", "train", "--against", "torchvision"],
        ["--against torchvision compares inference speed", "--mode infer or both"],
    ),
    (["bench", "--mode", "infer", "--against", "torchvision"], ["torchvision has no resnet20"]),
    (["bench", "--json", "{missing}/bench.json"], ["--json", "no such folder"]),
    # experiment and plot
    (["experiment", "nope"], ["invalid choice: 'nope'", "degradation"]),
    (["experiment", "degradation", "--budget", "huge"], ["invalid choice: 'huge'", "tiny"]),
    (["experiment", "degradation", "--seeds", "0"], ["--seeds", "got '0'"]),
    (["experiment", "degradation", "--threads", "0"], ["--threads", "got '0'"]),
    (["experiment", "degradation", "--depths", "0"], ["--depths", "got '0'"]),
    (
        ["experiment", "degradation", "--data", SYNTHETIC, "--depths", "10"],
        ["--depths 10", "6n+2 layers"],
    ),
    (["experiment", "degradation", "--data", "nope"], ["'nope' is neither a known data set"]),
    (["experiment", "degradation", "--device", "tpu"], ["unknown device 'tpu'"]),
    (["experiment", "shortcuts", "--from", "{run}"], ["--from is for the layer-responses"]),
    (["experiment", "layer-responses", "--from", "{missing}"], ["--from", "no such folder"]),
    (["plot", "{missing}"], ["RUN", "no such file or folder"]),
    (["plot", "{empty}"], ["no metrics.jsonl in", "run folder"]),
    (["plot", "{empty}", "--metric", "acc"], ["invalid choice: 'acc'", "error"]),
    # export
    (["export", "--checkpoint", "{ckpt}"], ["required", "--format"]),
    (["export", "--checkpoint", "{ckpt}", "--format", "tflite"], ["invalid choice: 'tflite'"]),
    (["export", "--checkpoint", "{missing}", "--format", "onnx"], ["no such file or folder"]),
    (
        ["export", "--checkpoint", "{ckpt}", "--format", "torchscript", "--opset", "18"],
        ["--opset applies to --format onnx only"],
    ),
    (
        ["export", "--checkpoint", "{ckpt}", "--format", "onnx", "--opset", "11"],
        ["--opset 11", "use --opset 18 or higher"],
    ),
    (["export", "--checkpoint", "{ckpt}", "--format", "onnx", "--opset", "0"], ["got '0'"]),
    (
        ["export", "--checkpoint", "{ckpt}", "--format", "onnx", "--out", "{ckpt}"],
        ["is the checkpoint itself", "choose another file"],
    ),
    (
        ["export", "--checkpoint", "{ckpt}", "--format", "onnx", "--images", "{missing}"],
        ["--images", "no such file or folder"],
    ),
    # quantize
    (
        ["quantize", "--checkpoint", "{ckpt}", "--calib-data", SYNTHETIC, "--images", "1"],
        ["--images 1", "at least 2 images"],
    ),
    (
        ["quantize", "--checkpoint", "{ckpt}", "--calib-data", SYNTHETIC, "--images", "0"],
        ["--images", "positive integer, got '0'"],
    ),
    (
        ["quantize", "--checkpoint", "{ckpt}", "--calib-data", "nope"],
        ["'nope' is neither a known data set"],
    ),
    (
        ["quantize", "--checkpoint", "{ckpt}", "--calib-data", SYNTHETIC, "--check", "-1"],
        ["--check", "an integer >= 0, got '-1'"],
    ),
    (
        ["quantize", "--checkpoint", "{ckpt}", "--calib-data", SYNTHETIC, "--out", "{ckpt}"],
        ["is the checkpoint itself"],
    ),
    (
        ["quantize", "--checkpoint", "{missing}", "--calib-data", SYNTHETIC],
        ["--checkpoint", "no such file or folder"],
    ),
    # serve
    (["serve", "--checkpoint", "{ckpt}", "--port", "70000"], ["from 0 to 65535", "'70000'"]),
    (["serve", "--checkpoint", "{ckpt}", "--port", "-1"], ["from 0 to 65535", "'-1'"]),
    (["serve", "--checkpoint", "{ckpt}", "--max-mb", "0"], ["--max-mb", "positive number"]),
    (["serve", "--checkpoint", "{ckpt}", "--max-mb", "nan"], ["--max-mb", "got 'nan'"]),
    (["serve", "--checkpoint", "{ckpt}", "--threads", "0"], ["--threads", "got '0'"]),
    (["serve", "--checkpoint", "{missing}"], ["--checkpoint", "no such file or folder"]),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("inputs")
    ckpt = root / "tiny.safetensors"
    meta = {
        "model": "resnet8",
        "model_args": {"num_classes": 3},
        "classes": ["a", "b", "c"],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "input_size": 32,
        "data": SYNTHETIC,
    }
    save_weights(ckpt, create_model("resnet8", num_classes=3).eval(), meta)
    run = root / "run"
    run.mkdir()
    config = TrainConfig(model="resnet8", data=SYNTHETIC, out=str(run))
    (run / "config.json").write_text(config.to_json())
    Image.new("RGB", (8, 8)).save(root / "cat.png")
    (root / "empty").mkdir()
    return {
        "ckpt": str(ckpt),
        "run": str(run),
        "img": str(root / "cat.png"),
        "empty": str(root / "empty"),
        "missing": str(root / "missing"),
        "root": str(root),
    }


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_cases_cover_every_command():
    commands = "info train eval predict bench experiment plot export quantize serve".split()
    assert len(CASES) >= 40 and {argv[0] for argv, _ in CASES} == set(commands)


@pytest.mark.parametrize(("argv", "fragments"), CASES, ids=[" ".join(argv) for argv, _ in CASES])
def test_bad_arguments_are_refused_before_any_work(
    argv, fragments, inputs, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = snapshot(Path(inputs["root"]))
    try:
        status = main([arg.format(**inputs) for arg in argv])
    except SystemExit as stop:  # argparse
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("deepres") and "error:" in message, err
    for fragment in fragments:
        assert fragment.format(**inputs) in message, message
    assert not any(work.iterdir()), "the command wrote into the working folder"
    assert snapshot(Path(inputs["root"])) == before, "the command changed its inputs"


def test_the_resume_run_config_is_what_the_cases_assume(inputs):
    values = json.loads((Path(inputs["run"]) / "config.json").read_text())
    assert values["epochs"] == 10 and values["recipe"] is None
