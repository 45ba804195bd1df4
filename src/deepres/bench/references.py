"""The training reference: the loop of most tutorials and reproduction repos, torchvision's
CIFAR transforms on PIL images, a DataLoader with worker processes, NCHW, fp32."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms

from deepres.data import TensorData


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
