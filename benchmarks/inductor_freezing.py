"""Inductor with weight freezing (and optionally CPU max-autotune) against deepres's
``torch`` runtime and ONNX Runtime, fp32, the same random weights, in alternating rounds.

Issue 16 asked whether compiling closes the gap to ONNX Runtime; this is the measurement
(run it with nothing else on the core):

    python benchmarks/inductor_freezing.py resnet20 --batch-size 128 --input-size 32
    python benchmarks/inductor_freezing.py resnet50 --batch-size 16 --mode max-autotune

Every variant is checked against the eager model by the export rule (same top-5,
|Δlogit| ≤ 1e-4 · max(1, max |logit|)) before it is timed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._inductor.config as inductor_config

from deepres import create_model
from deepres.bench.runtimes import OnnxRuntimeModel, export_onnx
from deepres.inference import agreement, optimize_for_inference

Runner = Callable[[torch.Tensor], torch.Tensor]


def inductor(model: torch.nn.Module, mode: str | None) -> Runner:
    """The eval model compiled with frozen weights (Inductor folds BatchNorm, prepacks the
    oneDNN weights and fuses convolution + add + ReLU), fed channels-last batches."""
    inductor_config.freezing = True
    net = torch.compile(optimize_for_inference(model, "fp32", fold_bn=False).model, mode=mode)
    return lambda x: net(x.contiguous(memory_format=torch.channels_last))


def time_rounds(runners: dict[str, Runner], batch: torch.Tensor, rounds: int) -> dict:
    """Median seconds per batch of each runner, in alternating rounds."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds):
        for name in runners if r % 2 == 0 else reversed(list(runners)):
            start = time.perf_counter()
            runners[name](batch)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--mode", default=None, help="torch.compile mode, e.g. max-autotune")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model(args.model).eval()
    batch = torch.randn(args.batch_size, 3, args.input_size, args.input_size)
    with torch.inference_mode(), tempfile.TemporaryDirectory() as folder:
        reference = model(batch)
        start = time.perf_counter()
        runners = {"inductor": inductor(model, args.mode)}
        runners["inductor"](batch)
        print(f"compile and first batch: {time.perf_counter() - start:.1f} s")
        runners["torch"] = optimize_for_inference(model, "fp32")
        onnx_file = export_onnx(model, batch[:2], Path(folder) / "model.onnx")
        runners["onnxruntime"] = OnnxRuntimeModel(onnx_file, args.threads)
        for name, run in runners.items():
            print(f"{name:12s} vs eager: {agreement(reference, run(batch))}")
        seconds = time_rounds(runners, batch, args.rounds)
    print(f"{args.model}, batch {args.batch_size}, {args.threads} thread(s), mode {args.mode}")
    for name, s in seconds.items():
        ratio = seconds["onnxruntime"] / s
        print(f"  {name:12s} {args.batch_size / s:9.1f} img/s  {ratio:.2f}x ONNX Runtime")


if __name__ == "__main__":
    main()
