"""Backbone feature extraction: the per-stage feature maps of a ResNet (timm's features_only).

Detectors and segmenters (e.g. FPN) read the maps of several stages. ``FeatureListNet``
re-registers the model's modules under their own names, so its state-dict keys are the
model's keys without the classifier, and backbone weight files load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepres.errors import DeepresError
from deepres.models.resnet import ResNet, check_input


class FeatureListNet(nn.Module):
    """Returns a list of feature maps, one for each index in ``out_indices``.

    ``feature_info`` lists, for each returned map, its channels (``num_chs``), its stride
    relative to the input (``reduction``) and the module that produces it.
    """

    def __init__(self, model: ResNet, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        all_info = model.feature_info
        if out_indices is None:
            out_indices = range(len(all_info))
        out_indices = [i if i >= 0 else len(all_info) + i for i in out_indices]
        if not out_indices or any(not 0 <= i < len(all_info) for i in out_indices):
            raise DeepresError(
                f"out_indices {list(out_indices)} out of range: this model has "
                f"{len(all_info)} feature levels (0..{len(all_info) - 1})"
            )
        self.out_indices = tuple(out_indices)
        self.feature_info = [all_info[i] for i in self.out_indices]
        self.in_chans = model.in_chans
        self.return_modules = [info["module"] for info in self.feature_info]
        # Keep the modules up to the last one needed, in forward order.
        names = model.module_order
        stop = max(names.index(m) for m in self.return_modules)
        for name in names[: stop + 1]:
            self.add_module(name, getattr(model, name))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input(x, self.in_chans)
        features = []
        for name, module in self.named_children():
            x = module(x)
            if name in self.return_modules:
                features.append(x)
        return features

    def channels(self) -> list[int]:
        return [info["num_chs"] for info in self.feature_info]

    def reduction(self) -> list[int]:
        return [info["reduction"] for info in self.feature_info]
