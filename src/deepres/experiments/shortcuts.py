"""Identity vs projection shortcuts (He et al. 2016, §4.1, Table 3), here on CIFAR.

The same ResNet trained with option A (zero-padding identity where the shape changes), B
(projections where the shape changes, identity elsewhere) and C (projections everywhere).
The paper (ImageNet ResNet-34): C slightly better than B, B slightly better than A, at a cost
in parameters for C: projections are not essential to the degradation problem.
"""

from __future__ import annotations

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
from deepres.plots import DEPTH_COLORS, Panel, curve_panel, plot_panels
from deepres.train import TrainConfig

OPTIONS = ("A", "B", "C")
# Published reference figures (He et al. 2016, Table 3): ImageNet ResNet-34, 10-crop top-1 error %.
PAPER_TABLE3 = {"A": 25.03, "B": 24.52, "C": 24.19}
FIGURE = "shortcuts.png"


def run_name(depth: int, option: str) -> str:
    return f"{model_name('resnet', depth)}-{option}"


def configs(settings: Settings) -> list[TrainConfig]:
    return [
        settings.config(model_name("resnet", depth), run_name(depth, option), shortcut=option)
        for depth in settings.depths
        for option in OPTIONS
    ]


def run(settings: Settings) -> Path:
    settings.save()
    run_all(configs(settings))
    return report(settings)


def report(settings: Settings) -> Path:
    """report.md and the figure, from the runs' metrics files."""
    results = {
        depth: {option: read_run(settings.out / run_name(depth, option)) for option in OPTIONS}
        for depth in settings.depths
    }
    plot_panels([curves(depth, runs) for depth, runs in results.items()], settings.out / FIGURE)
    lines = [
        "# Identity vs projection shortcuts on CIFAR (He et al. 2016, Table 3)",
        "",
        "A: zero-padding identity where the shape changes; B: projections where the shape "
        "changes; C: projections on every block.",
        "",
        describe_training(settings, configs(settings)[0]),
        "",
        results_table(results),
        "",
        "The last column is the paper's published Table 3 (ImageNet, not CIFAR), for the "
        "ordering only; it was not measured here.",
        "",
        f"![training curves]({FIGURE})",
    ]
    return write_report(settings, "\n".join(lines))


def results_table(results: dict[int, dict[str, RunResult]]) -> str:
    """One row per run: parameters and errors beside the paper's published error."""
    header = [
        "net",
        "shortcut",
        "params",
        "final test err (final weights)",
        "final train err",
        "paper (published, ImageNet ResNet-34 top-1, 10-crop)",
    ]
    rows = [
        [
            r.label,
            option,
            count(r.params),
            pct(r.final_test_error),
            pct(r.final_train_error),
            f"{PAPER_TABLE3[option]:.2f}%",
        ]
        for runs in results.values()
        for option, r in runs.items()
    ]
    return markdown_table(header, rows)


def curves(depth: int, runs: dict[str, RunResult]) -> Panel:
    """The training curves of one depth's ResNet with each shortcut option."""
    return curve_panel(
        {f"{r.label} {option}": r.rows for option, r in runs.items()},
        title=f"ResNet-{depth}: shortcut options",
        colors={f"{r.label} {o}": DEPTH_COLORS[i] for i, (o, r) in enumerate(runs.items())},
    )
