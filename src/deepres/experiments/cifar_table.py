"""CIFAR-10 test error of ResNet-20 ... 110 (He et al. 2016, §4.2, Table 6).

Every depth is trained ``--seeds`` times; the table gives the final test error as mean ± std
over the seeds, the parameter count, and the paper's published numbers beside them.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from deepres.experiments.model_names import model_name
from deepres.experiments.reports import (
    RunResult,
    count,
    describe_training,
    markdown_table,
    pct,
    read_run,
    write_report,
)
from deepres.experiments.runs import run_all
from deepres.experiments.settings import Settings
from deepres.plots import DEPTH_COLORS, Line, Panel, curve_panel, plot_panels
from deepres.train import TrainConfig

# Published reference figures (He et al. 2016, Table 6): depth -> (parameters, test error %).
# ResNet-110: best of 5 runs; the paper gives its mean ± std as 6.61 ± 0.16.
PAPER_TABLE6: dict[int, tuple[str, float]] = {
    20: ("0.27M", 8.75),
    32: ("0.46M", 7.51),
    44: ("0.66M", 7.17),
    56: ("0.85M", 6.97),
    110: ("1.7M", 6.43),
    1202: ("19.4M", 7.93),
}
PAPER_ITERS = 64000
FIGURE = "cifar-table.png"


def run_name(depth: int, seed: int) -> str:
    name = model_name("resnet", depth)
    return name if seed == 0 else f"{name}-seed{seed}"


def configs(settings: Settings) -> list[TrainConfig]:
    return [
        settings.config(model_name("resnet", depth), run_name(depth, seed), seed=seed)
        for seed in range(settings.seeds)
        for depth in settings.depths
    ]


def run(settings: Settings) -> Path:
    settings.save()
    run_all(configs(settings))
    return report(settings)


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}%"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}%"


def report(settings: Settings) -> Path:
    """report.md and the figure, from the runs' metrics files."""
    results: dict[int, list[RunResult]] = {
        depth: [read_run(settings.out / run_name(depth, s)) for s in range(settings.seeds)]
        for depth in settings.depths
    }
    iterations = max(r.iterations for rs in results.values() for r in rs)
    lines = [
        title(settings, iterations),
        "",
        describe_training(settings, configs(settings)[0]),
        "",
        results_table(results, settings.seeds),
        "",
        "The two right-hand columns are the paper's published figures (Table 6), not "
        "measured here; ResNet-110's is the best of 5 runs (mean ± std 6.61 ± 0.16%).",
        *caveats(settings, iterations),
        "",
        f"![test error curves and test error by depth]({FIGURE})",
    ]
    plot_table(results, settings)
    return write_report(settings, "\n".join(lines))


def title(settings: Settings, iterations: int) -> str:
    """The report's heading, which says when the schedule is shorter than the paper's."""
    text = "# CIFAR-10 test error of ResNets (He et al. 2016, Table 6)"
    if iterations < PAPER_ITERS:
        text += (
            f": shortened schedule ({iterations:,} iterations instead of the paper's "
            f"{PAPER_ITERS:,}; budget `{settings.budget}`)"
        )
    return text


def results_table(results: dict[int, list[RunResult]], seeds: int) -> str:
    """One row per depth: our test error over the seeds beside the paper's published one."""
    header = [
        "net",
        "params (ours)",
        f"test error (ours, final; mean ± std over {seeds} seed(s))",
        "lowest seed's (a choice on the test set, as the paper's ResNet-110 figure)",
        "runs",
        "params (paper, published)",
        "test error (paper, published)",
    ]
    rows = []
    for depth, runs in results.items():
        errors = [r.final_test_error for r in runs if r.final_test_error is not None]
        paper = PAPER_TABLE6.get(depth)
        rows.append(
            [
                runs[0].label,
                count(runs[0].params),
                mean_std(errors) if errors else "n/a",
                pct(min(errors)) if errors else "n/a",
                len(runs),
                paper[0] if paper else "—",
                f"{paper[1]:.2f}%" if paper else "—",
            ]
        )
    return markdown_table(header, rows)


def caveats(settings: Settings, iterations: int) -> list[str]:
    """Why our errors may run above the paper's: a shorter schedule, lossy JPEG test images."""
    lines = []
    if iterations < PAPER_ITERS:
        lines.append(
            "With this shortened schedule the errors are far above the paper's: compare the "
            "ordering across depths, not the values."
        )
    if "jpeg" in settings.data:
        lines.append(
            f"`{settings.data}` is a lossy JPEG copy of CIFAR-10: models tested on it lose "
            "several points against the official files, so its errors run higher."
        )
    return lines


def plot_table(results: dict[int, list[RunResult]], settings: Settings) -> Path:
    """Left: curves of the first seed of every depth; right: final test error by depth."""
    first = {runs[0].label: runs[0].rows for runs in results.values()}
    colors = {label: DEPTH_COLORS[i % len(DEPTH_COLORS)] for i, label in enumerate(first)}
    curves = curve_panel(first, title="seed 0 of every depth", colors=colors)
    depths = list(results)
    ours = [100 * statistics.mean(r.final_test_error or 0.0 for r in results[d]) for d in depths]
    lines = [Line(depths, ours, "ours (final, mean over seeds)", "#d62728", "-", 2.0, "o", "ours")]
    published = [d for d in depths if d in PAPER_TABLE6]
    if published:
        lines.append(
            Line(
                published,
                [PAPER_TABLE6[d][1] for d in published],
                "paper (published, Table 6)",
                "#000000",
                "--",
                1.5,
                "s",
                "paper",
            )
        )
    by_depth = Panel(
        lines, "final test error by depth", "depth (layers)", "test error (%)", xticks=depths
    )
    return plot_panels([curves, by_depth], settings.out / FIGURE)
