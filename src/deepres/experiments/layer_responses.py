"""Standard deviations of layer responses (He et al. 2016, §4.2, Fig. 7).

"The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity
(ReLU/addition)." In a CIFAR network that is the stem's BN output and, in every basic block,
``bn1``'s output (before its ReLU) and ``bn2``'s output (before the addition). Forward hooks
on those BN modules take the std of each output over a batch of test images, model in eval
mode. The paper finds ResNets' responses generally smaller than the plain nets', and
smaller for deeper ResNets: residual functions are closer to zero than unreferenced ones.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import torch
from torch import nn

from deepres.checkpoints import MODEL_FILE, load_model
from deepres.data import load_split, normalize
from deepres.errors import DeepresError
from deepres.experiments import degradation
from deepres.experiments.model_names import MODEL_NAME, display_name, parse_model
from deepres.experiments.reports import markdown_table, write_report
from deepres.experiments.runs import is_finished, run_all
from deepres.experiments.settings import Settings
from deepres.models import BasicBlock
from deepres.plots import DEPTH_COLORS, plot_layer_responses

FIGURE = "layer-responses.png"
DATA_FILE = "responses.json"


def response_modules(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The BN after every 3x3 convolution, in forward order: the stem's, then bn1 and bn2
    of each basic block."""
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    if not blocks or not isinstance(getattr(model, "bn1", None), nn.BatchNorm2d):
        raise DeepresError(
            f"{type(model).__name__} has no basic blocks: layer responses are measured on "
            "CIFAR plain nets and ResNets"
        )
    return [model.bn1, *(bn for block in blocks for bn in (block.bn1, block.bn2))]


@torch.no_grad()
def layer_response_stds(model: nn.Module, images: torch.Tensor) -> list[float]:
    """Std of each 3x3 layer's response (BN output, before ReLU/addition) over ``images``.

    The std is taken inside the hook, before the in-place ReLU that follows ``bn1`` can
    change the tensor."""
    modules = response_modules(model)
    stds: list[float] = [math.nan] * len(modules)

    def hook(index: int):  # noqa: ANN202
        def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            stds[index] = output.double().std().item()

        return record

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        model.eval()(images)
    finally:
        for handle in handles:
            handle.remove()
    return stds


def sample_test_images(run: Path, count: int, data_root: str | None) -> torch.Tensor:
    """About ``count`` test images of the run's data set (the first of every class),
    normalised as in training."""
    config = json.loads((run / "config.json").read_text())
    _, meta = load_model_meta(run)
    classes = len(meta["classes"])
    split = load_split(
        config["data"],
        "test",
        data_root or config.get("data_root"),
        subset=max(1, math.ceil(count / classes)),
    )
    if not hasattr(split, "images"):
        raise DeepresError(f"{config['data']}: layer responses need an in-memory data set")
    return normalize(split.images[:count], meta["mean"], meta["std"])


def load_model_meta(run: Path) -> tuple[nn.Module, dict]:
    return load_model(run / MODEL_FILE)


def find_runs(folder: Path, depths: list[int] | None) -> list[Path]:
    """Finished plain/ResNet runs (shortcut A or none) in ``folder``, plain first, by depth."""
    if not folder.is_dir():
        raise DeepresError(f"--from {folder}: no such folder")
    found = []
    for run in sorted(folder.iterdir()):
        config_file = run / "config.json"
        if not (is_finished(run) and config_file.is_file()):
            continue
        config = json.loads(config_file.read_text())
        if not MODEL_NAME.match(config["model"]) or config.get("shortcut") not in (None, "A"):
            continue
        kind, depth = parse_model(config["model"])
        if config.get("seed", 0) == 0 and (not depths or depth in depths):
            found.append((kind != "plain", depth, run))
    if not found:
        raise DeepresError(
            f"--from {folder}: no finished plain/ResNet runs there (folders with summary.json "
            "and a CIFAR model); run `deepres experiment degradation` first"
        )
    return [run for *_, run in sorted(found)]


def run(settings: Settings, explicit_depths: bool = False) -> Path:
    settings.save()
    if settings.source is not None:
        runs = find_runs(settings.source, settings.depths if explicit_depths else None)
    else:
        cfgs = degradation.configs(settings)
        run_all(cfgs)
        runs = [Path(cfg.out) for cfg in cfgs]
    measured = {}
    for folder in runs:
        model, meta = load_model_meta(folder)
        images = sample_test_images(folder, settings.response_images, settings.data_root)
        measured[display_name(meta["model"])] = {
            "run": str(folder),
            "images": len(images),
            "stds": layer_response_stds(model, images),
        }
    (settings.out / DATA_FILE).write_text(json.dumps(measured, indent=2) + "\n")
    return report(settings)


def report(settings: Settings) -> Path:
    """report.md and the figure, from the measured ``responses.json``."""
    measured = json.loads((settings.out / DATA_FILE).read_text())
    stds = {label: m["stds"] for label, m in measured.items()}
    depths = sorted({parse_depth(label) for label in stds})
    colors = {
        label: DEPTH_COLORS[depths.index(parse_depth(label)) % len(DEPTH_COLORS)] for label in stds
    }
    plot_layer_responses(
        stds,
        settings.out / FIGURE,
        "std of layer responses (BN output before ReLU/addition)",
        colors,
        dashed=[label for label in stds if label.startswith("plain")],
    )
    rows = [
        [
            label,
            len(values),
            f"{statistics.mean(values):.3f}",
            f"{statistics.median(values):.3f}",
            f"{max(values):.3f}",
            measured[label]["images"],
        ]
        for label, values in stds.items()
    ]
    lines = [
        "# Standard deviations of layer responses (He et al. 2016, Fig. 7)",
        "",
        "Response = output of the BN after each 3x3 convolution, before the ReLU and the "
        "addition (the stem's BN, and bn1 and bn2 of every basic block); its std is taken over "
        "all values of a batch of test images, model in eval mode.",
        "",
        markdown_table(
            ["net", "3x3 layers", "mean std", "median std", "max std", "test images"], rows
        ),
        "",
        "## Outcome",
        "",
        *comparisons(stds),
        "",
        "The paper (Fig. 7): ResNets have generally smaller responses than their plain "
        "counterparts, and the deeper ResNet the smaller the magnitudes.",
        "",
        f"![layer responses]({FIGURE})",
        "",
        "Runs: " + ", ".join(f"`{m['run']}`" for m in measured.values()),
    ]
    return write_report(settings, "\n".join(lines))


def parse_depth(label: str) -> int:
    return int(label.rsplit("-", 1)[1])


def comparisons(stds: dict[str, list[float]]) -> list[str]:
    """Sentences with the numbers: ResNet vs plain at each depth, deeper vs shallower ResNet."""
    out = []
    for label, values in stds.items():
        if not label.startswith("ResNet"):
            continue
        plain = stds.get(label.replace("ResNet", "plain"))
        if plain is None or len(plain) != len(values):
            continue
        smaller = sum(r < p for r, p in zip(values, plain, strict=True))
        verdict = "yes" if smaller > len(values) / 2 else "no"
        out.append(
            f"- {label} vs {label.replace('ResNet', 'plain')}: mean std "
            f"{statistics.mean(values):.3f} vs {statistics.mean(plain):.3f}; the residual "
            f"response is smaller in {smaller} of {len(values)} layers: residual responses "
            f"generally smaller: {verdict}."
        )
    resnets = sorted((parse_depth(k), k) for k in stds if k.startswith("ResNet"))
    for (_, shallow), (_, deep) in zip(resnets, resnets[1:], strict=False):
        a, b = statistics.mean(stds[deep]), statistics.mean(stds[shallow])
        out.append(
            f"- {deep} mean std {a:.3f} vs {shallow} {b:.3f}: deeper ResNet has smaller "
            f"responses: {'yes' if a < b else 'no'}."
        )
    return out or ["- No ResNet/plain pair or pair of ResNet depths to compare."]
