"""Extreme depth: ResNet-1202 vs pre-activation ResNet-1001 (He et al. 2016, §4.2, and He et
al. 2016b, "Identity Mappings in Deep Residual Networks", Fig. 1 and Fig. 6).

Four CIFAR networks trained on the same budget (data, iterations, batch, learning-rate
schedule, seed): ResNet-110 and ResNet-1202 with the original blocks (post-activation,
basic), pre-activation ResNet-164 and ResNet-1001 (bottleneck). The report states, from the
runs' metrics files, whether each net trains (its training loss falls and no number is NaN),
how they compare, and what each costs: parameters, time per iteration and peak memory with
and without gradient checkpointing (each measured in a fresh subprocess).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from deepres.checkpoints import MODEL_FILE, read_meta
from deepres.errors import DeepresError
from deepres.experiments.budgets import get_budget
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
from deepres.plots import DEPTH_COLORS, curve_panel, plot_panels
from deepres.train import TrainConfig

NETS = ("resnet110", "resnet1202", "preact_resnet164", "preact_resnet1001")
LABELS = {
    "resnet110": "ResNet-110",
    "resnet1202": "ResNet-1202",
    "preact_resnet164": "pre-act ResNet-164",
    "preact_resnet1001": "pre-act ResNet-1001",
}
BLOCKS = {
    "resnet110": "original, basic",
    "resnet1202": "original, basic",
    "preact_resnet164": "pre-activation, bottleneck",
    "preact_resnet1001": "pre-activation, bottleneck",
}
COLORS = {
    "ResNet-110": DEPTH_COLORS[0],
    "ResNet-1202": DEPTH_COLORS[3],
    "pre-act ResNet-164": DEPTH_COLORS[1],
    "pre-act ResNet-1001": DEPTH_COLORS[4],
}
FIGURE = "extreme-depth.png"
MEMORY_FILE = "memory.json"


def plan(settings: Settings) -> dict[str, Any]:
    """This experiment's part of the budget: its training options (they replace the budget's
    shared ones), the nets trained with gradient checkpointing, and the memory measurement."""
    return get_budget(settings.budget)["extreme-depth"]


def configs(settings: Settings) -> list[TrainConfig]:
    """One run per net, seed 0, all with the same training options."""
    spec = plan(settings)
    own = dataclasses.replace(settings, train_options=spec["train"])
    return [own.config(net, net, grad_checkpointing=net in spec["checkpointing"]) for net in NETS]


def run(settings: Settings) -> Path:
    if settings.depths:
        raise DeepresError(
            "extreme-depth trains fixed nets (ResNet-110/1202, pre-act ResNet-164/1001): "
            "--depths does not apply"
        )
    settings = dataclasses.replace(settings, train_options=plan(settings)["train"])
    settings.save()
    run_all(configs(settings))
    measure_all(settings)
    return report(settings)


# --- Memory and time per iteration, with and without gradient checkpointing ---

# Each measurement runs in a fresh interpreter (``depth_probe``), so that its peak resident
# memory is its own.
PROBE = "deepres.experiments.depth_probe"


def measure(
    net: str, checkpointing: bool, shape: dict[str, int], settings: Settings
) -> dict[str, Any]:
    """Peak memory (CPU: the process's peak resident set; CUDA: peak allocated) and seconds
    per iteration of ``net`` training on random images, measured in a subprocess
    (``deepres.experiments.depth_probe``)."""
    spec = plan(settings)["memory"]
    device = settings.device if settings.device not in (None, "auto") else "cpu"
    args = [net, spec["batch"], shape["chans"], shape["size"], shape["classes"]]
    args += [int(checkpointing), spec["iters"], settings.threads or 0, device]
    done = subprocess.run(
        [sys.executable, "-m", PROBE, *map(str, args)], capture_output=True, text=True
    )
    if done.returncode:
        raise DeepresError(f"measuring {net}'s memory failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    times = result["iter_s"]
    # the first iteration pays for allocations; time the others when there are others
    result["s_per_iter"] = sum(times[1:]) / len(times[1:]) if len(times) > 1 else times[0]
    return {**result, "batch": spec["batch"], "device": device, "grad_checkpointing": checkpointing}


def input_shape(settings: Settings) -> dict[str, int]:
    """Channels, side and classes of the images the runs trained on (from their weights)."""
    meta = read_meta(settings.out / NETS[0] / MODEL_FILE)
    size = meta["input_size"]
    side = size[-1] if isinstance(size, list | tuple) else size
    args = meta["model_args"]
    return {"chans": args["in_chans"], "size": int(side), "classes": args["num_classes"]}


def measure_all(settings: Settings) -> dict[str, Any]:
    """Every net with and without gradient checkpointing; kept in memory.json, measured again
    only when the measurement's settings change."""
    path = settings.out / MEMORY_FILE
    setup = {**plan(settings)["memory"], "shape": input_shape(settings), "nets": list(NETS)}
    setup["method"] = "VmHWM"  # a peak that ru_maxrss inherited from this process was wrong
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("setup") == setup:
            return saved
    results = {
        net: {
            "off": measure(net, False, setup["shape"], settings),
            "on": measure(net, True, setup["shape"], settings),
        }
        for net in NETS
    }
    saved = {"setup": setup, "results": results}
    path.write_text(json.dumps(saved, indent=2) + "\n")
    return saved


# --- The report ---


TRAINING_KEYS = ("lr", "train_loss", "train_error")


def bad_epochs(rows: list[dict[str, Any]], keys: tuple[str, ...] | None = None) -> list[int]:
    """Epochs whose row holds a NaN or infinite number (among ``keys``; any when None)."""
    return [
        row["epoch"]
        for row in rows
        if not all(
            math.isfinite(v)
            for k, v in row.items()
            if isinstance(v, int | float) and (keys is None or k in keys)
        )
    ]


def trains(result: RunResult) -> dict[str, Any]:
    """Whether a run trained: its training loss fell (last epoch below the first) and no
    training number (loss, error, lr) in its metrics file became NaN or infinite. Non-finite
    test numbers are kept apart: they come from BatchNorm's running statistics in evaluation,
    which few iterations leave far from a deep net's real activations."""
    first, last = result.rows[0]["train_loss"], result.rows[-1]["train_loss"]
    bad = bad_epochs(result.rows, TRAINING_KEYS)
    return {
        "first": first,
        "last": last,
        "falls": last < first,
        "nan_epochs": bad,
        "test_nan_epochs": bad_epochs(result.rows),
        "trains": last < first and not bad,
    }


def training_sentence(label: str, result: RunResult) -> str:
    check = trains(result)
    nan = (
        f"training numbers NaN or infinite at epoch(s) {check['nan_epochs']}"
        if check["nan_epochs"]
        else f"no NaN in its training loss, error and lr ({len(result.rows)} epochs)"
    )
    if check["test_nan_epochs"] and not check["nan_epochs"]:
        nan += (
            f"; evaluation (BN running statistics) gave a NaN or infinite test loss at "
            f"epoch(s) {check['test_nan_epochs']}"
        )
    return (
        f"- {label}: training loss {check['first']:.4f} (epoch 1) -> {check['last']:.4f} "
        f"(epoch {len(result.rows)}, iteration {result.iterations}): "
        f"{'falls' if check['falls'] else 'does NOT fall'}; {nan}: "
        f"{'trains' if check['trains'] else 'does NOT train'}."
    )


def per_iteration(result: RunResult) -> float:
    return result.train_time_s / max(result.iterations, 1)


def results_table(results: dict[str, RunResult], cfgs: dict[str, TrainConfig]) -> str:
    header = [
        "net",
        "blocks",
        "params",
        "grad ckpt",
        "iterations",
        "first train loss",
        "final train loss",
        "final train err",
        "final test err",
        "NaN (train / test)",
        "s / iteration",
        "train time (min)",
    ]
    rows = []
    for net, r in results.items():
        check = trains(r)
        rows.append(
            [
                LABELS[net],
                BLOCKS[net],
                count(r.params),
                "on" if cfgs[net].grad_checkpointing else "off",
                r.iterations,
                f"{check['first']:.4f}",
                f"{check['last']:.4f}",
                pct(r.final_train_error),
                pct(r.final_test_error),
                f"{'yes' if check['nan_epochs'] else 'none'} / "
                + (f"epoch {check['test_nan_epochs']}" if check["test_nan_epochs"] else "none"),
                f"{per_iteration(r):.2f}",
                f"{r.train_time_s / 60:.1f}",
            ]
        )
    return markdown_table(header, rows)


def memory_table(memory: dict[str, Any]) -> str:
    header = [
        "net",
        "peak memory, ckpt off (MiB)",
        "peak memory, ckpt on (MiB)",
        "above baseline, off / on (MiB)",
        "s / iteration, ckpt off",
        "s / iteration, ckpt on",
        "time cost",
    ]
    rows = []
    for net, both in memory["results"].items():
        off, on = both["off"], both["on"]
        rows.append(
            [
                LABELS[net],
                f"{off['peak_mb']:,.0f}",
                f"{on['peak_mb']:,.0f}",
                f"{off['peak_mb'] - off['base_mb']:,.0f} / {on['peak_mb'] - on['base_mb']:,.0f}",
                f"{off['s_per_iter']:.2f}",
                f"{on['s_per_iter']:.2f}",
                f"{on['s_per_iter'] / off['s_per_iter'] - 1:+.0%}",
            ]
        )
    return markdown_table(header, rows)


def comparison(results: dict[str, RunResult]) -> list[str]:
    """The two 1000-layer nets against each other and against their shallower kin."""

    def versus(a: str, b: str) -> str:
        ra, rb = results[a], results[b]
        lower = LABELS[a] if ra.final_train_error < rb.final_train_error else LABELS[b]
        if ra.final_train_error == rb.final_train_error:
            lower = "neither (a tie)"
        return (
            f"- {LABELS[a]} vs {LABELS[b]}: final training loss {trains(ra)['last']:.4f} vs "
            f"{trains(rb)['last']:.4f}, training error {pct(ra.final_train_error)} vs "
            f"{pct(rb.final_train_error)}, test error {pct(ra.final_test_error)} vs "
            f"{pct(rb.final_test_error)}; lower training error: {lower}; "
            f"{per_iteration(ra) / per_iteration(rb):.1f}x the time per iteration."
        )

    return [
        versus("resnet1202", "preact_resnet1001"),
        versus("resnet1202", "resnet110"),
        versus("preact_resnet1001", "preact_resnet164"),
    ]


def report(settings: Settings) -> Path:
    """report.md and the figure, from the runs' metrics files and memory.json."""
    cfgs = dict(zip(NETS, configs(settings), strict=True))
    results = {net: read_run(settings.out / net) for net in NETS}
    memory = json.loads((settings.out / MEMORY_FILE).read_text())
    plot_figure(results, settings)
    every = all(trains(r)["trains"] for r in results.values())
    spec, shape = memory["setup"], memory["setup"]["shape"]
    described = dataclasses.replace(settings, description=plan(settings)["description"])
    lines = [
        "# Extreme depth: ResNet-1202 vs pre-activation ResNet-1001",
        "",
        "He et al. 2016 (§4.2: ResNet-1202, original blocks) and He et al. 2016b (Identity "
        "Mappings, Fig. 1 and Fig. 6: pre-activation ResNet-1001), with ResNet-110 and "
        "pre-activation ResNet-164 beside them, all on the same budget.",
        "",
        describe_training(described, cfgs[NETS[0]]),
        f" Nets with gradient checkpointing: "
        f"{', '.join(LABELS[n] for n in NETS if cfgs[n].grad_checkpointing) or 'none'}.",
        "",
        results_table(results, cfgs),
        "",
        "## Does each net train?",
        "",
        "Computed from each run's `metrics.jsonl` (training loss: mean over each epoch's batches):",
        "",
        *(training_sentence(LABELS[net], r) for net, r in results.items()),
        "",
        f"All four nets train: {'yes' if every else 'NO'}.",
        "",
        "## How they compare",
        "",
        *comparison(results),
        "",
        "The papers (CIFAR-10, 64k iterations): ResNet-1202 reaches 7.93% test error, worse "
        "than ResNet-110's 6.43% (overfitting, §4.2); pre-activation ResNet-1001 reaches "
        "4.92%, better than pre-activation ResNet-164's 5.46% (Identity Mappings, Table 2).",
        "",
        "## Memory and time per iteration, with and without gradient checkpointing",
        "",
        f"Each net trained for {spec['iters']} iteration(s) of batch {spec['batch']} on random "
        f"{shape['chans']}x{shape['size']}x{shape['size']} images, in a fresh subprocess on "
        f"`{memory['results'][NETS[0]]['off']['device']}`; peak memory is the process's peak "
        "resident set (VmHWM) on a CPU (model, optimizer and activations, plus PyTorch "
        "itself), the peak allocated memory on a GPU; above baseline: the peak less the "
        "memory after the model was built (the training step's own memory, 0 when the peak "
        "came earlier); time per iteration leaves out the first when there are more.",
        "",
        memory_table(memory),
        "",
        f"![training loss and error of the four nets]({FIGURE})",
        "",
        "Run folders: " + ", ".join(f"`{net}`" for net in NETS),
    ]
    return write_report(settings, "\n".join(lines))


def plot_figure(results: dict[str, RunResult], settings: Settings) -> Path:
    """Training loss (left) and error (right) against iterations, all four nets: training
    dashed, test bold (the Identity Mappings paper's Fig. 1 and Fig. 6)."""
    runs = {LABELS[net]: r.rows for net, r in results.items()}
    data = Path(settings.data).name
    loss = curve_panel(runs, "loss", title=f"loss on {data} (log scale)", colors=COLORS)
    loss.yscale = "log"  # an untrained 1000-layer net's first losses are orders larger
    panels = [loss, curve_panel(runs, "error", title=f"error on {data}", colors=COLORS)]
    return plot_panels(panels, settings.out / FIGURE, panel_size=(6.0, 4.4))
