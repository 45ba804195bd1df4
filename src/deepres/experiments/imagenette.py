"""Imagenette from random weights, against the public leaderboard (fastai/imagenette).

Its rules: imagenette2 (train 9,469 / val 3,925 images of 10 ImageNet classes), random initial
weights, one model, one view, no tuning on the val split. Every run follows the
``imagenette`` recipe for the budget's epochs (or ``--epochs``), one run per seed; each
epoch's top-1 on the val split is the curve, the last epoch's is the result (final weights,
nothing chosen on val).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from deepres.errors import DeepresError
from deepres.experiments.budgets import IMAGENETTE
from deepres.experiments.reports import describe_training, markdown_table, pct, write_report
from deepres.experiments.runs import run_all
from deepres.experiments.settings import Settings
from deepres.plots import Line, Panel, plot_panels
from deepres.train import TrainConfig, read_metrics, resolve_config

FIGURE = "imagenette.png"
# The leaderboard's rows (fastai/imagenette README): top-1 % on val, mean of 5 runs,
# by image size and epochs.
LEADERBOARD = {128: {5: 87.43, 20: 91.57, 80: 93.55}, 192: {5: 86.76, 20: 92.50}}
ENTRY = "fastai xresnet50 / xse_resnext50 (Mish, MaxBlurPool, self-attention, Ranger, flat-cos)"


def budget_part(settings: Settings) -> dict[str, Any]:
    return IMAGENETTE[settings.budget]


def seeds(settings: Settings, chosen: int | None) -> int:
    return chosen or budget_part(settings)["seeds"]


def config(settings: Settings, seed: int, epochs: int | None = None) -> TrainConfig:
    """One seed's run: the recipe, then the budget's options, then ``--epochs``."""
    part = budget_part(settings)
    train = {**part["train"], **({"epochs": epochs} if epochs else {})}
    return resolve_config(
        part["recipe"],
        data=settings.data,
        data_root=settings.data_root,
        out=str(settings.out / f"seed{seed}"),
        seed=seed,
        threads=settings.threads,
        device=settings.device,
        progress=settings.progress,
        eval_every=1,
        **train,
    )


def run(settings: Settings, members: int | None = None, epochs: int | None = None) -> Path:
    """Train (or finish) one run per seed, then write report.md and the curve."""
    settings.save()
    configs = [config(settings, seed, epochs) for seed in range(seeds(settings, members))]
    run_all(configs)
    return report(settings, configs)


def curve(cfg: TrainConfig) -> list[dict[str, Any]]:
    rows = [row for row in read_metrics(cfg.out) if "test_top1" in row]
    if not rows:
        raise DeepresError(f"{cfg.out}/metrics.jsonl has no evaluated epoch")
    return rows


def report(settings: Settings, configs: list[TrainConfig]) -> Path:
    """report.md: each seed's final val top-1, minutes and img/s beside the leaderboard."""
    curves = {cfg.seed: curve(cfg) for cfg in configs}
    cfg = configs[0]
    finals = [100 * rows[-1]["test_top1"] for rows in curves.values()]
    rows = [
        [
            f"seed {seed}",
            len(points),
            pct(points[-1]["test_top1"]),
            f"{points[-1]['time'] / 60:.1f}",
            f"{statistics.fmean(p['images_per_s'] for p in points):.0f}",
        ]
        for seed, points in curves.items()
    ]
    size, epochs = cfg.image_size or 224, len(next(iter(curves.values())))
    board = LEADERBOARD.get(size, {}).get(epochs)
    lines = [
        "# Imagenette from random weights, against the leaderboard",
        "",
        describe_training(settings, cfg),
        f" Model `{cfg.model}` at {size} px; top-1 on the val split with the final weights.",
        "",
        markdown_table(["run", "epochs", "val top-1", "train minutes", "img/s"], rows),
        "",
        f"Mean of {len(finals)} seed(s): **{statistics.fmean(finals):.2f}%** after {epochs} "
        "epochs. Leaderboard at this size and length: "
        + (f"{board:.2f}% ({ENTRY}, mean of 5 runs)." if board else "no entry."),
        "",
        f"![val top-1 against epochs]({FIGURE})",
    ]
    plot_panels([accuracy_panel(curves, size)], settings.out / FIGURE)
    return write_report(settings, "\n".join(lines))


def accuracy_panel(curves: dict[int, list[dict[str, Any]]], size: int) -> Panel:
    lines = [
        Line(
            [row["epoch"] for row in points],
            [100 * row["test_top1"] for row in points],
            label=f"seed {seed}",
            marker="o",
            kind="val",
        )
        for seed, points in curves.items()
    ]
    last = max(row["epoch"] for points in curves.values() for row in points)
    board = {e: top1 for e, top1 in LEADERBOARD.get(size, {}).items() if e <= max(last, 5)}
    if board:
        lines.append(
            Line(list(board), list(board.values()), label="leaderboard", style="--", marker="s")
        )
    return Panel(lines, title=f"Imagenette, {size} px", xlabel="epoch", ylabel="val top-1 (%)")
