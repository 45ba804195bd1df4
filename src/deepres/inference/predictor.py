"""Predicting the classes of image files with a trained checkpoint, an ensemble of several,
with or without test-time augmentation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms import functional as F

from deepres.data import IMAGE_EXTENSIONS, decode_rgb, normalize
from deepres.errors import DeepresError
from deepres.inference.members import Checkpoints, combine, load_members
from deepres.inference.tta import TestTimeAugmentation

MAX_IMAGE_BYTES = 50 * 1024 * 1024


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), best first

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top],
        }


class Predictor:
    """A checkpoint, ready to classify images of any size, mode and channel count.

    Several checkpoints make an ``Ensemble`` (their probabilities averaged; they must share
    classes, input size, channels and mean/std); ``tta`` (``"flip"``, ``"flip-crop"``)
    averages each image's augmented views; ``ema`` reads each run's EMA weights."""

    def __init__(
        self,
        checkpoint: Checkpoints,
        model: nn.Module | None = None,
        meta: dict[str, Any] | None = None,
        *,
        tta: str | None = None,
        ema: bool = False,
    ) -> None:
        if model is None or meta is None:
            model, meta = combine(load_members(checkpoint, ema), tta)
        elif tta:
            model = TestTimeAugmentation(model, tta, meta["mean"], meta["std"])
            meta = {**meta, "tta": tta}
        self.model, self.meta = model.eval(), meta
        self.members: list[dict[str, Any]] = meta.get("members", [])
        self.classes: list[str] = meta["classes"]
        self.size = int(meta.get("input_size", 224))
        self.in_chans = int(meta.get("model_args", {}).get("in_chans", 3))
        self.resize = resize_for(meta)

    def prepare(self, data: bytes, name: str) -> torch.Tensor:
        """Image bytes -> a normalised 1 x C x H x W tensor, as the model was trained."""
        if len(data) > MAX_IMAGE_BYTES:
            raise DeepresError(
                f"{name}: {len(data)} bytes is larger than the {MAX_IMAGE_BYTES // 2**20} MiB limit"
            )
        image = self.resize(decode_rgb(data, name))
        if self.in_chans == 1:
            image = v2.functional.rgb_to_grayscale(image)
        return normalize(image[None], self.meta["mean"], self.meta["std"])

    @torch.inference_mode()
    def predict_tensor(self, batch: torch.Tensor, top_k: int = 5) -> list[list[tuple[str, float]]]:
        probs = self.model(batch).float().softmax(-1)
        values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
        return [
            [(self.classes[i], v) for v, i in zip(vs.tolist(), ix.tolist(), strict=True)]
            for vs, ix in zip(values, indices, strict=True)
        ]

    def predict_bytes(self, data: bytes, name: str = "<upload>", top_k: int = 5) -> Prediction:
        return Prediction(name, self.predict_tensor(self.prepare(data, name), top_k)[0])

    def predict_file(self, path: str | Path, top_k: int = 5) -> Prediction:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise DeepresError(f"{path}: cannot read ({err.strerror})") from None
        return self.predict_bytes(data, str(path), top_k)


def resize_for(meta: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The resize and crop of a uint8 image for a model with this metadata.

    Weights that name their ``resize_size`` (and ``interpolation``), as torchvision's and
    timm's do: the shorter side resized to it, then a center crop of ``input_size``, the
    operations of torchvision's ``ImageClassification`` on a tensor (``functional``, not
    ``v2``, whose uint8 resize rounds some pixels one level apart). Else ImageNet-style
    sizes (> 64): the shorter side to ``input_size / 0.875``, a center crop; small-image
    data sets: the whole image at the training size."""
    size = int(meta.get("input_size", 224))
    if meta.get("resize_size"):
        mode = InterpolationMode(meta.get("interpolation", "bilinear"))
        resize_size = int(meta["resize_size"])

        def resize(image: torch.Tensor) -> torch.Tensor:
            image = F.resize(image, [resize_size], interpolation=mode, antialias=True)
            return F.center_crop(image, [size])

        return resize
    if size > 64:
        return v2.Compose([v2.Resize(int(size / 0.875), antialias=True), v2.CenterCrop(size)])
    return v2.Resize((size, size), antialias=True)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                )
            )
        else:
            paths.append(path)
    return paths
