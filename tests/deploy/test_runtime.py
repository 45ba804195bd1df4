"""``--runtime auto|torch|eager|onnxruntime|openvino`` of ``deepres eval``/``predict``/
``serve``: each runtime's logits are exact against the model as loaded, ``auto`` never
picks an inexact one and remembers its choice in a JSON file that it checks before
trusting. A real model (a resnet20 trained briefly on real CIFAR images), real ONNX Runtime
and OpenVINO sessions; no timing is asserted."""

import json
import logging
import pickle

import pytest
import torch
from PIL import Image

from deepres.checkpoints import load_model
from deepres.cli import main
from deepres.deploy.choices import CHOICES_FILE
from deepres.deploy.evaluate import evaluate_checkpoints
from deepres.deploy.runtime import (
    BUILDERS,
    STATS,
    PreparedModel,
    load_predictor,
    prepare,
)
from deepres.deploy.serve import create_app
from deepres.errors import DeepresError
from deepres.inference import Agreement, InferenceModel, Predictor, agreement
from deepres.inference.onnx import OnnxModule, runtime_installed

TRAIN = ["--model", "resnet20", "--epochs", "3", "--batch-size", "20", "--lr", "0.05",
         "--threads", "1", "--progress", "off", "--train-subset", "20"]  # fmt: skip


@pytest.fixture(scope="module")
def run(cifar_small, tmp_path_factory):
    """A resnet20 trained for three epochs on 200 real CIFAR images (its BatchNorm
    statistics are real, not 0/1; about 20% top-1 on 200 others, predictions of several
    classes)."""
    out = tmp_path_factory.mktemp("runtime") / "run"
    data = ["--data", str(cifar_small)]
    assert main(["train", *TRAIN, *data, "--seed", "3", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def loaded(run):
    return load_model(run)


@pytest.fixture(scope="module")
def batch():
    return torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the tests that export to ONNX: the resnet20 is exported once."""
    return tmp_path_factory.mktemp("runtime-cache")


def logits(model, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(images)


def choices(cache) -> dict:
    return json.loads((cache / CHOICES_FILE).read_text())["choices"]


OPENVINO = pytest.mark.skipif(not runtime_installed("openvino"), reason="openvino is not installed")


@pytest.mark.parametrize(
    "runtime", ["eager", "torch", "onnxruntime", pytest.param("openvino", marks=OPENVINO)]
)
def test_each_runtime_is_exact_against_eager(loaded, batch, shared_cache, runtime):
    model, meta = loaded
    prepared = prepare(model, meta, runtime, batch_size=7, cache=shared_cache)
    assert isinstance(prepared, PreparedModel) and prepared.runtime == runtime
    reference = logits(model, batch)
    for images in (batch, batch[:1]):  # the batch size prepared for and another one
        got = logits(prepared, images)
        assert got.dtype == torch.float32 and got.shape == (len(images), 10)
        assert agreement(logits(model, images), got).exact
    if runtime == "torch":  # BatchNorm really folded away, in fp32
        assert isinstance(prepared.runner, InferenceModel)
        assert prepared.runner.dtype == torch.float32
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
        assert not torch.equal(logits(prepared, batch), reference)  # another computation
    if runtime in ("onnxruntime", "openvino"):  # a real session on the cached ONNX file
        assert isinstance(prepared.runner, OnnxModule)
        assert prepared.runner.path.parent == shared_cache / "onnx"
        assert prepared.runner.path.stat().st_size > 100_000  # 0.27 M fp32 weights


def test_auto_measures_once_then_reuses_the_remembered_choice(loaded, shared_cache):
    model, meta = loaded
    before = STATS.measurements
    first = prepare(model, meta, "auto", batch_size=16, cache=shared_cache)
    assert STATS.measurements == before + 1
    installed = ["onnxruntime", "torch"] + (["openvino"] if runtime_installed("openvino") else [])
    assert first.runtime in installed and first.reason.startswith("measured")
    file = shared_cache / CHOICES_FILE
    content, stamp = file.read_bytes(), file.stat().st_mtime_ns
    [record] = [r for r in choices(shared_cache).values() if r["facts"]["batch_size"] == 16]
    assert record["runtime"] == first.runtime
    assert record["facts"]["threads"] == torch.get_num_threads()
    assert record["facts"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["facts"]["candidates"] == sorted(installed)
    assert all(v.startswith("exact") for v in record["verdicts"].values())

    again = prepare(model, meta, "auto", batch_size=16, cache=shared_cache)
    assert STATS.measurements == before + 1  # nothing measured
    assert again.runtime == first.runtime
    assert again.reason == f"remembered from {file}"
    assert file.read_bytes() == content and file.stat().st_mtime_ns == stamp

    other = prepare(model, meta, "auto", batch_size=3, cache=shared_cache)  # another key
    assert STATS.measurements == before + 2 and other.reason.startswith("measured")
    assert {r["facts"]["batch_size"] for r in choices(shared_cache).values()} >= {3, 16}


def off_by(delta: float):
    """A 'runtime' that answers the example batch instantly, each logit off by ``delta``."""

    def build(model, target):
        wrong = logits(model, target.example) + delta
        return lambda images: wrong

    return build


def test_an_inexact_candidate_is_never_chosen(loaded, tmp_path, batch):
    model, meta = loaded
    reference = logits(model, batch)
    assert not agreement(reference, reference + 1e-2).exact  # the injected error is real
    candidates = {"torch": BUILDERS["torch"], "off": off_by(1e-2)}
    prepared = prepare(model, meta, "auto", batch_size=8, candidates=candidates, cache=tmp_path)
    assert prepared.runtime == "torch"
    assert "off not exact" in prepared.reason
    [record] = choices(tmp_path).values()
    assert record["runtime"] == "torch" and record["verdicts"]["off"].startswith("not exact")
    assert agreement(reference, logits(prepared, batch)).exact


def test_with_no_exact_candidate_auto_runs_the_model_as_loaded(loaded, tmp_path, batch):
    model, meta = loaded

    def broken(model, target):
        raise RuntimeError("cannot trace this")

    candidates = {"off": off_by(1e-2), "broken": broken}
    prepared = prepare(model, meta, "auto", batch_size=8, candidates=candidates, cache=tmp_path)
    assert prepared.runtime == "eager" and prepared.runner is model
    assert "broken failed: cannot trace this" in prepared.reason
    assert torch.equal(logits(prepared, batch), logits(model, batch))
    again = prepare(model, meta, "auto", batch_size=8, candidates=candidates, cache=tmp_path)
    assert again.runtime == "eager" and again.reason.startswith("remembered")


CORRUPT = {
    "not json": b"{not json",
    "pickle": pickle.dumps({"version": 1, "choices": {}}),
    "a list": b"[1, 2]",
    "choices not an object": b'{"version": 1, "choices": []}',
    "other version": b'{"version": 99, "choices": {}}',
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_a_corrupt_choice_file_is_ignored_and_rewritten(loaded, tmp_path, content, caplog):
    model, meta = loaded
    (tmp_path / CHOICES_FILE).write_bytes(content)
    before = STATS.measurements
    candidates = {"torch": BUILDERS["torch"]}
    prepared = prepare(model, meta, "auto", batch_size=4, candidates=candidates, cache=tmp_path)
    assert STATS.measurements == before + 1 and prepared.runtime == "torch"
    assert f"ignoring {tmp_path / CHOICES_FILE}" in caplog.text
    assert json.loads((tmp_path / CHOICES_FILE).read_text())["version"] == 1
    [record] = choices(tmp_path).values()
    assert record["runtime"] == "torch"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(runtime="rm -rf /"),  # not a runtime of the candidates
        lambda r: r.update(runtime=["torch"]),  # not a string
        lambda r: r["facts"].update(threads=999),  # made under other facts
    ],
    ids=["unknown runtime", "wrong type", "other facts"],
)
def test_a_tampered_record_is_not_trusted(loaded, tmp_path, tamper):
    model, meta = loaded
    candidates = {"torch": BUILDERS["torch"], "off": off_by(1e-2)}
    prepare(model, meta, "auto", batch_size=4, candidates=candidates, cache=tmp_path)
    file = tmp_path / CHOICES_FILE
    content = json.loads(file.read_text())
    [record] = content["choices"].values()
    tamper(record)
    file.write_text(json.dumps(content))
    before = STATS.measurements
    prepared = prepare(model, meta, "auto", batch_size=4, candidates=candidates, cache=tmp_path)
    assert STATS.measurements == before + 1 and prepared.runtime == "torch"
    [record] = choices(tmp_path).values()
    assert record["runtime"] == "torch" and record["facts"]["threads"] == torch.get_num_threads()


def test_unknown_and_impossible_runtimes_are_clear_errors(loaded):
    model, meta = loaded
    with pytest.raises(DeepresError, match="unknown runtime 'tensorrt': choose one of auto"):
        prepare(model, meta, "tensorrt")

    def broken(model, target):
        raise RuntimeError("cannot trace this")

    with pytest.raises(DeepresError, match="runtime broken cannot run resnet20: cannot trace"):
        prepare(model, meta, "broken", candidates={"broken": broken})


def test_eval_runtime_flag_gives_the_same_numbers(run, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="deepres.deploy.runtime")
    reports = {}
    for runtime in ("eager", "torch", "onnxruntime", "auto"):
        out = tmp_path / runtime
        args = ["eval", "--checkpoint", str(run), "--runtime", runtime, "--out", str(out)]
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
        main(["eval", "--checkpoint", str(run), "--runtime", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_ensemble_and_tta_eval_in_a_runtime_match_eager(run):
    eager = evaluate_checkpoints([run, run], subset=5, tta="flip")
    fast = evaluate_checkpoints([run, run], subset=5, tta="flip", runtime="torch")
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


def test_predict_runtime_flag_gives_the_same_probabilities(run, tmp_path, capsys):
    paths = image_files(tmp_path / "images", 3)
    answers = {}
    for runtime in ("eager", "torch", "onnxruntime", "auto"):
        args = ["predict", "--checkpoint", str(run), *paths, "--json", "--top-k", "10"]
        assert main([*args, "--runtime", runtime]) == 0
        answers[runtime] = json.loads(capsys.readouterr().out)
    expected = Predictor(run)  # the library's Predictor: eager
    for path, eager in zip(paths, answers["eager"], strict=True):
        probs = dict(expected.predict_file(path, top_k=10).top)
        for runtime in answers:
            row = next(r for r in answers[runtime] if r["path"] == path)
            for item in row["top"]:
                assert item["probability"] == pytest.approx(probs[item["class"]], abs=2e-6)
        assert [t["class"] for t in eager["top"]][:1] == [max(probs, key=probs.get)]


def test_predictor_runs_each_ensemble_member_in_the_runtime(run, tmp_path):
    [path] = image_files(tmp_path / "images", 1)
    fast = load_predictor([run, run], tta="flip", runtime="torch")
    members = fast.model.model.members  # TTA around the Ensemble around the members
    assert [m.runtime for m in members] == ["torch", "torch"]
    assert fast.meta["runtime"] == "torch" and fast.meta["tta"] == "flip"
    eager = Predictor([run, run], tta="flip")
    x = eager.prepare(open(path, "rb").read(), path)
    check = agreement(logits(eager.model, x), logits(fast.model, x))
    assert isinstance(check, Agreement) and check.exact
    info = create_app(fast).test_client().get("/info").get_json()
    assert info["runtime"] == "torch" and info["tta"] == "flip"


def test_serve_takes_the_runtime_flag(run):
    from deepres.cli import build_parser

    args = build_parser().parse_args(["serve", "--checkpoint", str(run), "--runtime", "eager"])
    assert args.runtime == "eager"
    assert build_parser().parse_args(["serve", "--checkpoint", str(run)]).runtime == "auto"
