"""``--runtime auto`` (``deepres.deploy.auto``): each candidate checked against the model as
loaded, an inexact one never picked, the exact ones timed, the choice remembered and reused
without running any candidate again. No timing is asserted: a measurement is seen in what
the candidates are asked to run, in the choice file and in ``PreparedModel.source``."""

import json
from collections import Counter

import pytest
import torch

from deepres.deploy.auto import auto_candidates
from deepres.deploy.choices import CHOICES_FILE
from deepres.deploy.runtime import prepare
from deepres.deploy.runtimes import BUILDERS
from deepres.inference import agreement
from deepres.inference.onnx import runtime_installed


def logits(model, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(images)


def choices(cache) -> dict:
    return json.loads((cache / CHOICES_FILE).read_text())["choices"]


def counting(builders: dict, calls: Counter) -> dict:
    """``builders`` whose runners count the batches they are given (measuring runs each
    exact candidate at least twice: the exactness check and a timed round)."""

    def wrap(name, builder):
        def build(model, target):
            runner = builder(model, target)

            def run(images):
                calls[name] += 1
                return runner(images)

            return run

        return build

    return {name: wrap(name, builder) for name, builder in builders.items()}


def test_auto_measures_once_then_reuses_the_remembered_choice(loaded, shared_cache):
    model, meta = loaded
    calls: Counter = Counter()
    candidates = counting(auto_candidates(), calls)
    first = prepare(model, meta, "auto", batch_size=16, candidates=candidates, cache=shared_cache)
    installed = ["onnxruntime", "torch"] + (["openvino"] if runtime_installed("openvino") else [])
    assert sorted(calls) == sorted(installed) and min(calls.values()) >= 2  # each one timed
    assert first.runtime in installed and first.reason.startswith("measured")
    assert first.source == "measured"
    file = shared_cache / CHOICES_FILE
    content, stamp = file.read_bytes(), file.stat().st_mtime_ns
    [record] = [r for r in choices(shared_cache).values() if r["facts"]["batch_size"] == 16]
    assert record["runtime"] == first.runtime
    assert record["facts"]["threads"] == torch.get_num_threads()
    assert record["facts"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["facts"]["candidates"] == sorted(installed)
    assert all(v.startswith("exact") for v in record["verdicts"].values())
    assert sorted(record["ms_per_batch"]) == sorted(installed)

    calls.clear()
    again = prepare(model, meta, "auto", batch_size=16, candidates=candidates, cache=shared_cache)
    assert calls == Counter()  # no candidate ran a batch: nothing checked, nothing timed
    assert again.runtime == first.runtime and again.source == "remembered"
    assert again.reason == f"remembered from {file}"
    assert file.read_bytes() == content and file.stat().st_mtime_ns == stamp

    other = prepare(model, meta, "auto", batch_size=3, candidates=candidates, cache=shared_cache)
    assert min(calls.values()) >= 2 and other.source == "measured"  # another key: measured
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
    assert prepared.runtime == "torch" and prepared.source == "measured"
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
    assert again.source == "remembered"


def test_a_remembered_runtime_that_no_longer_builds_is_measured_again(loaded, tmp_path, caplog):
    model, meta = loaded
    builds = []

    def flaky(model, target):  # builds once, fails after (e.g. its cache was removed)
        builds.append(target.batch_size)
        if len(builds) > 1:
            raise RuntimeError("gone")
        return BUILDERS["torch"](model, target)

    candidates = {"flaky": flaky}
    first = prepare(model, meta, "auto", batch_size=4, candidates=candidates, cache=tmp_path)
    assert first.runtime == "flaky" and first.reason == "the only exact candidate"
    again = prepare(model, meta, "auto", batch_size=4, candidates=candidates, cache=tmp_path)
    assert "remembered runtime flaky does not run now (gone); measuring" in caplog.text
    assert again.source == "measured" and again.runtime == "eager"
    [record] = choices(tmp_path).values()
    assert record["runtime"] == "eager" and record["verdicts"]["flaky"] == "failed: gone"


@pytest.mark.parametrize("installed", [True, False])
def test_auto_candidates_are_torch_and_the_installed_onnx_runtimes(installed, monkeypatch):
    monkeypatch.setattr("deepres.deploy.auto.runtime_installed", lambda name: installed)
    expected = ["torch", "onnxruntime", "openvino"] if installed else ["torch"]
    assert list(auto_candidates()) == expected
