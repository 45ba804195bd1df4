"""Ensembles shipped: ``deepres export`` of two checkpoints writes ONE ONNX graph whose output
is the ensemble's log-probabilities, checked in ONNX Runtime on real CIFAR images; ``serve``
answers for an ensemble and lists its members."""

import json

import onnx
import pytest
import torch

from deepres import DeepresError
from deepres.cli import main
from deepres.deploy import create_app, export_checkpoint, load_runner
from deepres.deploy.inputs import images_from_split
from deepres.inference import Ensemble, Predictor, agreement, load_members


def test_cli_exports_an_ensemble_as_one_onnx_graph(two_runs, cifar_small, capsys):
    a, b = two_runs
    args = ["export", "--checkpoint", str(a), "--checkpoint", str(b), "--format", "onnx"]
    assert main([*args, "--dynamic-batch"]) == 0
    stdout = capsys.readouterr().out
    out = a / "model-ensemble2.onnx"
    assert f"wrote {out}" in stdout and "exact" in stdout and "NOT exact" not in stdout
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ["log_probabilities"]
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["deepres"])
    assert [m["checkpoint"] for m in meta["members"]] == [
        str(a / "model.safetensors"),
        str(b / "model.safetensors"),
    ]
    members = load_members(two_runs)
    images = images_from_split(str(cifar_small), "test", members[0].meta, 16)
    session = load_runner(out, "onnx")  # an ONNX Runtime session on the file
    got = session(images)
    with torch.no_grad():
        reference = Ensemble([m.model for m in members])(images)
        by_hand = sum(m.model(images).softmax(-1) for m in members) / 2
    assert agreement(reference, got).exact
    torch.testing.assert_close(got.exp(), by_hand, atol=1e-5, rtol=1e-4)


def test_an_ensemble_exports_folded_to_torchscript_and_refuses_its_own_out(
    two_runs, cifar_small, tmp_path
):
    out = export_checkpoint(list(two_runs), "torchscript", fold_bn=True, out=tmp_path / "e.pt")
    # the folded TorchScript file gives the ensemble's outputs on real images
    members = load_members(two_runs)
    images = images_from_split(str(cifar_small), "test", members[0].meta, 16)
    scripted = torch.jit.load(str(out)).eval()
    with torch.no_grad():
        got, reference = scripted(images), Ensemble([m.model for m in members])(images)
        by_hand = sum(m.model(images).softmax(-1) for m in members) / 2
    assert got.shape == reference.shape == (16, 10)
    assert agreement(reference, got).exact, agreement(reference, got)
    torch.testing.assert_close(got.exp(), by_hand, atol=1e-5, rtol=1e-4)
    with pytest.raises(DeepresError, match="is the checkpoint itself"):
        export_checkpoint(list(two_runs), "onnx", out=two_runs[1] / "model.safetensors")


def test_serve_answers_for_an_ensemble_and_lists_its_members(two_runs, cifar_small):
    predictor = Predictor(list(two_runs), tta="flip")
    client = create_app(predictor).test_client()
    info = client.get("/info").get_json()
    assert info["model"] == "ensemble of resnet8, resnet8" and info["tta"] == "flip"
    assert [m["checkpoint"] for m in info["members"]] == [
        str(run / "model.safetensors") for run in two_runs
    ]
    image = sorted((cifar_small / "test" / "cat").iterdir())[0]
    answer = client.post("/predict", data=image.read_bytes(), content_type="image/jpeg")
    expected = predictor.predict_file(image).top
    assert [item["class"] for item in answer.get_json()["top"]] == [c for c, _ in expected]
