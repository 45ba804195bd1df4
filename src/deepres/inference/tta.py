"""Test-time augmentation (TTA): a model's softmax probabilities averaged over mirrored and
shifted copies of each image, returned as log-probabilities (as ``Ensemble`` does).

Modes, on normalised B x C x H x W batches:

- ``"flip"``: the image and its horizontal mirror (2 views).
- ``"flip-crop"``: each of those unshifted and shifted by ``SHIFT`` = 2 pixels up, down, left
  and right (10 views). The uncovered border is filled with black, zero in uint8 space,
  as the training crops of the zero-padded image are (``data.augment.random_crop_flip``:
  4 pixels padded on each side, then a crop at offset 0..8); after normalisation black is
  ``-mean / std`` per channel. A 2-pixel shift is the crop at offset 4 +- 2 of that padded
  image, well inside the range the model was trained on.

The first view is always the image itself, so view 0 is plain single-view evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepres.errors import DeepresError
from deepres.inference.options import check_tta_mode

SHIFT = 2
SHIFTS = ((0, 0), (-SHIFT, 0), (SHIFT, 0), (0, -SHIFT), (0, SHIFT))  # (down, right) pixels


def view_count(mode: str) -> int:
    """How many views ``mode`` averages."""
    check_tta_mode(mode)
    return 2 if mode == "flip" else 2 * len(SHIFTS)


def black_level(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A black pixel (uint8 0) after normalisation: ``-mean / std`` per channel, computed as
    ``deepres.data.normalize`` computes it."""
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    return (-m / s).float()


def shift_images(images: torch.Tensor, down: int, right: int, fill: torch.Tensor) -> torch.Tensor:
    """``images`` moved ``down`` and ``right`` pixels (negative: up, left), the uncovered
    border filled with ``fill`` (one value per channel): out[y, x] = in[y - down, x - right]."""
    if down == 0 and right == 0:
        return images
    b, c, h, w = images.shape
    pad = max(abs(down), abs(right))
    value = fill.to(images.device, images.dtype).view(1, c, 1, 1)
    padded = value.expand(b, c, h + 2 * pad, w + 2 * pad).clone()
    padded[..., pad : pad + h, pad : pad + w] = images
    top, left = pad - down, pad - right
    return padded[..., top : top + h, left : left + w]


def tta_views(
    images: torch.Tensor, mode: str, fill: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """The views of a normalised B x C x H x W batch that ``mode`` averages, the batch itself
    first; ``fill`` (see ``black_level``) is the border of shifted views (``flip-crop``)."""
    check_tta_mode(mode)
    if images.dim() != 4:
        raise DeepresError(f"TTA needs B x C x H x W images, got {tuple(images.shape)}")
    mirrored = images.flip(-1)
    if mode == "flip":
        return [images, mirrored]
    if fill is None:
        raise DeepresError("flip-crop TTA needs the border value: give the data's mean and std")
    return [shift_images(v, dy, dx, fill) for v in (images, mirrored) for dy, dx in SHIFTS]


def log_mean_probs(probs: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """The log of the mean of probability tensors (stacked on dim 0), as ``Ensemble`` returns."""
    mean = torch.stack(list(probs)).mean(0)
    return mean.clamp_min(torch.finfo(mean.dtype).tiny).log()


class TestTimeAugmentation(nn.Module):
    """``model``'s softmax probabilities averaged over the views of ``mode`` (see the module
    docstring), returned as log-probabilities: ``argmax`` gives the class, ``softmax`` the
    averaged probabilities. ``mean``/``std`` (the model's input normalisation) are needed
    for ``flip-crop``, whose shifted views have a black border."""

    __test__ = False  # not a pytest test class, despite its name

    fill: torch.Tensor | None

    def __init__(
        self,
        model: nn.Module,
        mode: str,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        check_tta_mode(mode)
        if mode == "flip-crop" and (mean is None or std is None):
            raise DeepresError("flip-crop TTA needs the model's mean and std (its black border)")
        self.model, self.mode = model, mode
        fill = black_level(mean, std) if mean is not None and std is not None else None
        self.register_buffer("fill", fill, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = tta_views(x, self.mode, self.fill)
        return log_mean_probs([self.model(v).float().softmax(-1) for v in views])
