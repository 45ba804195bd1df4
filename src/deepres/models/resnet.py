"""The ResNets of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016).

One ``ResNet`` class serves both families of the paper:

- ImageNet (§3.4, Table 1): 7x7/2 conv, 3x3/2 max-pool, four stages of 64/128/256/512-d
  blocks on 56/28/14/7 maps, global average pool, 1000-way FC. Shortcut B by default.
- CIFAR (§4.2): 3x3 conv with 16 filters, three stages of n basic blocks with 16/32/64
  filters on 32/16/8 maps, global average pool, 10-way FC: 6n+2 weighted layers.
  Shortcut A by default.

The *plain* twins (§4.1) are the same networks with ``shortcut="none"``. The later families
(pre-activation, ResNeXt, Wide ResNet, ResNet-D, SE; builders in ``deepres.models.families``)
are the same class with a few options: see ``ResNet`` and ``deepres.models.blocks``. So are
the ingredients of the Imagenette leaderboard's models (``act``, ``blur_pool``,
``self_attention``; layers in ``deepres.models.layers``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.fx
from torch import nn
from torch.utils.checkpoint import checkpoint

from deepres.errors import DeepresError
from deepres.models.blocks import (
    BasicBlock,
    Bottleneck,
    ResidualBlock,
    conv3x3,
)
from deepres.models.layers import BlurPool2d, make_act
from deepres.models.options import (
    check_act,
    check_block_options,
    check_shortcut,
    self_attention_stage,
)
from deepres.models.registry import register_model, register_pattern

IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)
STEMS = ("imagenet", "deep", "cifar")


def check_input(x: torch.Tensor, in_chans: int) -> None:
    """Fail early, with the expected shape, on an input the stem cannot take."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise DeepresError(
            f"expected an input of shape (batch, {in_chans}, height, width), got "
            f"{tuple(x.shape)}; build the model with in_chans={x.shape[1] if x.dim() == 4 else '?'}"
            " or convert the images (e.g. grayscale <-> RGB)"
        )


# A leaf in torch.fx graphs (the shape check is Python control flow), so the models trace.
torch.fx.wrap("check_input")


@contextmanager
def keep_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Undo the running-statistics update of every BatchNorm in ``module`` made inside the
    block (a recomputation must not count a batch twice)."""
    saved = [
        (buffer, buffer.clone())
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for buffer in m.buffers()
    ]
    try:
        yield
    finally:  # also when the recomputation stops early (torch ends it with an exception)
        for buffer, value in saved:
            buffer.copy_(value)


def check_options(
    block: type[ResidualBlock],
    layers: list[int],
    widths: tuple[int, ...],
    stem: str,
    num_classes: int,
    in_chans: int,
    groups: int,
    base_width: int,
    *,
    shortcut: str,
    attention: str | None,
    dropout: float,
    act: str = "relu",
    self_attention: bool | int = False,
) -> None:
    """Refuse, with the fix, the option values ``ResNet`` cannot build: the one check of
    the network's and its blocks' options (the blocks do not check them again)."""
    check_shortcut(shortcut)
    check_block_options(attention, dropout)
    check_act(act)
    self_attention_stage(self_attention, len(widths))
    if stem not in STEMS:
        raise DeepresError(f"unknown stem {stem!r}: choose 'imagenet', 'deep' or 'cifar'")
    if len(layers) != len(widths) or min(layers) < 1:
        raise DeepresError(f"layers {layers} must give >= 1 block for each of {widths}")
    if num_classes < 0 or in_chans < 1:
        raise DeepresError(
            f"need num_classes >= 0 and in_chans >= 1, got {num_classes}, {in_chans}"
        )
    if groups < 1 or base_width < 1:
        raise DeepresError(f"need groups >= 1 and base_width >= 1, got {groups}, {base_width}")
    if block is not Bottleneck and (groups, base_width) != (1, 64):
        raise DeepresError("groups and base_width (ResNeXt, wide bottlenecks) need Bottleneck")


class ResNet(nn.Module):
    """A residual (or plain) network; build one with a named builder or ``create_model``.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in each stage.
        widths: base width (``planes``) of each stage; the first stage has stride 1, the
            others stride 2.
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool), ``"deep"`` (three 3x3 convs, the
            first /2, + max-pool: ResNet-C of He et al. 2019, §4.2) or ``"cifar"`` (3x3 conv).
        num_classes: size of the classifier; 0 removes it (``forward`` returns features).
        in_chans: channels of the input images (3 for RGB, 1 for grayscale).
        shortcut: one of ``SHORTCUTS``: ``"A"``, ``"B"``, ``"C"`` or ``"none"`` (see
            ``deepres.models.blocks``).
        zero_init_residual: start every residual branch at zero, so each block begins as
            the identity (Goyal et al., 2017).
        stride_in_1x1: bottlenecks only: stride on the first 1x1 (the paper) instead of the
            3x3 (torchvision, "v1.5").
        stem_width: output channels of the stem (default: ``widths[0]``).
        groups, base_width: bottlenecks only: the grouped 3x3 convolution of ResNeXt.
        avg_down: ResNet-D projection shortcuts (2x2 average pool, then a 1x1 convolution).
        preact: pre-activation blocks (He et al., ECCV 2016); the stem is then only its
            convolution (and max-pool), and one BN-ReLU (``final_bn``) precedes the pooling.
        attention: ``"se"`` for squeeze-and-excitation in every block (Hu et al., 2018).
        dropout: dropout before the last convolution of every block (Wide ResNets, §2.4).
        act: the activation wherever the network has a ReLU (stem, blocks, SE, the final
            one of a pre-activation network): ``"relu"``, ``"mish"`` or ``"silu"``.
        blur_pool: anti-aliased downsampling (Zhang, 2019): the stem's max-pool at stride
            1, then a ``BlurPool2d``; each block's strided convolution at stride 1, then a
            ``BlurPool2d`` after its activation, where timm's ``aa_layer`` puts it. The stem
            convolution and the shortcuts keep their strides (as in timm's ``resnetblur``).
        self_attention: fastai's ``SimpleSelfAttention`` on the residual branch of the last
            block of one stage: ``True`` for the first stage (fastai's xresnet), or that
            stage's index (``-1``: the last one).
    """

    def __init__(
        self,
        block: type[ResidualBlock],
        layers: list[int],
        widths: tuple[int, ...] = IMAGENET_WIDTHS,
        stem: str = "imagenet",
        num_classes: int = 1000,
        in_chans: int = 3,
        shortcut: str = "B",
        zero_init_residual: bool = False,
        stride_in_1x1: bool = False,
        *,
        stem_width: int | None = None,
        groups: int = 1,
        base_width: int = 64,
        avg_down: bool = False,
        preact: bool = False,
        attention: str | None = None,
        dropout: float = 0.0,
        act: str = "relu",
        blur_pool: bool = False,
        self_attention: bool | int = False,
    ) -> None:
        super().__init__()
        check_options(
            block,
            layers,
            widths,
            stem,
            num_classes,
            in_chans,
            groups,
            base_width,
            shortcut=shortcut,
            attention=attention,
            dropout=dropout,
            act=act,
            self_attention=self_attention,
        )
        self.in_chans = in_chans
        self.default_input_size = 32 if stem == "cifar" else 224
        self.shortcut = shortcut
        self.preact = preact
        stem_width = stem_width or widths[0]
        reduction = self._make_stem(stem, in_chans, stem_width, preact, act, blur_pool)
        options: dict = {
            "shortcut": shortcut,
            "preact": preact,
            "attention": attention,
            "dropout": dropout,
            "avg_down": avg_down,
            "act": act,
            "blur_pool": blur_pool,
        }
        if block is Bottleneck:
            options.update(stride_in_1x1=stride_in_1x1, groups=groups, base_width=base_width)
        self.self_attention_stage = self_attention_stage(self_attention, len(widths))
        channels = self._make_stages(block, layers, widths, stem_width, reduction, options)
        # Pre-activation: the last block's sum still needs its BN-ReLU (He et al. 2016b, Fig. 4e).
        self.final_bn = nn.BatchNorm2d(channels) if preact else nn.Identity()
        self.final_relu = make_act(act) if preact else nn.Identity()
        if preact:
            self.feature_info[-1]["module"] = "final_relu"
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = nn.Linear(channels, num_classes) if num_classes else nn.Identity()
        self.num_classes = num_classes
        self.grad_checkpointing = False
        self._init_weights(zero_init_residual)

    def _make_stem(
        self, stem: str, in_chans: int, width: int, preact: bool, act: str, blur_pool: bool
    ) -> int:
        """``conv1``, ``bn1``, ``relu``, ``maxpool``; returns the stem's stride. In a
        pre-activation network the first block's BN-ReLU follows, so ``bn1`` and ``relu``
        are identities (as in the authors' CIFAR code and timm's ResNet-V2). With
        ``blur_pool`` the max-pool is a max at stride 1, then a blur-pool (timm's layout)."""
        if stem == "imagenet":
            self.conv1: nn.Module = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
        elif stem == "deep":  # ResNet-C: three 3x3 convolutions instead of the 7x7
            mid = width // 2
            self.conv1 = nn.Sequential(
                *(conv3x3(in_chans, mid, 2), nn.BatchNorm2d(mid), make_act(act)),
                *(conv3x3(mid, mid), nn.BatchNorm2d(mid), make_act(act)),
                conv3x3(mid, width),
            )
        else:
            self.conv1 = conv3x3(in_chans, width)
        self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(width)
        self.relu = nn.Identity() if preact else make_act(act)
        self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        if stem == "cifar":
            self.maxpool = nn.Identity()
        elif blur_pool:
            self.maxpool = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), BlurPool2d(width, 2))
        stride = 1 if stem == "cifar" else 2
        stem_out = "conv1" if preact else "relu"
        self.feature_info = [dict(num_chs=width, reduction=stride, module=stem_out)]
        return stride * stride  # and the max-pool's

    def _make_stages(
        self,
        block: type[ResidualBlock],
        layers: list[int],
        widths: tuple[int, ...],
        channels: int,
        reduction: int,
        options: dict,
    ) -> int:
        """``layer1``, ``layer2``, ...; returns the output channels of the last stage."""
        self.stage_names: list[str] = []
        for index, (planes, depth) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if index == 0 else 2
            reduction *= stride
            blocks = []
            for i in range(depth):
                attend = index == self.self_attention_stage and i == depth - 1
                stride_i = stride if i == 0 else 1
                blocks.append(block(channels, planes, stride_i, **options, self_attention=attend))
                channels = planes * block.expansion
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            self.feature_info.append(dict(num_chs=channels, reduction=reduction, module=name))
        return channels

    def _init_weights(self, zero_init_residual: bool) -> None:
        """He initialisation (He et al., 2015) for convolutions; BN starts as the identity.
        A model built on the meta device (only to count it) has no values to initialise."""
        if next(self.parameters()).is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    m.zero_init_last()

    @property
    def module_order(self) -> list[str]:
        """Names of the top-level modules in the order ``forward_features`` runs them."""
        return ["conv1", "bn1", "relu", "maxpool", *self.stage_names, "final_bn", "final_relu"]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing (timm's name for it): in training, each block keeps only
        its input and recomputes its activations during the backward pass, so activation
        memory falls from every layer's outputs to one tensor per block, for about a third
        more compute. Gradients and BatchNorm statistics are exactly those of a normal step
        (the recomputation leaves the running statistics as they were)."""
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (before global pooling; after the final BN-ReLU of
        a pre-activation network)."""
        check_input(x, self.in_chans)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            stage = getattr(self, name)
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                for block in stage:
                    x = checkpoint(
                        block,
                        x,
                        use_reentrant=False,
                        context_fn=lambda b=block: (nullcontext(), keep_batchnorm_stats(b)),
                    )
            else:
                x = stage(x)
        return self.final_relu(self.final_bn(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and classifier; ``pre_logits`` stops before the FC."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the FC with a freshly initialised one (0 removes it)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    @property
    def blocks(self) -> list[ResidualBlock]:
        """All residual blocks, in order."""
        return [m for m in self.modules() if isinstance(m, ResidualBlock)]


# --- ImageNet family (Table 1) ---------------------------------------------------------


def _imagenet(block: type[ResidualBlock], layers: list[int], **kwargs) -> ResNet:
    return ResNet(block, layers, IMAGENET_WIDTHS, **{"stem": "imagenet", **kwargs})


@register_model
def resnet18(**kwargs) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return _imagenet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model
def resnet34(**kwargs) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return _imagenet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model
def resnet50(**kwargs) -> ResNet:
    """ResNet-50: bottlenecks [3, 4, 6, 3]."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model
def resnet101(**kwargs) -> ResNet:
    """ResNet-101: bottlenecks [3, 4, 23, 3]."""
    return _imagenet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model
def resnet152(**kwargs) -> ResNet:
    """ResNet-152: bottlenecks [3, 8, 36, 3]."""
    return _imagenet(Bottleneck, [3, 8, 36, 3], **kwargs)


@register_model
def plain18(**kwargs) -> ResNet:
    """Plain-18 (Table 2): ResNet-18 without shortcuts."""
    return _imagenet(BasicBlock, [2, 2, 2, 2], **{"shortcut": "none", **kwargs})


@register_model
def plain34(**kwargs) -> ResNet:
    """Plain-34 (Table 2): ResNet-34 without shortcuts."""
    return _imagenet(BasicBlock, [3, 4, 6, 3], **{"shortcut": "none", **kwargs})


# --- CIFAR family (§4.2): 6n+2 layers ----------------------------------------------------


def cifar_resnet(depth: int, **kwargs) -> ResNet:
    """A CIFAR ResNet of ``depth = 6n + 2`` layers, shortcut A and 10 classes by default."""
    if depth < 8 or (depth - 2) % 6:
        raise DeepresError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, ...), got {depth}")
    n = (depth - 2) // 6
    options = {"stem": "cifar", "shortcut": "A", "num_classes": 10, **kwargs}
    return ResNet(BasicBlock, [n, n, n], CIFAR_WIDTHS, **options)


def _cifar_plain(depth: int, **kwargs) -> ResNet:
    return cifar_resnet(depth, **{"shortcut": "none", **kwargs})


def _cifar_on_demand(match: re.Match[str]) -> Callable[..., ResNet] | None:
    """``resnet{d}`` and ``plain{d}`` for any CIFAR depth d = 6n+2 >= 8 (``resnet8``,
    ``plain14``); other depths are unknown names (``resnet9``)."""
    depth = int(match[2])
    if depth < 8 or (depth - 2) % 6:
        return None
    defaults = {"shortcut": "none"} if match[1] == "plain" else {}
    return lambda **kwargs: cifar_resnet(depth, **{**defaults, **kwargs})


register_pattern(r"(resnet|plain)(\d+)", _cifar_on_demand)


@register_model
def resnet20(**kwargs) -> ResNet:
    """CIFAR ResNet-20 (n=3), 0.27M parameters."""
    return cifar_resnet(20, **kwargs)


@register_model
def resnet32(**kwargs) -> ResNet:
    """CIFAR ResNet-32 (n=5), 0.46M parameters."""
    return cifar_resnet(32, **kwargs)


@register_model
def resnet44(**kwargs) -> ResNet:
    """CIFAR ResNet-44 (n=7), 0.66M parameters."""
    return cifar_resnet(44, **kwargs)


@register_model
def resnet56(**kwargs) -> ResNet:
    """CIFAR ResNet-56 (n=9), 0.85M parameters."""
    return cifar_resnet(56, **kwargs)


@register_model
def resnet110(**kwargs) -> ResNet:
    """CIFAR ResNet-110 (n=18), 1.7M parameters."""
    return cifar_resnet(110, **kwargs)


@register_model
def resnet1202(**kwargs) -> ResNet:
    """CIFAR ResNet-1202 (n=200), 19.4M parameters."""
    return cifar_resnet(1202, **kwargs)


@register_model
def plain20(**kwargs) -> ResNet:
    """CIFAR plain-20: ResNet-20 without shortcuts."""
    return _cifar_plain(20, **kwargs)


@register_model
def plain32(**kwargs) -> ResNet:
    """CIFAR plain-32."""
    return _cifar_plain(32, **kwargs)


@register_model
def plain44(**kwargs) -> ResNet:
    """CIFAR plain-44."""
    return _cifar_plain(44, **kwargs)


@register_model
def plain56(**kwargs) -> ResNet:
    """CIFAR plain-56."""
    return _cifar_plain(56, **kwargs)


@register_model
def plain110(**kwargs) -> ResNet:
    """CIFAR plain-110."""
    return _cifar_plain(110, **kwargs)
