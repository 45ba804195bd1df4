"""The degradation problem (He et al. 2016, §4.2, Fig. 1 and Fig. 6).

Plain nets and ResNets of the same depths, trained with the same recipe. The paper's finding:
the deeper *plain* net has the higher training error (degradation, Fig. 1), while the deeper
*ResNet* has the lower one (Fig. 6). The report states the outcome computed from the runs.
"""

from __future__ import annotations

from pathlib import Path

from deepres.experiments.model_names import display_name, model_name
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

KINDS = ("plain", "resnet")
FIGURES = {"plain": "degradation-plain.png", "resnet": "degradation-resnet.png"}
FIG1 = "fig1-plain.png"


def configs(settings: Settings) -> list[TrainConfig]:
    """One run per network: plain-d and ResNet-d for every depth d, seed 0."""
    return [
        settings.config(model_name(kind, depth), model_name(kind, depth))
        for kind in KINDS
        for depth in settings.depths
    ]


def run(settings: Settings) -> Path:
    settings.save()
    run_all(configs(settings))
    return report(settings)


def depth_colors(settings: Settings, kind: str) -> dict[str, str]:
    """The same colour for the same depth in the plain and the ResNet figure."""
    return {
        display_name(model_name(kind, depth)): DEPTH_COLORS[i % len(DEPTH_COLORS)]
        for i, depth in enumerate(settings.depths)
    }


def outcome(deep: RunResult, shallow: RunResult, want_lower: bool, what: str) -> str:
    """A sentence comparing two final training errors, with the verdict."""
    lower = deep.final_train_error < shallow.final_train_error
    shown = lower == want_lower
    return (
        f"{deep.label} final training error {pct(deep.final_train_error)} vs {shallow.label} "
        f"{pct(shallow.final_train_error)}: {what} {'shown' if shown else 'NOT shown'}."
    )


def report(settings: Settings) -> Path:
    """report.md and the figures, from the runs' metrics files."""
    results = {
        kind: [read_run(settings.out / model_name(kind, d)) for d in settings.depths]
        for kind in KINDS
    }
    everything = [r for rs in results.values() for r in rs]
    plot_figures(results, settings)
    lines = [
        "# Degradation: plain networks vs ResNets (He et al. 2016, Fig. 1 and Fig. 6)",
        "",
        describe_training(settings, configs(settings)[0]),
        "",
        "Training error is the running error over each epoch's training batches (with "
        "augmentation), as logged in `metrics.jsonl`; test error is measured after each epoch.",
        "",
        results_table(everything),
        "",
        "## Outcome",
        "",
        *outcomes(results),
        "",
        "The paper (Fig. 6, CIFAR-10, 64k iterations) finds deeper plain nets with higher "
        "training error and deeper ResNets with lower.",
        "",
        f"![plain networks]({FIGURES['plain']})",
        "",
        f"![ResNets]({FIGURES['resnet']})",
        "",
        f"![Fig. 1: plain networks, training and test error]({FIG1})",
        "",
        "Run folders: " + ", ".join(f"`{r.run.name}`" for r in everything),
    ]
    return write_report(settings, "\n".join(lines))


def results_table(results: list[RunResult]) -> str:
    """One row per run: parameters, iterations, training and test errors, training time. The
    test error is the final weights' (no epoch is chosen on the test split)."""
    header = [
        "net",
        "params",
        "iterations",
        "final train err",
        "lowest train err (any epoch)",
        "final test err (final weights)",
        "train time (min)",
    ]
    rows = [
        [
            r.label,
            count(r.params),
            r.iterations,
            pct(r.final_train_error),
            pct(r.best_train_error),
            pct(r.final_test_error),
            f"{r.train_time_s / 60:.1f}",
        ]
        for r in results
    ]
    return markdown_table(header, rows)


def outcomes(results: dict[str, list[RunResult]]) -> list[str]:
    """The paper's three findings, each shown or not by the shallowest and deepest runs."""
    plain, res = results["plain"], results["resnet"]
    if len(plain) < 2:
        return ["- Only one depth was trained: no depth comparison."]
    return [
        "- " + outcome(plain[-1], plain[0], False, "degradation of the deeper plain net"),
        "- " + outcome(res[-1], res[0], True, "the deeper ResNet training better"),
        "- " + outcome(res[-1], plain[-1], True, "the ResNet beating the plain net"),
    ]


def plot_figures(results: dict[str, list[RunResult]], settings: Settings) -> None:
    """The plain and the ResNet curves (Fig. 6) and Fig. 1, all on the same error scale."""
    everything = [r for rs in results.values() for r in rs]
    top = max(
        100 * max(row.get(key, 0.0) for row in r.rows for key in ("train_error", "test_error"))
        for r in everything
    )
    ylim = (0.0, min(100.0, top * 1.05 + 1))
    for kind, title in (("plain", "plain networks"), ("resnet", "ResNets")):
        panel = curve_panel(
            {r.label: r.rows for r in results[kind]},
            title=f"{title} on {Path(settings.data).name}",
            colors=depth_colors(settings, kind),
        )
        panel.ylim = ylim
        plot_panels([panel], settings.out / FIGURES[kind])
    plot_fig1(results["plain"], settings, ylim)


def plot_fig1(plain: list[RunResult], settings: Settings, ylim: tuple[float, float]) -> Path:
    """Paper Fig. 1: training error (left) and test error (right) of the shallowest and the
    deepest plain net."""
    chosen = [plain[0], plain[-1]] if len(plain) > 1 else plain
    colors = depth_colors(settings, "plain")
    panels = []
    for key, title in (("train_error", "training error"), ("test_error", "test error")):
        lines = []
        for r in chosen:
            points = [row for row in r.rows if key in row]
            lines.append(
                Line(
                    [row["step"] for row in points],
                    [100 * row[key] for row in points],
                    r.label,
                    colors[r.label],
                    width=1.8,
                    kind=f"{key.split('_')[0]} {r.label}",
                )
            )
        panels.append(Panel(lines, title, "iterations", f"{title} (%)", ylim))
    return plot_panels(panels, settings.out / FIG1, panel_size=(5.0, 3.8))
