"""``deepres bench``: images/s of deepres next to a reference, measured in one process.

Speed on a shared machine is noisy, so the reference runs in the same process, in
alternating rounds (ours, reference, ours, reference, ...), and the ratio is reported per
round and as the median. Each figure is set next to the machine's matrix-multiply rate,
measured in the same run, to show how close to the hardware limit it is.

References (``--against``, several at once):
- inference: torchvision's model as most people run it (NCHW, fp32, eval, no_grad); the
  same weights in ONNX Runtime or OpenVINO, and ONNX Runtime's own int8 quantization beside
  deepres's (see ``against``);
- training: the loop of most tutorials and reproduction repos: torchvision's CIFAR
  transforms on PIL images, a DataLoader with worker processes, NCHW, fp32.
"""

from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from deepres.bench.against import (
    Quantizer,
    add_checks,
    add_ratios,
    calibration_count,
    runtime_models,
    torchvision_model,
)
from deepres.bench.harness import (
    Rounds,
    Runner,
    data_runner,
    infer_runner,
    matmul_gflops,
    summarize_times,
    time_runners,
    time_variants,
    train_runner,
)
from deepres.bench.options import TIMED
from deepres.bench.references import reference_loader
from deepres.bench.runtimes import RUNTIMES, Runnable, check_installed
from deepres.checkpoints import ProgramModel, load_model
from deepres.data import (
    BatchCrops,
    BatchLoader,
    TensorData,
    cache_side,
    check_data,
    dataset_stats,
    load_split,
    resolve,
    synthetic_data,
)
from deepres.errors import DeepresError
from deepres.inference import optimize_for_inference
from deepres.models import count_macs, create_model
from deepres.models.factory import get_builder
from deepres.runtime import autocast_dtype, bf16_is_native


@dataclass
class BenchOptions:
    """What ``deepres bench`` times (its options, one field each)."""

    model: str = "resnet20"
    mode: str = "both"  # train, infer or both
    batch_size: int = 128
    input_size: int | None = None  # default: the model's
    amp: str = "auto"  # auto, bf16 or off
    channels_last: bool = True
    compile: bool = False
    grad_checkpointing: bool = False
    data: str = "synthetic"
    checkpoint: list[str] | None = None  # infer: time these saved models instead of model
    # torchvision, onnxruntime, onnxruntime-int8, openvino (infer); reference (train)
    against: list[str] = field(default_factory=list)
    reference_workers: list[int] = field(default_factory=lambda: [2, 0])
    rounds: int = 5
    steps: int = 5
    threads: int | None = None
    json: str | None = None  # also write the report here

    def __post_init__(self) -> None:
        against = [self.against] if isinstance(self.against, str) else list(self.against)
        self.against = [name for name in against if name != "none"]

    def rounds_plan(self) -> Rounds:
        return Rounds(self.rounds, self.steps, self.batch_size)


def load_bench_data(name: str, input_size: int, in_chans: int, count: int) -> TensorData:
    if name == "synthetic":
        return synthetic_data(count, in_chans, input_size, input_size, 10, seed=0)
    source = resolve(name)
    if source.kind == "folder" and not source.in_memory:  # decoded once at S x S, cached
        side = cache_side(input_size or 224)
        return load_split(name, "train", cache_side=side)  # type: ignore[return-value]
    data = load_split(name, "train")
    if not isinstance(data, TensorData):
        raise DeepresError(
            f"bench --data needs an in-memory data set; {name} is an image "
            "folder of large images (use synthetic)"
        )
    return data


def bench_train(
    opts: BenchOptions, data: TensorData, stats: tuple, crop_size: int | None = None
) -> dict[str, Any]:
    """Training steps with the data pipeline (``crop_size``: large cached images, cut by
    random-resized crops to it), timed beside the batches alone: the data's share."""
    mean, std = stats
    amp = autocast_dtype(opts.amp, "cpu")
    model = create_model(opts.model, num_classes=data.num_classes, in_chans=data.images.shape[1])
    model.set_grad_checkpointing(opts.grad_checkpointing)
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if opts.compile else model
    loader = BatchLoader(
        data,
        opts.batch_size,
        mean=mean,
        std=std,
        augment=True,
        drop_last=True,
        channels_last=opts.channels_last,
        crop=BatchCrops(crop_size) if crop_size else None,
    )
    epoch = iter(range(10**9))
    ours = train_runner(net, lambda: loader.iter_epoch(next(epoch)), amp, opts.channels_last)
    batches_only = data_runner(lambda: loader.iter_epoch(next(epoch)))
    results: dict[str, Any] = {}
    references: dict[str, Runner] = {}
    if "reference" in opts.against:
        reference_model = create_model(
            opts.model, num_classes=data.num_classes, in_chans=data.images.shape[1]
        )
        reference_model.load_state_dict(model.state_dict())  # same start (no step taken yet)
        for workers in opts.reference_workers:
            ref_loader = reference_loader(data, opts.batch_size, workers, mean, std)
            references[f"reference_workers{workers}"] = train_runner(
                reference_model, lambda rl=ref_loader: iter(rl), None, False
            )
    per_round = time_runners({"ours": ours, "data": batches_only, **references}, opts.rounds_plan())
    data_seconds = per_round.pop("data")
    macs = count_macs(
        create_model(opts.model, num_classes=data.num_classes, in_chans=data.images.shape[1]),
        crop_size or data.images.shape[-1],
    )
    for name, seconds in per_round.items():
        results[name] = summarize_times(seconds, opts.batch_size, 3 * macs)
    for name in references:
        results[name]["ours_speedup_per_round"] = [
            r / o for o, r in zip(per_round["ours"], per_round[name], strict=True)
        ]
        results[name]["ours_speedup_median"] = statistics.median(
            results[name]["ours_speedup_per_round"]
        )
    results["ours"]["amp"] = str(amp).replace("torch.", "") if amp else "off"
    shares = [d / s for d, s in zip(data_seconds, per_round["ours"], strict=True)]
    results["ours"]["data_ms_per_batch"] = 1000 * statistics.median(data_seconds)
    results["ours"]["data_share_per_round"] = shares
    results["ours"]["data_share"] = statistics.median(shares)
    return results


def infer_subject(
    opts: BenchOptions, data: TensorData | None, count: int
) -> tuple[nn.Module, int, torch.Tensor]:
    """(fp32 model in eval mode, input size, ``count`` images): ``--model`` with random
    weights on raw images, or the one ``--checkpoint`` on images normalised as it was
    trained."""
    if not opts.checkpoint:
        model = create_model(opts.model).eval()
        size = opts.input_size or model.default_input_size
        return model, size, bench_images(data, count, model.in_chans, size)
    model, meta = load_model(opts.checkpoint[0])
    size = opts.input_size or int(meta["input_size"])
    images = bench_images(data, count, len(meta["mean"]), size)
    if data is not None:
        mean = torch.tensor(meta["mean"]).view(1, -1, 1, 1)
        images = (images - mean) / torch.tensor(meta["std"]).view(1, -1, 1, 1)
    return model.eval(), size, images


def ours_models(opts: BenchOptions, model: nn.Module) -> dict[str, Runnable]:
    """deepres's fast path in fp32, and in bf16 where ``--amp`` asks for it."""
    models: dict[str, Runnable] = {
        "ours_fp32": optimize_for_inference(model, dtype="fp32", compile=opts.compile)
    }
    if opts.amp in ("bf16", "auto") and (opts.amp == "bf16" or bf16_is_native()):
        models["ours_bf16"] = optimize_for_inference(model, dtype="bf16", compile=opts.compile)
    return models


def bench_infer(
    opts: BenchOptions, data: TensorData | None, quantize: Quantizer | None = None
) -> dict[str, Any]:
    """deepres's fast path beside each ``--against`` reference, on the same batch, in
    alternating rounds; ratios ours ÷ reference and the references' agreement with ours."""
    int8 = "onnxruntime-int8" in opts.against
    count = calibration_count(opts.batch_size) if int8 else opts.batch_size
    model, size, pool = infer_subject(opts, data, count)
    images = pool[: opts.batch_size]
    models = ours_models(opts, model)
    if "torchvision" in opts.against:
        models["torchvision"] = torchvision_model(opts.model, model)
    runtimes = [name for name in opts.against if name in RUNTIMES]
    if runtimes:
        models.update(
            runtime_models(model, runtimes, pool, opts.batch_size, quantize, opts.compile)
        )
    runners = {name: infer_runner(fn, images) for name, fn in models.items()}
    results = time_variants(runners, opts.rounds_plan(), count_macs(model, size), "torchvision")
    add_ratios(results)
    add_checks(results, models, model, images, pool)
    if "torchvision" in results:
        diff = results["torchvision"]["agreement_vs_ours_fp32"]["max_abs_diff"]
        results["ours_fp32"]["max_abs_diff_vs_torchvision"] = diff
    for name, fn in models.items():
        if hasattr(fn, "version"):
            results[name]["version"] = fn.version
    if "ours_int8" in results:
        results["ours_int8"]["compiled"] = opts.compile
    return results


def bench_images(
    data: TensorData | None, batch_size: int, channels: int, size: int
) -> torch.Tensor:
    """One inference batch: the data set's first images resized to ``size``, or random."""
    if data is None:
        return torch.randn(batch_size, channels, size, size)
    images = data.images[:batch_size].float().div(255)
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)


def bench_checkpoints(opts: BenchOptions, data: TensorData | None) -> dict[str, Any]:
    """``--checkpoint A --checkpoint B``: saved models timed as ``eval``/``predict`` run them
    (an fp32 checkpoint through ``optimize_for_inference``, an int8 ``.pt2`` program as it
    is, both compiled with ``--compile``), on the same images, in alternating rounds; the
    speed-up is against the first."""
    variants: dict[str, Runner] = {}
    images: torch.Tensor | None = None
    for path in opts.checkpoint:
        model, meta = load_model(path)
        channels, size = len(meta["mean"]), meta["input_size"]
        if images is None:
            images = bench_images(data, opts.batch_size, channels, size)
        elif images.shape[1:] != (channels, size, size):
            raise DeepresError(
                f"--checkpoint {path}: it takes {channels}x{size}x{size} images, the first "
                f"{'x'.join(map(str, images.shape[1:]))}"
            )
        if isinstance(model, ProgramModel):
            runnable = model.compile() if opts.compile else model
        else:
            runnable = optimize_for_inference(model, dtype="fp32", compile=opts.compile)
        variants[str(path)] = infer_runner(runnable, images)
    macs = count_macs(create_model(meta["model"], **meta.get("model_args", {})), size)
    return time_variants(variants, opts.rounds_plan(), macs, str(opts.checkpoint[0]))


def run_bench(opts: BenchOptions, quantize: Quantizer | None = None) -> dict[str, Any]:
    """The report of ``deepres bench``; ``quantize`` is deepres's int8 quantizer
    (``deepres.deploy.quantize.quantize_model``), needed for ``--against onnxruntime-int8``."""
    torch.manual_seed(0)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    report: dict[str, Any] = {
        "model": ", ".join(opts.checkpoint) if opts.checkpoint else opts.model,
        "mode": opts.mode,
        "batch_size": opts.batch_size,
        "input_size": opts.input_size,
        "amp": opts.amp,
        "channels_last": opts.channels_last,
        "compile": opts.compile,
        "grad_checkpointing": opts.grad_checkpointing,
        "data": opts.data,
        "against": opts.against,
        "rounds": opts.rounds,
        "steps": opts.steps,
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
    if opts.mode in ("train", "both"):
        model = create_model(opts.model)
        size = opts.input_size or model.default_input_size
        data = load_bench_data(opts.data, size, model.in_chans, max(2048, 4 * opts.batch_size))
        stats = (
            ((0.5,) * data.images.shape[1], (0.25,) * data.images.shape[1])
            if (opts.data == "synthetic")
            else dataset_stats(opts.data)
        )
        source = None if opts.data == "synthetic" else resolve(opts.data)
        large = source is not None and source.kind == "folder" and not source.in_memory
        report["train"] = bench_train(opts, data, stats, crop_size=size if large else None)
    if opts.mode in ("infer", "both"):
        data = None if opts.data == "synthetic" else load_bench_data(opts.data, 0, 3, 0)
        if opts.checkpoint and not opts.against:
            report["infer"] = bench_checkpoints(opts, data)
        else:
            report["infer"] = bench_infer(opts, data, quantize)
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
        if section in report:
            print(f"\n{section}:")
            print_table(report[section])
            print_comparisons(report[section])


def print_table(results: dict[str, dict[str, Any]]) -> None:
    baseline = " vs torchvision" if "torchvision" in results else ""
    print(
        f"  {'variant':<22} {'img/s':>9} {'ms/batch':>9} {'GFLOP/s':>8} {'%fp32mm':>8}"
        f" {'%bf16mm':>8} {'speed-up' + baseline + ' (median; per round)':>30}"
    )
    for name, r in results.items():
        ratio = r.get("ours_speedup_median", r.get("speedup_median"))
        rounds = r.get("ours_speedup_per_round", r.get("speedup_per_round"))
        label = "" if ratio is None else (f"{ratio:.2f}x ({', '.join(f'{x:.2f}' for x in rounds)})")
        if name.startswith("reference"):
            label = "ours is " + label
        print(
            f"  {name:<22} {r['images_per_s']:9.1f} {r['ms_per_batch']:9.1f} "
            f"{r['gflops']:8.1f} {r['pct_of_fp32_matmul']:7.1f}% "
            f"{r['pct_of_bf16_matmul']:7.1f}% {label:>30}"
        )


def print_comparisons(results: dict[str, dict[str, Any]]) -> None:
    """The ``--against`` references' lines: ratios, exactness, int8 top-1 agreement; the
    data's share of a training step."""
    for name, r in results.items():
        if "data_share" in r:
            rounds = ", ".join(f"{x:.1%}" for x in r["data_share_per_round"])
            print(
                f"  {name}: the batches (gather, crops, flips, normalisation) take "
                f"{r['data_share']:.1%} of a training step ({r['data_ms_per_batch']:.1f} of "
                f"{r['ms_per_batch']:.1f} ms; per round {rounds})"
            )
        for reference, ratio in r.get("ratio_vs", {}).items():
            rounds = ", ".join(f"{x:.2f}" for x in ratio["per_round"])
            print(f"  {name} / {reference} img/s: {ratio['median']:.2f}x (per round {rounds})")
    for name, r in results.items():
        if "agreement_vs_ours_fp32" in r:
            a = r["agreement_vs_ours_fp32"]
            top5 = "same top-5" if a["same_top5"] else "top-5 differs"
            verdict = "exact" if a["exact"] else "NOT exact"
            print(
                f"  {name} vs ours_fp32: max |logit difference| {a['max_abs_diff']:.2e} "
                f"(limit {a['tolerance']:.1e}, {top5}: {verdict})"
            )
        if r.get("compiled") is False:
            print(
                f"  {name} ran eagerly (quantize/dequantize around fp32 kernels): "
                "add --compile for deepres's fused int8 kernels"
            )
        if "top1_agreement_vs_fp32" in r:
            print(
                f"  {name}: same top-1 class as fp32 on {r['agreement_images']} images: "
                f"{100 * r['top1_agreement_vs_fp32']:.1f}% (7-bit: {r['seven_bit']})"
            )


def check_options(opts: BenchOptions) -> None:
    """What ``run`` would find wrong only after measuring the machine or training."""
    get_builder(opts.model)
    check_data(opts.data)
    if opts.data != "synthetic":
        source = resolve(opts.data)
        if source.kind == "folder" and not source.in_memory and "reference" in opts.against:
            raise DeepresError(
                f"bench --against reference needs small images; {opts.data} is an image "
                "folder of large images (use synthetic, or no reference)"
            )
    if opts.checkpoint:
        check_checkpoint_options(opts)
    check_against(opts)
    if opts.json and not Path(opts.json).parent.is_dir():
        raise DeepresError(f"--json {opts.json}: no such folder {Path(opts.json).parent}")


def check_against(opts: BenchOptions) -> None:
    """Each ``--against`` known, in a mode that times it, and its packages installed."""
    for name in opts.against:
        if name not in TIMED:
            raise DeepresError(f"--against {name}: choose from {', '.join(TIMED)} or none")
        mode, what = TIMED[name]
        if opts.mode not in (mode, "both"):
            raise DeepresError(f"--against {name} compares {what} speed: use --mode {mode} or both")
        check_installed(name)
    if "torchvision" in opts.against and not hasattr(torchvision.models, opts.model):
        raise DeepresError(f"torchvision has no {opts.model}; use --against reference or none")


def check_checkpoint_options(opts: BenchOptions) -> None:
    """``--checkpoint``: saved models side by side, or one fp32 checkpoint against the
    ONNX Runtime / OpenVINO references."""
    if opts.mode != "infer":
        raise DeepresError("--checkpoint times saved models: use --mode infer")
    if not opts.against:
        return
    others = [name for name in opts.against if name not in RUNTIMES]
    programs = [path for path in opts.checkpoint if str(path).endswith(".pt2")]
    if others or programs or len(opts.checkpoint) != 1:
        raise DeepresError(
            "--checkpoint with --against times one fp32 checkpoint (a run folder or "
            f".safetensors file) against {', '.join(RUNTIMES)}; compare with torchvision or "
            "reference through --model, and time .pt2 programs with --checkpoint alone"
        )
