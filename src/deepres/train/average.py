"""Weight averaging: one model whose weights are the uniform mean of several checkpoints'.

Stochastic Weight Averaging (Izmailov et al. 2018) averages snapshots of one training run;
"model soups" (Wortsman et al. 2022) average fine-tunes of one pre-trained model. Either way
the checkpoints must lie in one basin of the loss: averaging nets trained from *different*
random initialisations gives a poor model (combine those with ``inference.Ensemble``).

Every floating-point parameter and buffer is averaged (in float64, then cast back); integer
buffers (BatchNorm's ``num_batches_tracked``) are taken from the first checkpoint. The mean of
BatchNorm statistics is not the statistics of the mean network, so they are then recomputed
(``torch.optim.swa_utils.update_bn``, momentum ``None``: a cumulative average over the
batches) on ``bn_batches`` batches of the training split, seeded-shuffled and *without*
augmentation: the images are prepared as at test time (in-memory data normalised; image
folders resized and centre-cropped), so the statistics match the inputs the model will see.
``bn_batches=0`` keeps the averaged buffers instead.

The result is ``OUT/model.safetensors`` with the first checkpoint's metadata plus
``averaged_from`` (the files averaged) and ``bn_images`` (images the statistics came from),
readable by ``deepres eval``/``predict``/``export`` like any run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from deepres.checkpoints import (
    BEST_FILE,
    BEST_VAL_FILE,
    MODEL_FILE,
    STATE_FILE,
    read_meta,
    resolve_weights,
    save_weights,
)
from deepres.data import BatchLoader, TensorData, load_split
from deepres.errors import DeepresError
from deepres.models import create_model
from deepres.train.batches import FolderBatches, default_workers
from deepres.train.config import DEFAULT_BN_BATCH_SIZE, DEFAULT_BN_BATCHES

BN_SEED = 0  # the order of the training images the statistics are taken from
MATCHING_KEYS = ("model", "model_args", "classes", "mean", "std", "input_size")
State = dict[str, torch.Tensor]


@dataclass
class Checkpoint:
    """One checkpoint to average: its weight file, metadata and state dict."""

    path: Path
    meta: dict[str, Any]
    state: State


@dataclass
class AverageResult:
    """What ``average_checkpoints`` wrote and from what."""

    path: Path  # OUT/model.safetensors
    sources: list[Path]  # the weight files averaged, in order
    bn_images: int  # training images the BatchNorm statistics were recomputed on (0: kept)
    meta: dict[str, Any]


def read_checkpoint(path: str | Path) -> Checkpoint:
    """A run folder (its final weights, model.safetensors) or a .safetensors file."""
    weights = resolve_weights(path)
    if weights.suffix != ".safetensors":
        raise DeepresError(
            f"{weights}: only .safetensors checkpoints and run folders can be averaged; an "
            "exported program holds no trainable weights"
        )
    meta = read_meta(weights)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise DeepresError(f"{weights} is not a readable safetensors file: {err}") from None
    return Checkpoint(weights, meta, state)


def check_compatible(first: Checkpoint, other: Checkpoint) -> None:
    """Refuse to average checkpoints of different models, options, classes or inputs."""
    for key in MATCHING_KEYS:
        if first.meta.get(key) != other.meta.get(key):
            raise DeepresError(
                f"cannot average {first.path} and {other.path}: their {key} differs "
                f"({first.meta.get(key)!r} vs {other.meta.get(key)!r}); average checkpoints "
                "of one model trained on the same classes"
            )
    shapes = {k: tuple(v.shape) for k, v in first.state.items()}
    if shapes != {k: tuple(v.shape) for k, v in other.state.items()}:
        raise DeepresError(
            f"cannot average {first.path} and {other.path}: their tensors differ in names or "
            "shapes although their metadata match; is one of them damaged?"
        )


def mean_state(states: Sequence[State]) -> State:
    """The uniform mean of every floating-point tensor (computed in float64); any other
    tensor (integer counters) is the first state's."""
    averaged: State = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            total = torch.stack([state[key].double() for state in states]).mean(0)
            averaged[key] = total.to(first.dtype)
        else:
            averaged[key] = first.clone()
    return averaged


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def training_images(
    meta: dict[str, Any],
    data: str | None,
    data_root: str | None,
    batch_size: int,
) -> Iterator[torch.Tensor]:
    """The checkpoint's training split as normalised image batches, seeded-shuffled and not
    augmented (prepared as for testing)."""
    name = data or meta.get("data")
    if not name:
        raise DeepresError("the checkpoints name no data set: give --data NAME or a folder")
    split = load_split(
        name,
        "train",
        data_root,
        image_size=meta.get("input_size", 224),
        train_transform=False,
        stats=(meta["mean"], meta["std"]),
    )
    if list(split.classes) != list(meta["classes"]):
        raise DeepresError(
            f"{name} has classes {list(split.classes)[:5]}..., the checkpoints "
            f"{meta['classes'][:5]}...: recompute the statistics on the data they were trained on"
        )
    if isinstance(split, TensorData):
        loader = BatchLoader(
            split, batch_size, mean=meta["mean"], std=meta["std"], shuffle=True, seed=BN_SEED
        )
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = loader.iter_epoch(0)
    else:
        batches = FolderBatches(
            split,
            batch_size,
            shuffle=True,
            drop_last=False,
            seed=BN_SEED,
            rank=0,
            world_size=1,
            workers=default_workers(1),
        ).iter_epoch(0)
    return (images for images, _ in batches)


def recompute_batch_norm(model: nn.Module, batches: Iterator[torch.Tensor], count: int) -> int:
    """Reset every BatchNorm's running statistics and average them over the first ``count``
    batches (momentum None); returns the number of images seen."""
    seen = 0

    def counted() -> Iterator[torch.Tensor]:
        nonlocal seen
        for images in itertools.islice(batches, count):
            seen += len(images)
            yield images

    torch.optim.swa_utils.update_bn(counted(), model)
    return seen


def check_output(out: Path, sources: Sequence[Path]) -> None:
    """Refuse an output folder that is a training run or holds one of the inputs."""
    for name in (STATE_FILE, BEST_VAL_FILE, BEST_FILE):
        if (out / name).exists():
            raise DeepresError(
                f"{out} holds {name}: it is a training run folder, whose {MODEL_FILE} the "
                "averaged model would replace; choose a new --out"
            )
    target = (out / MODEL_FILE).resolve()
    if any(source.resolve() == target for source in sources):
        raise DeepresError(f"--out {out} would overwrite an input checkpoint; choose a new --out")


def average_checkpoints(
    paths: Sequence[str | Path],
    out: str | Path,
    bn_batches: int = DEFAULT_BN_BATCHES,
    batch_size: int = DEFAULT_BN_BATCH_SIZE,
    data: str | None = None,
    data_root: str | None = None,
) -> AverageResult:
    """Average the checkpoints at ``paths`` (run folders or .safetensors files) into
    ``out/model.safetensors``; BatchNorm statistics recomputed on ``bn_batches`` batches of
    ``batch_size`` training images of ``data`` (default: the checkpoints' data set), or kept
    as averaged when ``bn_batches`` is 0."""
    if not paths:
        raise DeepresError("give at least one checkpoint to average")
    if bn_batches < 0 or batch_size < 1:
        raise DeepresError("--bn-batches must be >= 0 and --batch-size positive")
    checkpoints = [read_checkpoint(path) for path in paths]
    for other in checkpoints[1:]:
        check_compatible(checkpoints[0], other)
    out = Path(out)
    sources = [c.path for c in checkpoints]
    check_output(out, sources)
    meta = {k: v for k, v in checkpoints[0].meta.items() if k != "step"}
    model = create_model(meta["model"], **meta.get("model_args", {}))
    model.load_state_dict(mean_state([c.state for c in checkpoints]))
    bn_images = 0
    if bn_batches and has_batch_norm(model):
        images = training_images(meta, data, data_root, batch_size)
        bn_images = recompute_batch_norm(model, images, bn_batches)
    meta.update(averaged_from=[str(p) for p in sources], bn_images=bn_images)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out / MODEL_FILE, model.eval(), meta)
    return AverageResult(out / MODEL_FILE, sources, bn_images, meta)
