"""Figures drawn with matplotlib (headless): confusion matrices and training curves."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepres.errors import DeepresError


def pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend, imported on first use (it takes half
    a second, which every command that never draws would pay at start-up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(
    confusion: torch.Tensor, classes: list[str], path: str | Path, title: str = ""
) -> Path:
    """Row-normalised confusion matrix (true class down, predicted across) as a PNG."""
    counts = confusion.double()
    rates = counts / counts.sum(1, keepdim=True).clamp(min=1)
    n = len(classes)
    side = max(4.0, 0.5 * n + 2)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90 if n > 5 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(counts[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# --- Line figures: training curves (paper Fig. 1 and Fig. 6) and layer responses (Fig. 7) ---

# One colour per network depth, in the order of the paper's figures (20, 32, 44, 56, 110).
DEPTH_COLORS = ("#e69f00", "#0072b2", "#009e73", "#d62728", "#000000", "#9467bd", "#8c564b")


@dataclass
class Line:
    """One series of a line plot; ``label`` None keeps it out of the legend."""

    x: Sequence[float]
    y: Sequence[float]
    label: str | None = None
    color: str | None = None
    style: str = "-"
    width: float = 1.5
    marker: str | None = None
    kind: str = ""  # what the series is ("train", "test", ...), recorded in the sidecar


@dataclass
class Panel:
    """One axes: its lines, labels and legend-only entries (``legend_extra``)."""

    lines: list[Line]
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    ylim: tuple[float, float] | None = None
    yscale: str = "linear"  # or "log": losses that span orders of magnitude
    xticks: Sequence[float] | None = None
    legend_extra: list[Line] = field(default_factory=list)


def plot_panels(
    panels: Sequence[Panel],
    path: str | Path,
    title: str = "",
    panel_size: tuple[float, float] = (6.0, 4.2),
) -> Path:
    """Panels side by side as a PNG, plus ``<name>.json`` beside it listing every axis label
    and series (label, kind, number of points, last value) for readers and tests."""
    path = Path(path)
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]), squeeze=False
    )
    sidecar: dict[str, Any] = {"title": title, "panels": []}
    for ax, panel in zip(axes[0], panels, strict=True):
        for line in panel.lines:
            ax.plot(
                line.x,
                line.y,
                line.style,
                color=line.color,
                linewidth=line.width,
                marker=line.marker,
                markersize=3,
                label=line.label,
            )
        for line in panel.legend_extra:
            ax.plot([], [], line.style, color=line.color, linewidth=line.width, label=line.label)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.title:
            ax.set_title(panel.title)
        ax.set_yscale(panel.yscale)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        if panel.xticks is not None:
            ax.set_xticks(list(panel.xticks))
        ax.grid(True, color="#dddddd", linewidth=0.6)
        if any(line.label for line in [*panel.lines, *panel.legend_extra]):
            ax.legend(fontsize=8, frameon=False)
        sidecar["panels"].append(
            {
                "title": panel.title,
                "xlabel": panel.xlabel,
                "ylabel": panel.ylabel,
                "series": [
                    {
                        "label": line.label,
                        "kind": line.kind,
                        "points": len(line.y),
                        "last": float(line.y[-1]) if len(line.y) else None,
                    }
                    for line in panel.lines
                ],
            }
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


CURVE_KEYS = {"error": ("train_error", "test_error"), "loss": ("train_loss", "test_loss")}


def curve_panel(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    metric: str = "error",
    x: str = "step",
    title: str = "",
    colors: Mapping[str, str] | None = None,
) -> Panel:
    """Training (thin, dashed) and test (bold) curves of runs, one colour per run, as in
    the paper's Fig. 1 and Fig. 6. ``runs`` maps a label to its ``metrics.jsonl`` rows."""
    if metric not in CURVE_KEYS:
        raise DeepresError(f"--metric must be one of {', '.join(CURVE_KEYS)}, got {metric!r}")
    if x not in ("step", "epoch"):
        raise DeepresError(f"--x must be 'step' or 'epoch', got {x!r}")
    train_key, test_key = CURVE_KEYS[metric]
    scale = 100.0 if metric == "error" else 1.0
    lines: list[Line] = []
    for index, (label, rows) in enumerate(runs.items()):
        color = (colors or {}).get(label, DEPTH_COLORS[index % len(DEPTH_COLORS)])
        tested = [r for r in rows if test_key in r]
        lines.append(
            Line(
                [r[x] for r in rows],
                [scale * r[train_key] for r in rows],
                None,
                color,
                "--",
                1.0,
                kind=f"train {label}",
            )
        )
        lines.append(
            Line(
                [r[x] for r in tested],
                [scale * r[test_key] for r in tested],
                label,
                color,
                "-",
                2.2,
                kind=f"test {label}",
            )
        )
    return Panel(
        lines,
        title,
        "iterations" if x == "step" else "epochs",
        "error (%)" if metric == "error" else "loss",
        legend_extra=[
            Line([], [], "dashed: training", "#777777", "--", 1.0),
            Line([], [], "bold: test", "#777777", "-", 2.2),
        ],
    )


def plot_training_curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    metric: str = "error",
    x: str = "step",
    title: str = "",
    ylim: tuple[float, float] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """One figure of training and test curves of several runs (see ``curve_panel``)."""
    panel = curve_panel(runs, metric, x, title, colors)
    panel.ylim = ylim
    return plot_panels([panel], path)


def plot_layer_responses(
    responses: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    dashed: Sequence[str] = (),
) -> Path:
    """Std of each 3x3 layer's response (paper Fig. 7): by layer index (left) and sorted by
    magnitude (right). ``dashed`` names the series drawn dashed (the plain nets)."""

    def lines(sort: bool) -> list[Line]:
        out = []
        for index, (label, values) in enumerate(responses.items()):
            ys = sorted(values, reverse=True) if sort else list(values)
            out.append(
                Line(
                    list(range(1, len(ys) + 1)),
                    ys,
                    label,
                    (colors or {}).get(label, DEPTH_COLORS[index % len(DEPTH_COLORS)]),
                    "--" if label in dashed else "-",
                    1.4,
                    marker="o" if label in dashed else "s",
                    kind="sorted" if sort else "original",
                )
            )
        return out

    return plot_panels(
        [
            Panel(lines(False), "by layer", "layer index (original)", "std"),
            Panel(lines(True), "sorted by magnitude", "layer index (sorted by magnitude)", "std"),
        ],
        path,
        title,
    )
