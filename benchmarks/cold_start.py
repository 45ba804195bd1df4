"""Cold start of ``deepres predict``: seconds from launching the command (a fresh process)
to its answer, for a ResNet-20 run and a ResNet-50 checkpoint, beside the floors under it:
starting Python, ``import torch`` and ``import deepres.cli``.

    python benchmarks/cold_start.py --repeats 5 [--json cold_start.json]

The checkpoints are made here (random weights, saved as a run folder with deepres's
metadata) in a temporary folder, with one test image each; nothing is downloaded. Each
command runs ``--repeats`` times back to back and the median is printed (the first run of
each also pays for reading files into the page cache, so it is shown on its own too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from deepres import create_model
from deepres.checkpoints import MODEL_FILE, save_weights

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
MODELS = {  # name -> (classes, input size, mean, std)
    "resnet20": (10, 32, CIFAR_MEAN, CIFAR_STD),
    "resnet50": (1000, 224, IMAGENET_MEAN, IMAGENET_STD),
}


def make_run(folder: Path, model: str) -> tuple[Path, Path]:
    """A run folder holding ``model`` with random weights and deepres's metadata, and one
    random RGB image of its input size."""
    classes, size, mean, std = MODELS[model]
    run = folder / model
    run.mkdir(parents=True)
    meta = {
        "model": model,
        "model_args": {"num_classes": classes},
        "classes": [f"class{i}" for i in range(classes)],
        "mean": mean,
        "std": std,
        "input_size": size,
    }
    save_weights(run / MODEL_FILE, create_model(model, num_classes=classes).eval(), meta)
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    image = folder / f"{model}.png"
    Image.fromarray(pixels).save(image)
    return run, image


def deepres_command() -> list[str]:
    """The ``deepres`` script beside this Python (what a user types), else ``-m deepres``."""
    script = Path(sys.executable).with_name("deepres")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "deepres"]


def seconds(command: list[str], repeats: int, env: dict[str, str]) -> list[float]:
    """Wall-clock seconds of each run of ``command``, from launch to exit."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return times


def offline_env() -> dict[str, str]:
    """This environment, with Hugging Face Hub lookups switched off should anything try."""
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def measure(models: list[str], repeats: int) -> dict[str, dict]:
    env = offline_env()
    python = [sys.executable, "-c"]
    commands = {
        "python -c pass": [*python, "pass"],
        "import torch": [*python, "import torch"],
        "import deepres.cli": [*python, "import deepres.cli"],
    }
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="deepres-cold-start-") as folder:
        for model in models:
            run, image = make_run(Path(folder), model)
            commands[f"predict {model}"] = [
                *deepres_command(),
                "predict",
                "--checkpoint",
                str(run),
                str(image),
            ]
        for name, command in commands.items():
            times = seconds(command, repeats, env)
            median = statistics.median(times)
            report[name] = {"median_s": median, "first_s": times[0], "runs_s": times}
            runs = ", ".join(f"{t:.2f}" for t in times)
            print(f"{name:<24} median {median:6.2f} s  (first {times[0]:.2f} s; runs: {runs})")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"{' '.join(deepres_command())}; OMP_NUM_THREADS={threads}; {args.repeats} runs each")
    commands = measure(args.models, args.repeats)
    report = {"repeats": args.repeats, "omp_num_threads": threads, "commands": commands}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
