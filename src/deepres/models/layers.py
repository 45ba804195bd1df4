"""The layers of the Imagenette leaderboard's models (fastai's xresnet), as ``ResNet`` options.

- ``make_act``: the network's activation, one of ``ACTIVATIONS``: ReLU, Mish (Misra, "Mish:
  A Self Regularized Non-Monotonic Activation Function", BMVC 2020) or SiLU (Elfwing et al.,
  2018; "Swish" in Ramachandran et al., 2017), torch's ``nn.ReLU``, ``nn.Mish``, ``nn.SiLU``.
- ``BlurPool2d``: anti-aliased downsampling (Zhang, "Making Convolutional Networks
  Shift-Invariant Again", ICML 2019): a fixed binomial low-pass filter before subsampling,
  so a stride no longer aliases. The same layer as timm's ``timm.layers.BlurPool2d``
  (reflect padding, the filter a non-persistent buffer: no state-dict key).
- ``SimpleSelfAttention``: fastai's self-attention of a feature map with itself (Doria,
  github.com/sdoria/SimpleSelfAttention, in fastai's xresnet): o = (x x^T)(W x) over the
  flattened map x (C x HW), W a 1x1 convolution, y = x + gamma o with gamma starting at 0.
"""

from __future__ import annotations

from math import comb

import torch
import torch.nn.functional as F
from torch import nn

# one for each name of the torch-free ``ACTIVATIONS`` (the command line lists those)
ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "mish": nn.Mish,
    "silu": nn.SiLU,
}


def make_act(act: str = "relu") -> nn.Module:
    """A fresh in-place activation module of kind ``act`` (one of ``ACTIVATIONS``)."""
    return ACTIVATION_LAYERS[act](inplace=True)


class BlurPool2d(nn.Module):
    """Blur, then subsample (Zhang 2019, §3): a depthwise convolution (``groups=channels``)
    with the fixed ``filt_size`` x ``filt_size`` binomial filter (outer product of the row
    C(n, k) / 2^n of Pascal's triangle, n = ``filt_size - 1``; [1, 2, 1] / 4 for 3) at
    ``stride``, on the reflect-padded input. No parameters."""

    def __init__(self, channels: int, stride: int = 2, filt_size: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride
        self.filt_size = filt_size
        self.padding = (stride - 1 + filt_size - 1) // 2
        row = [comb(filt_size - 1, k) for k in range(filt_size)]
        coeffs = torch.tensor(row, dtype=torch.float32) / 2 ** (filt_size - 1)
        kernel = torch.outer(coeffs, coeffs).expand(channels, 1, filt_size, filt_size)
        # Fixed, so a buffer (moves with .to()); not saved, so weight files keep their keys.
        self.register_buffer("filt", kernel.contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, [self.padding] * 4, mode="reflect")
        return F.conv2d(x, self.filt, stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, stride={self.stride}, filt_size={self.filt_size}"


class SimpleSelfAttention(nn.Module):
    """fastai's ``SimpleSelfAttention`` (``ks=1``, ``sym=False``): y = x + gamma (x x^T)(W x).

    x x^T is the C x C Gram matrix of the flattened map, so the cost is O(C^2 HW), not
    O((HW)^2). ``conv`` (W) is a plain 1x1 convolution: fastai wraps it in spectral
    normalisation, left out here so the layer traces with torch.fx and exports to ONNX as
    it is. ``gamma`` starts at 0: the layer begins as the identity.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, HW)
        value = self.conv(x).flatten(2)
        gram = torch.bmm(flat, flat.transpose(1, 2))  # (B, C, C)
        return x + self.gamma * torch.bmm(gram, value).view_as(x)
