"""The benchmark runs and reports every field; the fast inference path is exact enough."""

import json
import subprocess
import sys

import torch
from PIL import Image
from torchvision import transforms

from deepres import create_model
from deepres.bench import PILDataset, reference_transform
from deepres.data import load_split, normalize


def test_bench_tiny_run_writes_every_field(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepres",
            "bench",
            "--model",
            "resnet20",
            "--mode",
            "both",
            "--batch-size",
            "8",
            "--rounds",
            "2",
            "--steps",
            "1",
            "--against",
            "reference",
            "--reference-workers",
            "0",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for key in ("model", "batch_size", "torch", "cpu_capability", "bf16_native", "threads"):
        assert key in report
    assert report["matmul_gflops"]["fp32"] > 0 and report["matmul_gflops"]["bf16"] > 0
    ours, ref = report["train"]["ours"], report["train"]["reference_workers0"]
    for r in (ours, ref, report["infer"]["ours_fp32"]):
        for key in (
            "images_per_s",
            "ms_per_batch",
            "gflops",
            "peak_rss_mb",
            "pct_of_fp32_matmul",
            "pct_of_bf16_matmul",
        ):
            assert r[key] > 0, key
    assert len(ref["ours_speedup_per_round"]) == 2
    assert ref["ours_speedup_median"] > 0
    assert "img/s" in result.stdout and "speed-up" in result.stdout


def test_reference_loop_is_the_tutorial_loop(cifar_small):
    transform = reference_transform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    kinds = [type(t) for t in transform.transforms]
    assert kinds == [
        transforms.RandomCrop,
        transforms.RandomHorizontalFlip,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    assert transform.transforms[0].padding == 4
    # The PIL images handed to the transforms are the decoded files themselves.
    data = load_split(str(cifar_small), "test")
    first = sorted((cifar_small / "test" / data.classes[0]).iterdir())[0]
    plain = transforms.Compose([transforms.ToTensor()])
    dataset = PILDataset(data, plain)
    expected = plain(Image.open(first).convert("RGB"))
    assert torch.equal(dataset[0][0], expected)
    # ... and our normalisation of the same uint8 data gives the same numbers as ToTensor+Normalize.
    ours = normalize(data.images[:1], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))[0]
    theirs = transforms.Normalize((0.5,) * 3, (0.25,) * 3)(expected)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_bench_times_saved_checkpoints_side_by_side(tmp_path):
    from deepres.checkpoints import save_weights
    from deepres.cli import main

    checkpoint = tmp_path / "model.safetensors"
    meta = {"model": "resnet8", "model_args": {"num_classes": 3}, "classes": ["a", "b", "c"],
            "mean": [0.5] * 3, "std": [0.25] * 3, "input_size": 16}  # fmt: skip
    save_weights(checkpoint, create_model("resnet8", num_classes=3).eval(), meta)
    program = tmp_path / "model.pt2"
    export = ["export", "--checkpoint", str(checkpoint), "--format", "exported-program"]
    assert main([*export, "--dynamic-batch", "--out", str(program)]) == 0
    out = tmp_path / "bench.json"
    timed = ["--checkpoint", str(checkpoint), "--checkpoint", str(program)]
    options = ["--batch-size", "4", "--rounds", "2", "--steps", "1", "--json", str(out)]
    assert main(["bench", "--mode", "infer", *timed, *options]) == 0
    infer = json.loads(out.read_text())["infer"]
    assert list(infer) == [str(checkpoint), str(program)]
    assert all(r["images_per_s"] > 0 and r["gflops"] > 0 for r in infer.values())
    assert len(infer[str(program)]["speedup_per_round"]) == 2
    assert main(["bench", "--mode", "train", *timed]) == 2  # saved models are timed in infer
