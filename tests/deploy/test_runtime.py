"""``--runtime`` of ``deepres eval``/``predict``/``serve`` (``deepres.deploy.runtime``): every
runtime gives the numbers of the model as loaded, ensemble members and test-time
augmentation included; ``load_predictor`` runs each member in the runtime. A real resnet20
trained briefly on real CIFAR images (conftest's ``trained_run``); no timing is asserted.
The runtimes themselves: test_runtimes; auto's choice: test_auto and test_choices."""

import json
import logging

import pytest
import torch
from PIL import Image

from deepres.cli import main
from deepres.deploy.evaluate import evaluate_checkpoints
from deepres.deploy.runtime import load_predictor
from deepres.deploy.serve import create_app
from deepres.inference import Agreement, Predictor, agreement


def logits(model, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(images)


def test_eval_runtime_flag_gives_the_same_numbers(trained_run, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="deepres.deploy.runtime")
    reports = {}
    for runtime in ("eager", "torch", "onnxruntime", "auto"):
        out = tmp_path / runtime
        args = ["eval", "--checkpoint", str(trained_run), "--runtime", runtime, "--out", str(out)]
        assert main([*args, "--batch-size", "50"]) == 0
        reports[runtime] = json.loads((out / "eval.json").read_text())
        said = "resnet20: runtime " + ("" if runtime == "auto" else f"{runtime} (asked)")
        assert runtime == "eager" or said in caplog.text  # eager: evaluate_checkpoint as ever
    eager = reports["eager"]
    assert eager["count"] == 200
    assert sum(1 for column in zip(*eager["confusion"], strict=True) if any(column)) >= 3
    for report in reports.values():
        assert report["confusion"] == eager["confusion"]
        assert report["test_top1"] == eager["test_top1"]
        assert report["test_top5"] == eager["test_top5"]
        assert report["test_loss"] == pytest.approx(eager["test_loss"], rel=1e-5)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(trained_run), "--runtime", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_ensemble_and_tta_eval_in_a_runtime_match_eager(trained_run):
    eager = evaluate_checkpoints([trained_run, trained_run], subset=5, tta="flip")
    fast = evaluate_checkpoints([trained_run, trained_run], subset=5, tta="flip", runtime="torch")
    assert torch.equal(fast.result.confusion, eager.result.confusion)
    assert fast.result.loss == pytest.approx(eager.result.loss, rel=1e-5)
    assert fast.single_view.top1 == eager.single_view.top1
    assert [m.result.top1 for m in fast.members] == [m.result.top1 for m in eager.members]


def image_files(folder, count: int) -> list[str]:
    generator = torch.Generator().manual_seed(4)
    folder.mkdir()
    paths = []
    for index in range(count):
        pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
        path = folder / f"image{index}.png"
        Image.fromarray(pixels.numpy()).save(path)
        paths.append(str(path))
    return paths


def test_predict_runtime_flag_gives_the_same_probabilities(trained_run, tmp_path, capsys):
    paths = image_files(tmp_path / "images", 3)
    answers = {}
    for runtime in ("eager", "torch", "onnxruntime", "auto"):
        args = ["predict", "--checkpoint", str(trained_run), *paths, "--json", "--top-k", "10"]
        assert main([*args, "--runtime", runtime]) == 0
        answers[runtime] = json.loads(capsys.readouterr().out)
    expected = Predictor(trained_run)  # the library's Predictor: eager
    for path, eager in zip(paths, answers["eager"], strict=True):
        probs = dict(expected.predict_file(path, top_k=10).top)
        for runtime in answers:
            row = next(r for r in answers[runtime] if r["path"] == path)
            for item in row["top"]:
                assert item["probability"] == pytest.approx(probs[item["class"]], abs=2e-6)
        assert [t["class"] for t in eager["top"]][:1] == [max(probs, key=probs.get)]


def test_predictor_runs_each_ensemble_member_in_the_runtime(trained_run, tmp_path):
    [path] = image_files(tmp_path / "images", 1)
    fast = load_predictor([trained_run, trained_run], tta="flip", runtime="torch")
    members = fast.model.model.members  # TTA around the Ensemble around the members
    assert [m.runtime for m in members] == ["torch", "torch"]
    assert fast.meta["runtime"] == "torch" and fast.meta["tta"] == "flip"
    eager = Predictor([trained_run, trained_run], tta="flip")
    x = eager.prepare(open(path, "rb").read(), path)
    check = agreement(logits(eager.model, x), logits(fast.model, x))
    assert isinstance(check, Agreement) and check.exact
    info = create_app(fast).test_client().get("/info").get_json()
    assert info["runtime"] == "torch" and info["tta"] == "flip"


def test_serve_takes_the_runtime_flag(trained_run):
    from deepres.cli import build_parser

    args = build_parser().parse_args(
        ["serve", "--checkpoint", str(trained_run), "--runtime", "eager"]
    )
    assert args.runtime == "eager"
    assert build_parser().parse_args(["serve", "--checkpoint", str(trained_run)]).runtime == "auto"
