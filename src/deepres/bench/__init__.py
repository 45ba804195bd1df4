"""``deepres bench``'s library: images/s of deepres beside a reference in one process.

- ``harness``: timing in alternating rounds, ratios per round, the machine's matmul rate;
- ``references``: the reference training loop (torchvision transforms + DataLoader);
- ``runtimes``: ONNX Runtime (fp32, its static int8) and OpenVINO, as functions of a batch;
- ``against``: the inference references from deepres's weights, ratios, exactness checks;
- ``run``: what is timed (training, inference, saved checkpoints) and the report.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "against": ["Quantizer", "runtime_models"],
        "harness": ["matmul_gflops", "peak_rss_mb", "time_variants"],
        "references": ["PILDataset", "reference_loader", "reference_transform"],
        "run": ["BenchOptions", "check_options", "print_report", "run_bench"],
        "runtimes": ["RUNTIMES", "OnnxRuntimeModel", "export_onnx", "quantize_onnx"],
    },
)
