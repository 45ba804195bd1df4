"""``deepres bench``: images/s of deepres next to a reference, measured in one process.

Speed on a shared machine is noisy, so the reference runs in the same process, in
alternating rounds (ours, reference, ours, reference, ...), and the ratio is reported per
round and as the median. Each figure is set next to the machine's matrix-multiply rate,
measured in the same run, to show how close to the hardware limit it is.

References:
- inference: torchvision's model as most people run it (NCHW, fp32, eval, no_grad);
- training: the loop of most tutorials and reproduction repos: torchvision's CIFAR
  transforms on PIL images, a DataLoader with worker processes, NCHW, fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

from deepres.data import (
    BatchLoader,
    TensorData,
    check_data,
    dataset_stats,
    load_split,
    resolve,
    synthetic_data,
)
from deepres.errors import DeepresError
from deepres.inference import bf16_is_native, optimize_for_inference
from deepres.models import count_macs, create_model
from deepres.train.loop import autocast_dtype

# --- the machine's limits -------------------------------------------------------------------


def matmul_gflops(dtype: torch.dtype, size: int = 1024, seconds: float = 0.5) -> float:
    """Measured dense matrix-multiply rate (2 FLOPs per multiply-add)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the reference training loop (torchvision transforms + DataLoader workers) -----------


class PILDataset(torch.utils.data.Dataset):
    """Images held as uint8 arrays and handed to the transforms as PIL images, one at a
    time, exactly as ``torchvision.datasets.CIFAR10`` does."""

    def __init__(self, data: TensorData, transform: Callable) -> None:
        self.images = data.images.permute(0, 2, 3, 1).numpy()  # N x H x W x C
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        return self.transform(pil), self.labels[i]


def reference_transform(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable:
    """The CIFAR augmentation of the PyTorch tutorials and reproduction repos."""
    return transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def reference_loader(
    data: TensorData, batch_size: int, workers: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        PILDataset(data, reference_transform(mean, std)),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
    )


# --- timing ---------------------------------------------------------------------------------


class Runner:
    """Something to time: ``start()`` before a round, ``step()`` per batch, ``stop()`` after."""

    def __init__(
        self,
        step: Callable[[], None],
        start: Callable[[], None] = lambda: None,
        stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.step, self.start, self.stop = step, start, stop


def time_round(runner: Runner, steps: int) -> float:
    """Seconds per batch over ``steps`` batches, after one untimed batch."""
    runner.start()
    try:
        runner.step()
        begin = time.perf_counter()
        for _ in range(steps):
            runner.step()
        return (time.perf_counter() - begin) / steps
    finally:
        runner.stop()


# --- what is timed --------------------------------------------------------------------------


def train_runner(
    model: nn.Module, batches: Callable[[], Iterator], amp: torch.dtype | None, channels_last: bool
) -> Runner:
    """One SGD step per batch, the data pipeline included."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True
    )
    model.train()
    state: dict[str, Iterator] = {}

    def start() -> None:
        state["it"] = batches()

    def step() -> None:
        try:
            images, labels = next(state["it"])
        except StopIteration:
            state["it"] = batches()
            images, labels = next(state["it"])
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def stop() -> None:
        state.pop("it", None)  # ends DataLoader workers between rounds

    return Runner(step, start, stop)


def infer_runner(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> Runner:
    def step() -> None:
        with torch.inference_mode():
            model(images)

    return Runner(step)


def load_bench_data(name: str, input_size: int, in_chans: int, count: int) -> TensorData:
    if name == "synthetic":
        return synthetic_data(count, in_chans, input_size, input_size, 10, seed=0)
    data = load_split(name, "train")
    if not isinstance(data, TensorData):
        raise DeepresError(
            f"bench --data needs an in-memory data set; {name} is an image "
            "folder of large images (use synthetic)"
        )
    return data


def bench_train(args: argparse.Namespace, data: TensorData, stats: tuple) -> dict[str, Any]:
    mean, std = stats
    amp = autocast_dtype(args.amp, "cpu")
    model = create_model(args.model, num_classes=data.num_classes, in_chans=data.images.shape[1])
    model.set_grad_checkpointing(args.grad_checkpointing)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model
    loader = BatchLoader(
        data,
        args.batch_size,
        mean=mean,
        std=std,
        augment=True,
        drop_last=True,
        channels_last=args.channels_last,
    )
    epoch = iter(range(10**9))
    ours = train_runner(net, lambda: loader.iter_epoch(next(epoch)), amp, args.channels_last)
    results: dict[str, Any] = {}
    references: dict[str, Runner] = {}
    if args.against == "reference":
        reference_model = create_model(
            args.model, num_classes=data.num_classes, in_chans=data.images.shape[1]
        )
        reference_model.load_state_dict(model.state_dict())  # same start (no step taken yet)
        for workers in args.reference_workers:
            ref_loader = reference_loader(data, args.batch_size, workers, mean, std)
            references[f"reference_workers{workers}"] = train_runner(
                reference_model, lambda rl=ref_loader: iter(rl), None, False
            )
    per_round: dict[str, list[float]] = {"ours": []}
    for _ in range(args.rounds):
        per_round["ours"].append(time_round(ours, args.steps))
        for name, runner in references.items():
            per_round.setdefault(name, []).append(time_round(runner, args.steps))
    macs = count_macs(
        create_model(args.model, num_classes=data.num_classes, in_chans=data.images.shape[1]),
        data.images.shape[-1],
    )
    for name, seconds in per_round.items():
        results[name] = summarize_times(seconds, args.batch_size, 3 * macs)
    for name in references:
        results[name]["ours_speedup_per_round"] = [
            r / o for o, r in zip(per_round["ours"], per_round[name], strict=True)
        ]
        results[name]["ours_speedup_median"] = statistics.median(
            results[name]["ours_speedup_per_round"]
        )
    results["ours"]["amp"] = str(amp).replace("torch.", "") if amp else "off"
    return results


def bench_infer(args: argparse.Namespace, data: TensorData | None) -> dict[str, Any]:
    import torchvision

    model = create_model(args.model).eval()
    size = args.input_size or model.default_input_size
    images = bench_images(data, args.batch_size, model.in_chans, size)
    variants: dict[str, Runner] = {}
    fast_fp32 = optimize_for_inference(model, dtype="fp32", compile=args.compile)
    variants["ours_fp32"] = infer_runner(fast_fp32, images)
    if args.amp in ("bf16", "auto") and (args.amp == "bf16" or bf16_is_native()):
        variants["ours_bf16"] = infer_runner(
            optimize_for_inference(model, dtype="bf16", compile=args.compile), images
        )
    if args.against == "torchvision":
        if not hasattr(torchvision.models, args.model):
            raise DeepresError(f"torchvision has no {args.model}; use --against reference")
        reference = getattr(torchvision.models, args.model)().eval()
        reference.load_state_dict(model.state_dict())
        variants["torchvision"] = infer_runner(lambda x: reference(x), images)
        with torch.inference_mode():
            diff = (fast_fp32(images) - reference(images)).abs().max().item()
    results = time_variants(variants, args, count_macs(model, size), "torchvision")
    if "torchvision" in results:
        results["ours_fp32"]["max_abs_diff_vs_torchvision"] = diff
    return results


def bench_images(
    data: TensorData | None, batch_size: int, channels: int, size: int
) -> torch.Tensor:
    """One inference batch: the data set's first images resized to ``size``, or random."""
    if data is None:
        return torch.randn(batch_size, channels, size, size)
    images = data.images[:batch_size].float().div(255)
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)


def bench_checkpoints(args: argparse.Namespace, data: TensorData | None) -> dict[str, Any]:
    """``--checkpoint A --checkpoint B``: saved models timed as ``eval``/``predict`` run them
    (an fp32 checkpoint through ``optimize_for_inference``, an int8 ``.pt2`` program as it
    is, both compiled with ``--compile``), on the same images, in alternating rounds; the
    speed-up is against the first."""
    from deepres.deploy.program import ProgramModel
    from deepres.train.checkpoint import load_model

    variants: dict[str, Runner] = {}
    images: torch.Tensor | None = None
    for path in args.checkpoint:
        model, meta = load_model(path)
        channels, size = len(meta["mean"]), meta["input_size"]
        if images is None:
            images = bench_images(data, args.batch_size, channels, size)
        elif images.shape[1:] != (channels, size, size):
            raise DeepresError(
                f"--checkpoint {path}: it takes {channels}x{size}x{size} images, the first "
                f"{'x'.join(map(str, images.shape[1:]))}"
            )
        if isinstance(model, ProgramModel):
            runnable = model.compile() if args.compile else model
        else:
            runnable = optimize_for_inference(model, dtype="fp32", compile=args.compile)
        variants[str(path)] = infer_runner(runnable, images)
    macs = count_macs(create_model(meta["model"], **meta.get("model_args", {})), size)
    return time_variants(variants, args, macs, str(args.checkpoint[0]))


def time_variants(
    variants: dict[str, Runner], args: argparse.Namespace, macs: int, baseline: str
) -> dict[str, Any]:
    """Each variant timed in alternating rounds; with ``baseline`` among them, every other
    variant's speed-up over it per round and its median."""
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, runner in variants.items():
            per_round[name].append(time_round(runner, args.steps))
    results = {name: summarize_times(t, args.batch_size, macs) for name, t in per_round.items()}
    if baseline in per_round:
        for name in variants:
            if name != baseline:
                ratios = [r / o for o, r in zip(per_round[name], per_round[baseline], strict=True)]
                results[name]["speedup_per_round"] = ratios
                results[name]["speedup_median"] = statistics.median(ratios)
    return results


def summarize_times(seconds: list[float], batch_size: int, flops_macs: int) -> dict[str, Any]:
    best = statistics.median(seconds)
    images_per_s = batch_size / best
    return {
        "images_per_s": images_per_s,
        "ms_per_batch": 1000 * best,
        "gflops": 2 * flops_macs * images_per_s / 1e9,
        "rounds_images_per_s": [batch_size / s for s in seconds],
        "peak_rss_mb": peak_rss_mb(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "model": ", ".join(args.checkpoint) if args.checkpoint else args.model,
        "mode": args.mode,
        "batch_size": args.batch_size,
        "input_size": args.input_size,
        "amp": args.amp,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "grad_checkpointing": args.grad_checkpointing,
        "data": args.data,
        "against": args.against,
        "rounds": args.rounds,
        "steps": args.steps,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_is_native(),
        "threads": torch.get_num_threads(),
        "matmul_gflops": {
            "fp32": matmul_gflops(torch.float32),
            "bf16": matmul_gflops(torch.bfloat16),
        },
    }
    if args.mode in ("train", "both"):
        model = create_model(args.model)
        size = args.input_size or model.default_input_size
        data = load_bench_data(args.data, size, model.in_chans, max(2048, 4 * args.batch_size))
        stats = (
            ((0.5,) * data.images.shape[1], (0.25,) * data.images.shape[1])
            if (args.data == "synthetic")
            else dataset_stats(args.data)
        )
        report["train"] = bench_train(args, data, stats)
    if args.mode in ("infer", "both"):
        data = None if args.data == "synthetic" else load_bench_data(args.data, 0, 3, 0)
        report["infer"] = (bench_checkpoints if args.checkpoint else bench_infer)(args, data)
    for section in ("train", "infer"):
        for result in report.get(section, {}).values():
            for dtype in ("fp32", "bf16"):
                result[f"pct_of_{dtype}_matmul"] = (
                    100 * result["gflops"] / report["matmul_gflops"][dtype]
                )
    return report


def print_report(report: dict[str, Any]) -> None:
    mm = report["matmul_gflops"]
    print(
        f"{report['model']}, batch {report['batch_size']}, torch {report['torch']}, "
        f"{report['threads']} threads, CPU {report['cpu_capability']}"
        f" (bf16 {'native' if report['bf16_native'] else 'emulated'})"
    )
    print(f"matrix multiply: fp32 {mm['fp32']:.0f} GFLOP/s, bf16 {mm['bf16']:.0f} GFLOP/s")
    for section in ("train", "infer"):
        if section not in report:
            continue
        print(f"\n{section}:")
        print(
            f"  {'variant':<22} {'img/s':>9} {'ms/batch':>9} {'GFLOP/s':>8} {'%fp32mm':>8}"
            f" {'%bf16mm':>8} {'speed-up (median; per round)':>30}"
        )
        for name, r in report[section].items():
            ratio = r.get("ours_speedup_median", r.get("speedup_median"))
            rounds = r.get("ours_speedup_per_round", r.get("speedup_per_round"))
            label = (
                "" if ratio is None else (f"{ratio:.2f}x ({', '.join(f'{x:.2f}' for x in rounds)})")
            )
            if name.startswith("reference"):
                label = "ours is " + label
            print(
                f"  {name:<22} {r['images_per_s']:9.1f} {r['ms_per_batch']:9.1f} "
                f"{r['gflops']:8.1f} {r['pct_of_fp32_matmul']:7.1f}% "
                f"{r['pct_of_bf16_matmul']:7.1f}% {label:>30}"
            )


def check_args(args: argparse.Namespace) -> None:
    """What ``run`` would find wrong only after measuring the machine or training."""
    import torchvision

    from deepres.models.registry import get_builder

    get_builder(args.model)
    check_data(args.data)
    if args.data != "synthetic":
        source = resolve(args.data)
        if source.kind == "folder" and not source.in_memory:
            raise DeepresError(
                f"bench --data needs an in-memory data set; {args.data} is an image "
                "folder of large images (use synthetic)"
            )
    timed = {"torchvision": ("infer", "inference"), "reference": ("train", "training")}
    if args.against in timed:
        mode, what = timed[args.against]
        if args.mode not in (mode, "both"):
            raise DeepresError(
                f"--against {args.against} compares {what} speed: use --mode {mode} or both"
            )
    if args.against == "torchvision" and not hasattr(torchvision.models, args.model):
        raise DeepresError(f"torchvision has no {args.model}; use --against reference or none")
    if args.checkpoint and (args.mode != "infer" or args.against != "none"):
        raise DeepresError("--checkpoint times saved models: use --mode infer, no --against")
    if args.json and not Path(args.json).parent.is_dir():
        raise DeepresError(f"--json {args.json}: no such folder {Path(args.json).parent}")


def cmd_bench(args: argparse.Namespace) -> None:
    check_args(args)
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"\nsaved {args.json}")


def register(sub: argparse._SubParsersAction) -> None:
    from deepres.cli import existing_path, non_negative_int, positive_int

    p = sub.add_parser("bench", help="images/s next to torchvision / a reference loop")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--mode", choices=["train", "infer", "both"], default="both")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--input-size", type=positive_int, default=None)
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument(
        "--grad-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="train mode: recompute activations per block (compare peak_rss_mb)",
    )
    p.add_argument("--data", default="synthetic", help="synthetic or an in-memory data set")
    p.add_argument(
        "--checkpoint",
        action="append",
        type=existing_path,
        help="infer mode: time this run folder, .safetensors or .pt2 (int8) file instead of "
        "--model; repeat to compare (speed-up against the first)",
    )
    p.add_argument("--against", choices=["torchvision", "reference", "none"], default="none")
    p.add_argument(
        "--reference-workers",
        type=non_negative_int,
        nargs="+",
        default=[2, 0],
        help="DataLoader workers of the reference training loop (default 2 0)",
    )
    p.add_argument("--rounds", type=positive_int, default=5)
    p.add_argument("--steps", type=positive_int, default=5, help="timed batches per round")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(run=cmd_bench)
