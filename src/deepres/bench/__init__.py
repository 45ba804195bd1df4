"""``deepres bench``'s library: images/s of deepres beside a reference in one process.

- ``harness``: timing in alternating rounds, ratios per round, the machine's matmul rate;
- ``references``: the reference training loop (torchvision transforms + DataLoader);
- ``runtimes``: ONNX Runtime (fp32, its static int8) and OpenVINO, as functions of a batch;
- ``against``: the inference references from deepres's weights, ratios, exactness checks;
- ``run``: what is timed (training, inference, saved checkpoints) and the report.
"""

from deepres.bench.against import Quantizer, runtime_models
from deepres.bench.harness import matmul_gflops, peak_rss_mb, time_variants
from deepres.bench.references import PILDataset, reference_loader, reference_transform
from deepres.bench.run import BenchOptions, check_options, print_report, run_bench
from deepres.bench.runtimes import RUNTIMES, OnnxRuntimeModel, export_onnx, quantize_onnx

__all__ = [
    "RUNTIMES",
    "BenchOptions",
    "OnnxRuntimeModel",
    "Quantizer",
    "export_onnx",
    "quantize_onnx",
    "runtime_models",
    "PILDataset",
    "check_options",
    "matmul_gflops",
    "peak_rss_mb",
    "print_report",
    "reference_loader",
    "reference_transform",
    "run_bench",
    "time_variants",
]
