"""``deepres bench``'s library: images/s of deepres beside a reference in one process.

- ``harness``: timing in alternating rounds, ratios per round, the machine's matmul rate;
- ``references``: the reference training loop (torchvision transforms + DataLoader);
- ``run``: what is timed (training, inference, saved checkpoints) and the report.
"""

from deepres.bench.harness import matmul_gflops, peak_rss_mb, time_variants
from deepres.bench.references import PILDataset, reference_loader, reference_transform
from deepres.bench.run import BenchOptions, check_options, print_report, run_bench

__all__ = [
    "BenchOptions",
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
