"""Random-resized crops and flips of a whole uint8 batch at once, on tensors.

`sample_boxes` draws one box per image as torchvision's `RandomResizedCrop.get_params` does
(area share in `scale`, log-uniform aspect ratio in `ratio`, ten tries, then the centre
crop of the clamped ratio), for all images at once; `resized_crops` cuts and resizes every
box with one `grid_sample` whose sampling points are those of
`torchvision.transforms.v2.functional.resized_crop(..., antialias=False)` (bilinear,
half-pixel centres, clamped to the box); a flip reverses an image's column coordinates.
No per-image Python: the cost is one gather of B x C x size x size bilinear samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepres.data.dataset import TensorData
from deepres.errors import DeepresError

# area shares of the crops: fastai's Imagenette scripts use (0.35, 1); torchvision's
# RandomResizedCrop defaults to (0.08, 1)
SCALE = (0.35, 1.0)
RATIO = (3 / 4, 4 / 3)
_TRIES = 10


def sample_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = SCALE,
    ratio: tuple[float, float] = RATIO,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`n` random crop boxes of a `height` x `width` image, int64 n x 4 (top, left, h, w):
    torchvision's RandomResizedCrop rule, every random number from the CPU `generator`."""
    if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
        raise DeepresError(f"need 0 < scale min <= max <= 1 and 0 < ratio min <= max; got "
                           f"scale {scale}, ratio {ratio}")  # fmt: skip
    area = torch.empty(n, _TRIES, dtype=torch.float64).uniform_(*scale, generator=generator)
    log_r = torch.empty(n, _TRIES, dtype=torch.float64)
    log_r.uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    target, r = area * (height * width), log_r.exp()
    w = (target * r).sqrt().round().long()
    h = (target / r).sqrt().round().long()
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = ok.long().argmax(1, keepdim=True)  # the first try that fits
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], ok.any(1)
    # no try fits: the whole image, its aspect ratio clamped to `ratio`, centred
    aspect = width / height
    fw, fh = width, height
    if aspect < ratio[0]:
        fh = round(width / ratio[0])
    elif aspect > ratio[1]:
        fw = round(height * ratio[1])
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    top = (u[:, 0] * (height - h + 1)).floor().long().clamp(max=height - h)
    left = (u[:, 1] * (width - w + 1)).floor().long().clamp(max=width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return torch.stack([top, left, h, w], 1)


def center_boxes(n: int, height: int, width: int, size: int) -> torch.Tensor:
    """`n` boxes (top, left, h, w) of the centre `size` x `size` crop."""
    if size > min(height, width):
        raise DeepresError(f"a {size}-px centre crop does not fit {height}x{width} images")
    box = torch.tensor([(height - size) // 2, (width - size) // 2, size, size])
    return box.expand(n, 4).clone()


def _sample_points(start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
    """B x size source coordinates (pixel centres at integers) of a bilinear resize of the
    spans [start, start + length) to `size` pixels (align_corners=False, clamped to the
    span, as torch's upsample_bilinear2d does)."""
    dst = torch.arange(size, dtype=torch.float64) + 0.5
    scale = length.to(torch.float64)[:, None] / size
    inside = (dst[None] * scale - 0.5).clamp(min=0)
    inside = torch.minimum(inside, (length - 1).to(torch.float64)[:, None])
    return start.to(torch.float64)[:, None] + inside


def resized_crops(
    images: torch.Tensor, boxes: torch.Tensor, size: int, flips: torch.Tensor | None = None
) -> torch.Tensor:
    """Crop box i (top, left, h, w) of image i and resize it to `size` x `size` (bilinear,
    no antialiasing), mirrored where `flips` (bool B) is set: uint8 B x C x H x W in, uint8
    B x C x size x size out, on the images' device."""
    if images.dim() != 4 or boxes.shape != (images.shape[0], 4):
        raise DeepresError(f"resized_crops needs B x C x H x W images and B x 4 boxes, got "
                           f"{tuple(images.shape)} and {tuple(boxes.shape)}")  # fmt: skip
    b, _, height, width = images.shape
    boxes = boxes.cpu()
    ys = _sample_points(boxes[:, 0], boxes[:, 2], size)
    xs = _sample_points(boxes[:, 1], boxes[:, 3], size)
    if flips is not None:
        xs = torch.where(flips.cpu()[:, None], xs.flip(1), xs)
    # grid_sample's coordinates: -1 and 1 are the outer edges of the first and last pixels
    gx = ((xs + 0.5) * (2 / width) - 1).float().to(images.device)
    gy = ((ys + 0.5) * (2 / height) - 1).float().to(images.device)
    grid = torch.stack(
        [gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)], -1
    )
    out = F.grid_sample(images.float(), grid, "bilinear", "border", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class BatchCrops:
    """The crops and flips of a training batch, for `BatchLoader(crop=...)`: random-resized
    crops (area share in `scale`, aspect ratio in `ratio`) to `size`, or with
    `random_crop=False` the centre `size` crop; each image mirrored with probability 1/2
    when `flip`. Called with the batch and the CPU generator seeded for that batch."""

    size: int
    scale: tuple[float, float] = SCALE
    ratio: tuple[float, float] = RATIO
    random_crop: bool = True
    flip: bool = True

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, height, width = images.shape
        if self.random_crop:
            boxes = sample_boxes(b, height, width, self.scale, self.ratio, generator)
        else:
            boxes = center_boxes(b, height, width, self.size)
        flips = torch.rand(b, generator=generator) < 0.5 if self.flip else None
        return resized_crops(images, boxes, self.size, flips)


def center_crop(data: TensorData, size: int) -> TensorData:
    """The centre `size` x `size` crops of every image of `data` (a view, no copy)."""
    _, _, height, width = data.images.shape
    top, left, _, _ = center_boxes(1, height, width, size)[0].tolist()
    images = data.images[:, :, top : top + size, left : left + size]
    return TensorData(images, data.labels, list(data.classes))
