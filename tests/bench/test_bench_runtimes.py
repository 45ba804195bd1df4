"""``deepres bench --against onnxruntime | onnxruntime-int8 | openvino``: the same weights
in the other runtime, timed in the same rounds, checked for the same answers. Speed is never
asserted (tiny models, one round of one batch)."""

import copy
import importlib.util
import json
import math

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import numpy_helper

from deepres import create_model
from deepres.bench import (
    BenchOptions,
    OnnxRuntimeModel,
    check_options,
    export_onnx,
    quantize_onnx,
    run_bench,
)
from deepres.bench.against import calibration_count
from deepres.bench.runtimes import BatchReader
from deepres.checkpoints import save_weights
from deepres.cli import main
from deepres.deploy.quantize import quantize_model
from deepres.errors import DeepresError

TINY = {"mode": "infer", "batch_size": 2, "rounds": 1, "steps": 1, "amp": "off", "threads": 1}


def assert_timed(result: dict) -> None:
    for key in ("images_per_s", "ms_per_batch", "gflops", "pct_of_fp32_matmul"):
        assert math.isfinite(result[key]) and result[key] > 0, key


def test_onnxruntime_runs_our_weights_exactly_and_reports_the_ratio():
    report = run_bench(BenchOptions(model="resnet20", against=["onnxruntime"], **TINY))
    infer = report["infer"]
    assert list(infer) == ["ours_fp32", "onnxruntime"]
    ours, ort = infer["ours_fp32"], infer["onnxruntime"]
    assert_timed(ort)
    ratio = ours["ratio_vs"]["onnxruntime"]
    # ours ÷ ORT images/s, round by round, from the per-round figures themselves
    expected = ours["rounds_images_per_s"][0] / ort["rounds_images_per_s"][0]
    assert ratio["per_round"] == pytest.approx([expected])
    assert ratio["median"] == pytest.approx(expected)
    agreement = ort["agreement_vs_ours_fp32"]
    assert agreement["exact"] and agreement["same_top5"]
    assert agreement["max_abs_diff"] <= agreement["tolerance"]
    assert ort["version"] == onnxruntime.__version__


def test_cli_times_torchvision_and_onnxruntime_in_the_same_rounds(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--model", "resnet18", "--input-size", "32", "--batch-size", "2", "--rounds", "2"]
    args += ["--steps", "1", "--amp", "off", "--threads", "1", "--json", str(out)]
    assert main(["bench", "--mode", "infer", "--against", "torchvision", "onnxruntime", *args]) == 0
    infer = json.loads(out.read_text())["infer"]
    assert set(infer) == {"ours_fp32", "torchvision", "onnxruntime"}
    ours = infer["ours_fp32"]
    assert set(ours["ratio_vs"]) == {"torchvision", "onnxruntime"}
    assert all(len(r["per_round"]) == 2 for r in ours["ratio_vs"].values())
    assert len(ours["speedup_per_round"]) == 2  # the torchvision speed-up, as before
    assert ours["max_abs_diff_vs_torchvision"] < 1e-3
    assert infer["torchvision"]["agreement_vs_ours_fp32"]["exact"]
    assert infer["onnxruntime"]["agreement_vs_ours_fp32"]["exact"]
    printed = capsys.readouterr().out
    assert "ours_fp32 / onnxruntime img/s" in printed and "onnxruntime vs ours_fp32" in printed


def test_int8_comparison_reports_both_top1_agreements():
    seen = {}

    def quantize(model, calibration):  # deepres's quantizer, keeping what it was given
        seen["fp32"], seen["calibration"] = copy.deepcopy(model).eval(), calibration.clone()
        program = quantize_model(model, calibration)
        seen["int8"] = program.module()
        return program

    opts = BenchOptions(model="resnet20", against=["onnxruntime-int8"], **{**TINY, "batch_size": 4})
    infer = run_bench(opts, quantize=quantize)["infer"]
    assert list(infer) == ["ours_fp32", "ours_int8", "onnxruntime_int8"]
    for name in ("ours_int8", "onnxruntime_int8"):
        assert_timed(infer[name])
        assert infer[name]["agreement_images"] == 64  # 4 batches of 4, at least 64
        share = infer[name]["top1_agreement_vs_fp32"]
        assert (64 * share).is_integer() and 0.8 <= share <= 1.0, share  # int8 keeps most
    # deepres's agreement, recomputed here from the fp32 and int8 models it measured
    images = seen["calibration"]
    assert len(images) == 64
    with torch.inference_mode():
        same = seen["int8"](images).argmax(1) == seen["fp32"](images).argmax(1)
    assert infer["ours_int8"]["top1_agreement_vs_fp32"] == same.float().mean().item()
    assert infer["ours_int8"]["compiled"] is False
    assert len(infer["ours_int8"]["ratio_vs"]["onnxruntime_int8"]["per_round"]) == 1


def test_int8_comparison_needs_deepres_quantizer():
    opts = BenchOptions(model="resnet20", against=["onnxruntime-int8"], **TINY)
    with pytest.raises(DeepresError, match="deepres.deploy.quantize.quantize_model"):
        run_bench(opts)


def test_ort_int8_model_is_static_qdq_with_per_channel_int8_weights(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    images = torch.randn(16, 3, 32, 32)
    fp32 = export_onnx(model, images, tmp_path / "model.onnx")
    int8 = quantize_onnx(fp32, tmp_path / "model.int8.onnx", images, 4, reduce_range=False)
    graph = onnx.load(str(int8)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    first_conv = next(node for node in graph.node if node.op_type == "Conv")
    weight_dq = next(node for node in graph.node if node.output[0] == first_conv.input[1])
    assert weight_dq.op_type == "DequantizeLinear"
    assert weights[weight_dq.input[0]].dtype == np.int8
    assert weights[weight_dq.input[1]].shape == (16,)  # one scale per output channel
    with torch.inference_mode():
        reference = model(images)
    logits = OnnxRuntimeModel(int8, threads=1)(images)
    # int8 rounding, not another model: within a tenth of the logits' range
    assert (logits - reference).abs().max() < 0.1 * reference.abs().max()


def test_calibration_reader_hands_over_every_image_once_in_order():
    images = torch.arange(5 * 3 * 2 * 2, dtype=torch.float32).view(5, 3, 2, 2)
    reader = BatchReader(images, batch_size=2)
    batches = []
    while (batch := reader.get_next()) is not None:
        batches.append(batch["images"])
    assert [len(b) for b in batches] == [2, 2, 1]
    assert np.array_equal(np.concatenate(batches), images.numpy())
    reader.rewind()
    assert np.array_equal(reader.get_next()["images"], images[:2].numpy())


def test_a_checkpoint_is_timed_against_onnxruntime(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    meta = {"model": "resnet8", "model_args": {"num_classes": 3}, "classes": ["a", "b", "c"],
            "mean": [0.5] * 3, "std": [0.25] * 3, "input_size": 16}  # fmt: skip
    save_weights(checkpoint, create_model("resnet8", num_classes=3).eval(), meta)
    opts = BenchOptions(checkpoint=[str(checkpoint)], against=["onnxruntime"], **TINY)
    check_options(opts)
    infer = run_bench(opts)["infer"]
    assert infer["onnxruntime"]["agreement_vs_ours_fp32"]["exact"]
    assert infer["ours_fp32"]["ratio_vs"]["onnxruntime"]["median"] > 0


def test_openvino_runs_our_weights_exactly_and_reports_the_ratio():
    pytest.importorskip("openvino")
    report = run_bench(BenchOptions(model="resnet20", against=["openvino"], **TINY))
    infer = report["infer"]
    assert list(infer) == ["ours_fp32", "openvino"]
    assert_timed(infer["openvino"])
    agreement = infer["openvino"]["agreement_vs_ours_fp32"]
    assert agreement["exact"] and agreement["max_abs_diff"] <= agreement["tolerance"]
    assert infer["ours_fp32"]["ratio_vs"]["openvino"]["median"] > 0


def test_a_missing_runtime_says_how_to_install(capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(  # as on a machine without OpenVINO
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "openvino" else real_find_spec(name, *a),
    )
    assert main(["bench", "--mode", "infer", "--against", "openvino"]) == 2
    assert "--against openvino needs openvino" in capsys.readouterr().err
    with pytest.raises(DeepresError, match="pip install openvino"):
        check_options(BenchOptions(mode="infer", against=["openvino"]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "train", "against": ["onnxruntime"]}, "use --mode infer or both"),
        ({"mode": "train", "against": ["onnxruntime-int8"]}, "compares inference speed"),
        ({"mode": "infer", "against": ["onnxruntime", "reference"]}, "use --mode train or both"),
        ({"mode": "infer", "against": ["tensorrt"]}, "choose from torchvision"),
        ({"mode": "infer", "against": ["torchvision"]}, "torchvision has no resnet20"),
        ({"mode": "both", "checkpoint": ["RUN"]}, "use --mode infer"),
        (
            {"mode": "infer", "checkpoint": ["RUN"], "against": ["torchvision"]},
            "through --model",
        ),
        (
            {"mode": "infer", "checkpoint": ["m.int8.pt2"], "against": ["onnxruntime"]},
            "one fp32 checkpoint",
        ),
        (
            {"mode": "infer", "checkpoint": ["a", "b"], "against": ["onnxruntime"]},
            "one fp32 checkpoint",
        ),
    ],
)
def test_check_options_refuses(options, message):
    with pytest.raises(DeepresError, match=message):
        check_options(BenchOptions(**options))


def test_against_none_and_a_single_name_still_work():
    assert BenchOptions(against="none").against == []
    assert BenchOptions(against="torchvision").against == ["torchvision"]
    assert BenchOptions(against=["none"]).against == []


@pytest.mark.parametrize(
    ("batch_size", "images"), [(1, 64), (4, 64), (16, 64), (128, 512), (200, 400), (1000, 1000)]
)
def test_calibration_is_a_few_whole_batches(batch_size, images):
    assert calibration_count(batch_size) == images
