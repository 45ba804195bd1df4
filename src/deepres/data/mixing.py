"""mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of whole batches, seeded.

``BatchMixer(num_classes, mixup=0.2, cutmix=1.0, prob=1.0)`` mixes a batch of normalised
float images with torchvision's ``v2.MixUp`` / ``v2.CutMix``: image i is combined with image
i - 1 (the batch is shuffled already), and the int64 labels become float B x C soft targets
``lam * onehot(y) + (1 - lam) * onehot(y.roll(1))`` (each row sums to 1). With both alphas
above 0 each mixed batch takes one of the two at random (``v2.RandomChoice``); ``prob`` is
the share of batches mixed at all (the others get one-hot targets).

Every random number comes from the ``seed`` given with the batch (see ``derive_seed``), so
a batch is mixed the same way on every rank and again after a resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from deepres.data.augment import seeded_rng
from deepres.errors import DeepresError


class BatchMixer:
    """mixup and/or cutmix of a batch, a pure function of (images, labels, seed)."""

    def __init__(
        self, num_classes: int, *, mixup: float = 0.0, cutmix: float = 0.0, prob: float = 1.0
    ) -> None:
        if num_classes < 2:
            raise DeepresError(f"mixing needs at least 2 classes, got {num_classes}")
        if mixup < 0 or cutmix < 0 or mixup == cutmix == 0:
            raise DeepresError(
                f"give mixup and/or cutmix an alpha > 0 (and none below 0), got mixup={mixup}, "
                f"cutmix={cutmix}"
            )
        if not 0 <= prob <= 1:
            raise DeepresError(f"the mixing probability must be in [0, 1], got {prob}")
        self.num_classes, self.prob = num_classes, prob
        self.alphas = {"mixup": mixup, "cutmix": cutmix}
        mixes: list[v2.Transform] = []
        if mixup > 0:
            mixes.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
        if cutmix > 0:
            mixes.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
        self.mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x C x H x W float images, int64 B labels) -> (mixed images, float B x classes
        soft labels in the images' dtype)."""
        if labels.dim() != 1 or len(labels) != len(images):
            raise DeepresError(
                f"mixing needs one int64 label per image, got labels {tuple(labels.shape)} for "
                f"images {tuple(images.shape)}"
            )
        dtype = images.dtype if images.is_floating_point() else torch.float32
        with seeded_rng(seed):
            if float(torch.rand(())) < self.prob:
                images, soft = self.mix(images, labels)
            else:
                soft = F.one_hot(labels, self.num_classes)
        return images, soft.to(dtype)

    def __repr__(self) -> str:
        on = ", ".join(f"{name}={alpha}" for name, alpha in self.alphas.items() if alpha > 0)
        return f"BatchMixer({on}, prob={self.prob})"


def batch_mixer(num_classes: int, mixup: float, cutmix: float, prob: float) -> BatchMixer | None:
    """A ``BatchMixer`` when mixup or cutmix is on (alpha > 0) and ``prob`` > 0, else None."""
    if (mixup <= 0 and cutmix <= 0) or prob <= 0:
        return None
    return BatchMixer(num_classes, mixup=mixup, cutmix=cutmix, prob=prob)
