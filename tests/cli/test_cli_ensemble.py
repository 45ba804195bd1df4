"""``deepres eval``/``predict`` with several ``--checkpoint``s, ``--tta`` and ``--ema``, run
through ``deepres.cli.main`` on tiny real runs and real CIFAR images."""

import json

import pytest
import torch

from deepres.cli import main
from deepres.inference import Predictor

TRAIN = ["--model", "resnet8", "--epochs", "1", "--batch-size", "50", "--threads", "1",
         "--progress", "off"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(cifar_small, tmp_path_factory):
    """a, b: two runs on the same 200 real CIFAR images (b with EMA); other: other classes."""
    root = tmp_path_factory.mktemp("cli-ensemble")
    data = ["--data", str(cifar_small), "--train-subset", "20"]
    assert main(["train", *TRAIN, *data, "--seed", "1", "--out", str(root / "a")]) == 0
    b = ["--seed", "2", "--ema", "0.9", "--out", str(root / "b")]
    assert main(["train", *TRAIN, *data, *b]) == 0
    other = ["--data", "synthetic:3x32x32:4:64", "--out", str(root / "other")]
    assert main(["train", *TRAIN, *other]) == 0
    return {name: root / name for name in ("a", "b", "other")}


def run_eval(capsys, tmp_path, name: str, *args: str) -> tuple[str, dict]:
    """``deepres eval ARGS --out tmp/NAME`` -> (stdout, its eval.json)."""
    out = tmp_path / name
    assert main(["eval", *args, "--out", str(out)]) == 0
    return capsys.readouterr().out, json.loads((out / "eval.json").read_text())


def test_eval_of_two_checkpoints_reports_both_members_and_the_ensemble(runs, tmp_path, capsys):
    a, b = str(runs["a"]), str(runs["b"])
    _, alone_a = run_eval(capsys, tmp_path, "a", "--checkpoint", a)
    _, alone_b = run_eval(capsys, tmp_path, "b", "--checkpoint", b)
    stdout, report = run_eval(capsys, tmp_path, "ab", "--checkpoint", a, "--checkpoint", b)
    lines = stdout.splitlines()
    assert lines[0] == "ensemble of 2 checkpoints on " + alone_a["data"] + " (test, 200 images)"
    assert lines[1] == f"  member 1: {runs['a'] / 'model.safetensors'} (resnet8)"
    for label in ("member 1:", "member 2:", "ensemble:"):
        assert any(line.startswith(label) and "top-5 error" in line for line in lines), label
    assert "per-class accuracy (ensemble):" in lines
    assert [m["checkpoint"] for m in report["members"]] == report["checkpoints"]
    for member, alone in zip(report["members"], (alone_a, alone_b), strict=True):
        assert member["test_top1"] == alone["test_top1"]
        assert member["test_top5"] == alone["test_top5"]
    assert report["count"] == 200 and len(report["per_class"]) == 10
    assert sum(map(sum, report["confusion"])) == 200
    top1 = report["test_top1"]
    assert f"ensemble:  top-1 error {100 * (1 - top1):.2f}%" in stdout


def test_default_ensemble_report_goes_beside_the_first_member(runs, capsys):
    a, b = str(runs["a"]), str(runs["b"])
    assert main(["eval", "--checkpoint", a, "--checkpoint", b]) == 0
    assert (runs["a"] / "ensemble-eval" / "eval.json").is_file()
    assert f"saved {runs['a'] / 'ensemble-eval' / 'confusion.png'}" in capsys.readouterr().out


def test_members_with_different_classes_are_a_clear_error(runs, tmp_path, capsys):
    status = main(["eval", "--checkpoint", str(runs["a"]), "--checkpoint", str(runs["other"])])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and err.startswith("deepres: error: ")
    assert str(runs["a"] / "model.safetensors") in err and str(runs["other"]) in err
    assert "cannot form an ensemble: they differ in classes" in err


def test_eval_tta_labels_its_numbers_and_prints_the_single_view_beside(runs, tmp_path, capsys):
    a = str(runs["a"])
    _, plain = run_eval(capsys, tmp_path, "plain", "--checkpoint", a)
    stdout, report = run_eval(capsys, tmp_path, "tta", "--checkpoint", a, "--tta", "flip-crop")
    lines = stdout.splitlines()
    assert lines[1].startswith("TTA flip-crop:  top-1 error")
    assert lines[2].startswith("single view:    top-1 error")
    assert report["tta"] == "flip-crop"
    for key in ("test_top1", "test_top5"):
        assert report["single_view"][key] == plain[key]
    assert report["single_view"]["test_loss"] == pytest.approx(plain["test_loss"], rel=1e-6)
    assert f"{100 * (1 - report['test_top1']):.2f}%" in lines[1]


def test_eval_ema_uses_the_runs_moving_average(runs, tmp_path, capsys):
    stdout, report = run_eval(capsys, tmp_path, "ema", "--checkpoint", str(runs["b"]), "--ema")
    assert report["checkpoint"] == str(runs["b"] / "ema.safetensors")
    assert stdout.startswith(f"{runs['b'] / 'ema.safetensors'}: resnet8")
    status = main(["eval", "--checkpoint", str(runs["a"]), "--ema"])
    assert status == 2 and "trained without --ema" in capsys.readouterr().err


def predict_json(capsys, *args: str) -> list[dict]:
    assert main(["predict", *args, "--json", "--top-k", "10"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_with_tta_and_with_two_checkpoints(runs, cifar_small, capsys):
    images = cifar_small / "test" / "dog"
    files = sorted(images.iterdir())
    a, b = str(runs["a"]), str(runs["b"])
    flipped = predict_json(capsys, "--checkpoint", a, "--tta", "flip", str(images))
    both = predict_json(capsys, "--checkpoint", a, "--checkpoint", b, str(images))
    assert [r["path"] for r in flipped] == [r["path"] for r in both] == list(map(str, files))
    single = Predictor(a)
    alone = [Predictor(run) for run in (a, b)]
    for path, with_tta, ensemble in zip(files, flipped, both, strict=True):
        x = single.prepare(path.read_bytes(), path.name)
        with torch.no_grad():
            mirror = (single.model(x).softmax(-1) + single.model(x.flip(-1)).softmax(-1)) / 2
            mean = sum(p.model(x).softmax(-1) for p in alone) / 2
        for row, expected in ((with_tta, mirror[0]), (ensemble, mean[0])):
            for item in row["top"]:
                index = single.classes.index(item["class"])
                assert item["probability"] == pytest.approx(expected[index].item(), abs=2e-6)
