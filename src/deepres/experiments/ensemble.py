"""Ensembles of one ResNet trained from several seeds (He et al. 2016, §4.1, Table 5).

The paper's best ImageNet result combines six models into an ensemble (3.57% top-5 error on
the test set, against 4.49% on the validation set for its best single model, ResNet-152).
Here one CIFAR ResNet is trained from ``--seeds`` seeds (its own initialisation, data order
and augmentation each) with the budget's recipe, and the members' softmax probabilities are
averaged (``deepres.inference.Ensemble``). The report gives every member's test error, the
ensemble's, its gain over its best member, and the ensemble's error against its size (the
first k members in seed order).

Every number is measured here, in float32, on the same test images, with the members' final
weights (``model.safetensors``; an epoch chosen *on the test set* would flatter the
members, and training chooses none there). The members' test probabilities are kept in
``test-probabilities.safetensors`` and the numbers in ``ensemble.json``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from deepres.checkpoints import MODEL_FILE, load_model
from deepres.data import load_split
from deepres.errors import DeepresError
from deepres.experiments.budgets import get_budget
from deepres.experiments.model_names import display_name, model_name
from deepres.experiments.reports import describe_training, markdown_table, pct, write_report
from deepres.experiments.runs import run_all
from deepres.experiments.settings import Settings
from deepres.inference.ensemble import Ensemble
from deepres.plots import Line, Panel, plot_panels
from deepres.train import EvalResult, TrainConfig, resolve_config
from deepres.train.evaluate import EvalAccumulator, eval_batches, evaluate

FIGURE = "ensemble-size.png"  # its sidecar: ensemble-size.json
PROBABILITIES = "test-probabilities.safetensors"
RESULTS = "ensemble.json"
EVAL_BATCH = 250


def budget_part(settings: Settings) -> dict[str, Any]:
    """This experiment's part of the budget: recipe, training options, number of members."""
    return get_budget(settings.budget)["ensemble"]


def ensemble_settings(settings: Settings, members: int | None = None) -> Settings:
    """``settings`` with the ensemble's training options, description and member count
    (``members``, else the budget's)."""
    if len(settings.depths) != 1:
        raise DeepresError(
            f"the ensemble experiment trains one network, got --depths {settings.depths}: "
            "give one depth"
        )
    spec = budget_part(settings)
    return dataclasses.replace(
        settings,
        seeds=members or spec["members"],
        train_options=spec["train"],
        description=spec["description"],
    )


def member_name(settings: Settings, seed: int) -> str:
    return f"{model_name('resnet', settings.depths[0])}-seed{seed}"


def member_config(settings: Settings, seed: int) -> TrainConfig:
    """The training configuration of the member with ``seed``: the budget's recipe, then its
    training options."""
    return resolve_config(
        budget_part(settings)["recipe"],
        model=model_name("resnet", settings.depths[0]),
        data=settings.data,
        data_root=settings.data_root,
        out=str(settings.out / member_name(settings, seed)),
        seed=seed,
        threads=settings.threads,
        device=settings.device,
        progress=settings.progress,
        eval_every=1,
        **settings.train_options,
    )


def configs(settings: Settings) -> list[TrainConfig]:
    return [member_config(settings, seed) for seed in range(settings.seeds)]


def run(settings: Settings, members: int | None = None) -> Path:
    """Train (or finish) the members, measure them and their ensemble, write report.md."""
    settings = ensemble_settings(settings, members)
    settings.save()
    run_all(configs(settings))
    return report(settings)


@dataclass
class Member:
    run: Path
    seed: int
    result: EvalResult

    @property
    def label(self) -> str:
        return f"seed {self.seed}"


@dataclass
class Measured:
    """The members' and the ensemble's test results; ``curve[k - 1]`` is the ensemble of the
    first k members."""

    members: list[Member]
    ensemble: EvalResult
    curve: list[EvalResult]

    @property
    def best(self) -> Member:
        """The member with the lowest top-1 error (the first of equals)."""
        return max(self.members, key=lambda m: m.result.top1)


def probabilities(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's softmax probabilities over ``batches`` (eval mode) and the labels."""
    probs, labels = [], []
    model.eval()
    with torch.no_grad():
        for images, targets in batches:
            probs.append(model(images).float().softmax(-1))
            labels.append(targets)
    return torch.cat(probs), torch.cat(labels)


def score(probs: torch.Tensor, labels: torch.Tensor) -> EvalResult:
    """Top-1/top-5 error and loss of class probabilities (as ``Ensemble`` turns them into
    log-probabilities)."""
    accumulator = EvalAccumulator(probs.shape[1])
    accumulator.add(probs.clamp_min(torch.finfo(probs.dtype).tiny).log(), labels)
    return accumulator.result()


def measure(settings: Settings) -> Measured:
    """Every member and every ensemble of the first k members, on the test split; the
    members' probabilities are saved in ``PROBABILITIES``."""
    if settings.threads:  # as the training would (when every member was finished earlier)
        torch.set_num_threads(settings.threads)
    cfgs = configs(settings)
    loaded = [load_model(Path(cfg.out) / MODEL_FILE) for cfg in cfgs]
    models, meta = [model for model, _ in loaded], loaded[0][1]
    images = load_split(
        settings.data,
        "test",
        settings.data_root,
        subset=cfgs[0].test_subset,
        image_size=meta.get("input_size", 224),
        stats=(meta["mean"], meta["std"]),
    )
    outputs = [probabilities(model, eval_batches(images, EVAL_BATCH, meta)) for model in models]
    labels = outputs[0][1]
    probs = torch.stack([p for p, _ in outputs])
    named = {member_name(settings, cfg.seed): p for cfg, p in zip(cfgs, probs, strict=True)}
    save_file({"labels": labels, **named}, str(settings.out / PROBABILITIES))
    members = [
        Member(Path(cfg.out), cfg.seed, score(p, labels))
        for cfg, p in zip(cfgs, probs, strict=True)
    ]
    curve = [score(probs[:k].mean(0), labels) for k in range(1, len(models) + 1)]
    batches = eval_batches(images, EVAL_BATCH, meta)
    ensemble = evaluate(Ensemble(models), batches, len(meta["classes"])).result()
    return Measured(members, ensemble, curve)


def report(settings: Settings) -> Path:
    """report.md, ensemble.json and the figure, measured from the members' weights."""
    measured = measure(settings)
    label = display_name(model_name("resnet", settings.depths[0]))
    size = len(measured.members)
    save_results(measured, settings)
    plot_curve(measured, settings, label)
    lines = [
        f"# Ensembles of {label}: {size} seeds and their average (He et al. 2016, §4.1, Table 5)",
        "",
        describe_training(settings, configs(settings)[0]),
        "",
        f"Each member is a {label} trained from its own seed (initialisation, data order, "
        "augmentation). The ensemble averages the members' softmax probabilities. Every "
        f"number below is measured on the same {measured.ensemble.count} test images with the "
        "members' final weights (`model.safetensors`, not the epoch with the best test error, "
        "which would be chosen on the test set), in float32.",
        "",
        members_table(measured, label),
        "",
        "## Outcome",
        "",
        *outcome(measured),
        "",
        "## Ensemble error against its size",
        "",
        curve_table(measured),
        "",
        f"![ensemble error against ensemble size]({FIGURE})",
        "",
        "The paper's ImageNet ensemble of six models of different depths reached 3.57% top-5 "
        "error on the test set (Table 5), against 4.49% on the validation set for its best "
        "single model, ResNet-152 (Table 4).",
        "",
        "Run folders: " + ", ".join(f"`{m.run.name}`" for m in measured.members),
    ]
    return write_report(settings, "\n".join(lines))


def members_table(measured: Measured, label: str) -> str:
    """One row per member, then the ensemble of all of them."""
    header = ["model", "seeds", "test top-1 error", "test top-5 error", "test loss"]
    rows = [
        [label, m.seed, pct(1 - m.result.top1), pct(1 - m.result.top5), f"{m.result.loss:.4f}"]
        for m in measured.members
    ]
    last = measured.members[-1].seed
    ens = measured.ensemble
    rows.append(
        [
            f"**ensemble of {len(measured.members)}**",
            f"0-{last}" if last else "0",
            f"**{pct(1 - ens.top1)}**",
            f"**{pct(1 - ens.top5)}**",
            f"{ens.loss:.4f}",
        ]
    )
    return markdown_table(header, rows)


def gain_text(gain: float) -> str:
    """A gain in error (a fraction; positive: the ensemble is better) in words."""
    if gain > 0:
        return f"a gain of {100 * gain:.2f} points"
    if gain < 0:
        return f"no gain: {100 * -gain:.2f} points worse"
    return "no gain: the same error"


def outcome(measured: Measured) -> list[str]:
    """The ensemble against its best member (top-1 and top-5) and against the members' mean."""
    ens, best = measured.ensemble, measured.best
    best5 = max(m.result.top5 for m in measured.members)
    errors = [1 - m.result.top1 for m in measured.members]
    mean = statistics.mean(errors)
    spread = f" ± {100 * statistics.stdev(errors):.2f}" if len(errors) > 1 else ""
    return [
        f"- Ensemble of {len(errors)}: top-1 error {pct(1 - ens.top1)} vs "
        f"{pct(1 - best.result.top1)} for its best member ({best.label}): "
        f"{gain_text(ens.top1 - best.result.top1)}.",
        f"- Top-5 error {pct(1 - ens.top5)} vs {pct(1 - best5)} for the best member by top-5: "
        f"{gain_text(ens.top5 - best5)}.",
        f"- The members' mean top-1 error is {100 * mean:.2f}{spread}%; the ensemble's is "
        f"{100 * (mean - (1 - ens.top1)):.2f} points below it.",
    ]


def curve_table(measured: Measured) -> str:
    header = ["members", "seeds", "test top-1 error", "test top-5 error"]
    rows = [
        [k, f"0-{k - 1}" if k > 1 else "0", pct(1 - r.top1), pct(1 - r.top5)]
        for k, r in enumerate(measured.curve, start=1)
    ]
    return markdown_table(header, rows)


def save_results(measured: Measured, settings: Settings) -> Path:
    """The numbers of the report as ``ensemble.json`` (errors as fractions)."""

    def errors(result: EvalResult) -> dict[str, float]:
        return {
            "top1_error": 1 - result.top1,
            "top5_error": 1 - result.top5,
            "loss": result.loss,
        }

    best = measured.best
    values = {
        "count": measured.ensemble.count,
        "members": [
            {"run": m.run.name, "seed": m.seed, **errors(m.result)} for m in measured.members
        ],
        "ensemble": errors(measured.ensemble),
        "curve": [{"members": k, **errors(r)} for k, r in enumerate(measured.curve, start=1)],
        "best_member": best.run.name,
        "gain_top1": measured.ensemble.top1 - best.result.top1,
    }
    path = settings.out / RESULTS
    path.write_text(json.dumps(values, indent=2) + "\n")
    return path


def plot_curve(measured: Measured, settings: Settings, label: str) -> Path:
    """Top-1 (left) and top-5 (right) test error of the ensemble of the first k members,
    each member alone, and the best single member as a reference line."""
    sizes = list(range(1, len(measured.members) + 1))
    panels = []
    for what in ("top1", "top5"):
        best = 100 * (1 - max(getattr(m.result, what) for m in measured.members))
        lines = [
            Line(
                sizes,
                [100 * (1 - getattr(r, what)) for r in measured.curve],
                "ensemble of the first k members",
                "#0072b2",
                "-",
                2.0,
                "o",
                "ensemble",
            ),
            Line(
                sizes,
                [100 * (1 - getattr(m.result, what)) for m in measured.members],
                "member k alone",
                "#e69f00",
                "-",
                0.0,
                "s",
                "members",
            ),
            Line(
                [sizes[0], sizes[-1]],
                [best, best],
                "best member",
                "#d62728",
                "--",
                1.2,
                kind="best member",
            ),
        ]
        name = "top-1" if what == "top1" else "top-5"
        panels.append(
            Panel(
                lines,
                f"{name} error",
                "ensemble size (members, in seed order)",
                f"test {name} error (%)",
                xticks=sizes,
            )
        )
    title = f"{label} ensembles on {Path(settings.data).name}"
    return plot_panels(panels, settings.out / FIGURE, title)
