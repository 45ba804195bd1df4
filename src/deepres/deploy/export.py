"""``deepres export``: a checkpoint as ONNX, TorchScript or a ``torch.export`` program,
checked against PyTorch on real images before it is called done.

BatchNorm folding (``--fold-bn``): at inference a BN layer is the fixed affine map
y = gamma (x - mu) / sqrt(var + eps) + beta, and every BN of a ResNet directly follows a
convolution (He et al. 2016, §3.4: "batch normalization right after each convolution and
before activation"), so the two collapse into one convolution with a bias.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.checkpoints import ProgramModel, load_program, save_program
from deepres.deploy.inputs import check_images
from deepres.deploy.options import DEFAULT_OPSET, FORMATS
from deepres.errors import DeepresError, first_line
from deepres.inference import Agreement, agreement, fold_batchnorm
from deepres.inference.members import combine, load_members
from deepres.inference.onnx import quiet
from deepres.runtime import atomic_write

log = logging.getLogger(__name__)

MAX_BATCH = 65536
CHECK_IMAGES = 8  # dynamic batch: one batch of 7 and one of 1

Runner = Callable[[torch.Tensor], torch.Tensor]


def example_input(model: nn.Module, meta: dict[str, Any], batch: int) -> torch.Tensor:
    size = int(meta.get("input_size", getattr(model, "default_input_size", 224)))
    return torch.randn(batch, len(meta["mean"]), size, size)


def export_model(
    model: nn.Module,
    path: Path,
    fmt: str,
    meta: dict[str, Any],
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Write ``model`` (eval mode) to ``path`` in format ``fmt``, atomically. A static export
    takes batches of 1; ``dynamic_batch`` makes the batch dimension free."""
    if fmt not in FORMATS:
        raise DeepresError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    model = model.eval()
    example = example_input(model, meta, 2 if dynamic_batch else 1)
    try:
        with quiet():
            write_export(model, path, fmt, example, meta, dynamic_batch, opset)
    except DeepresError:
        raise
    except Exception as err:  # exporters raise many types; name the step and the cause
        first = first_line(err)
        raise DeepresError(f"{fmt} export of {meta.get('model')} failed: {first}") from err


def check_opset(opset: int) -> None:
    if opset < DEFAULT_OPSET:
        raise DeepresError(
            f"--opset {opset}: torch.onnx's exporter writes opset {DEFAULT_OPSET} or newer "
            f"(older ones lack converters for ops a ResNet uses, e.g. Pad); use --opset "
            f"{DEFAULT_OPSET} or higher"
        )


def write_export(
    model: nn.Module,
    path: Path,
    fmt: str,
    example: torch.Tensor,
    meta: dict[str, Any],
    dynamic_batch: bool,
    opset: int,
) -> None:
    """``export_model`` without the error translation."""
    info = json.dumps(meta)
    if fmt == "onnx":
        check_opset(opset)
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["images"],
            output_names=["log_probabilities" if meta.get("members") else "logits"],
            dynamic_shapes=({0: "batch"},) if dynamic_batch else None,
            verbose=False,
        )
        written = program.model.opset_imports.get("")
        if written != opset:
            raise DeepresError(f"asked for ONNX opset {opset}, torch.onnx wrote {written}")
        program.model.metadata_props["deepres"] = info
        atomic_write(path, lambda tmp: program.save(tmp, external_data=False))
    elif fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
        files = {"deepres.json": info}
        atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=files))
    else:
        save_program(path, export_program(model, example, dynamic_batch), meta)


def export_program(
    model: nn.Module, example: torch.Tensor, dynamic_batch: bool, strict: bool = False
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` at ``example``'s shape, the batch size free or not."""
    shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None
    example = example.detach().clone()  # the program stores it: not a view of a larger batch
    return torch.export.export(model, (example,), dynamic_shapes=shapes, strict=strict)


def load_runner(path: Path, fmt: str) -> Runner:
    """The exported file, loaded by its own runtime, as a function of a float32 batch."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    if fmt == "torchscript":
        with quiet():
            return torch.jit.load(str(path), map_location="cpu").eval()
    return load_program(path)[0]


def compare(model: nn.Module, runner: Runner, images: torch.Tensor) -> Agreement:
    """How closely the exported runner's logits follow the PyTorch model's."""
    with torch.inference_mode():
        return agreement(model(images), runner(images))


def verify_export(
    model: nn.Module, runner: Runner, images: torch.Tensor, dynamic_batch: bool
) -> dict[str, Agreement]:
    """The exported model against ``model``, by batch size (see ``Agreement``).
    Static exports run image by image; dynamic ones on a batch of 7 and a batch of 1."""
    if dynamic_batch:
        if len(images) < CHECK_IMAGES:  # repeat the images to fill both batches
            images = images.repeat(-(-CHECK_IMAGES // len(images)), 1, 1, 1)[:CHECK_IMAGES]
        return {
            "batch 7": compare(model, runner, images[:7]),
            "batch 1": compare(model, runner, images[7:8]),
        }
    singles = [compare(model, runner, images[i : i + 1]) for i in range(len(images))]
    return {"batch 1": Agreement.worst(singles)}


def default_out(weights: Path, fmt: str, fold_bn: bool, members: int = 1) -> Path:
    stem = weights.stem + (f"-ensemble{members}" if members > 1 else "")
    stem += "-folded" if fold_bn else ""
    return weights.with_name(stem + FORMATS[fmt])


def check_out(out: Path, checkpoint: Path) -> None:
    """Refuse to write a deployment file over the checkpoint it is made from."""
    if out.resolve() == checkpoint.resolve():
        raise DeepresError(f"--out {out} is the checkpoint itself: choose another file")


def load_export_source(
    checkpoints: str | Path | Sequence[str | Path], ema: bool
) -> tuple[nn.Module, dict[str, Any], list[Path]]:
    """The model to export (an ``Ensemble`` for several checkpoints), its metadata and the
    weight files it comes from; exported programs are refused."""
    members = load_members(checkpoints, ema)
    for member in members:
        if isinstance(member.model, ProgramModel):
            raise DeepresError(
                f"{member.weights} is already an exported program; export from the "
                ".safetensors checkpoint (run folder) instead"
            )
    model, meta = combine(members)
    return model, meta, [m.weights for m in members]


def fold_checked(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """``model`` with BatchNorm folded, refused unless its outputs stay exact."""
    target = fold_batchnorm(model)
    folded = compare(model, target, images)
    print(f"folded BatchNorm into convolutions: max |logit difference| {folded}")
    if not folded.exact:
        raise DeepresError(
            f"BatchNorm folding changed the logits by {folded}; export without --fold-bn"
        )
    return target


def export_checkpoint(
    checkpoint: str | Path | Sequence[str | Path],
    fmt: str,
    *,
    out: str | Path | None = None,
    fold_bn: bool = False,
    dynamic_batch: bool = False,
    opset: int | None = None,
    images: list[str] | None = None,
    data_root: str | None = None,
    ema: bool = False,
) -> Path:
    """``deepres export``: write ``checkpoint`` as ``fmt`` (see FORMATS), run the file in
    its own runtime on real images, and remove it unless it matches PyTorch. Several
    checkpoints are written as their ``Ensemble``, one graph whose output is the ensemble's
    log-probabilities; ``ema``: the runs' EMA weights."""
    if opset is not None:
        if fmt != "onnx":
            raise DeepresError("--opset applies to --format onnx only")
        check_opset(opset)
    model, meta, sources = load_export_source(checkpoint, ema)
    out = Path(out) if out else default_out(sources[0], fmt, fold_bn, len(sources))
    for source_file in sources:
        check_out(out, source_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    images, source = check_images(meta, CHECK_IMAGES, images, data_root=data_root)
    target = fold_checked(model, images) if fold_bn else model
    info = {
        **meta,
        "format": fmt,
        "fold_bn": fold_bn,
        "dynamic_batch": dynamic_batch,
        "source": str(sources[0]) if len(sources) == 1 else [str(p) for p in sources],
    }
    start = time.perf_counter()
    export_model(target, out, fmt, info, dynamic_batch, opset or DEFAULT_OPSET)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB, {time.perf_counter() - start:.1f} s)")
    diffs = verify_export(model, load_runner(out, fmt), images, dynamic_batch)
    detail = ", ".join(f"{diff} ({name})" for name, diff in diffs.items())
    print(f"verified with {fmt} runtime on {source}: max |logit difference| {detail}")
    if not all(diff.exact for diff in diffs.values()):
        out.unlink(missing_ok=True)
        hint = (
            "export without --fold-bn or try another --format"
            if fold_bn
            else "try another --format"
        )
        raise DeepresError(
            f"the exported model differs from PyTorch: {detail}; removed {out}. {hint}"
        )
    return out
