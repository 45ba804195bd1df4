"""Fine-tuning: the classifier (the head), the stages and the stem of a deepres ResNet.

``--freeze-epochs N`` trains the head alone for N epochs, then everything (fastai's
``freeze``/``unfreeze``); as fastai does by default (``train_bn=True``), the BatchNorm layers
of the frozen body keep training (weights, biases and running statistics), so that
pretrained statistics adapt to the new data. ``--layer-lr-decay D`` gives each stage its
learning-rate factor (timm's layer-wise decay): ``layer_depths`` says how far each parameter
is from the head.
"""

from __future__ import annotations

from torch import nn

from deepres.errors import DeepresError
from deepres.train.config import TrainConfig


def layer_depths(model: nn.Module) -> dict[str, int]:
    """Each parameter's distance from the classifier, by name: 0 for the classifier and
    what follows the last stage (a pre-activation network's ``final_bn``), 1 for the last
    stage, ..., N for ``layer1`` of N stages and N + 1 for the stem (``conv1``, ``bn1``:
    what runs before the first stage)."""
    stages = list(getattr(model, "stage_names", ()))
    if not stages:
        raise DeepresError(
            f"--layer-lr-decay needs a deepres ResNet (stages layer1, layer2, ...); "
            f"{type(model).__name__} has no stage_names"
        )
    order = list(model.module_order)
    depth = {name: len(stages) + 1 for name in order[: order.index(stages[0])]}
    depth.update((name, len(stages) - i) for i, name in enumerate(stages))
    return {name: depth.get(name.split(".")[0], 0) for name, _ in model.named_parameters()}


# the normalisation layers, as torchvision's split_normalization_params knows them
NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)


def body_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What ``--freeze-epochs`` holds still: every parameter but the classifier's and the
    normalisation layers' (fastai's ``train_bn``), frozen or not."""
    head = {id(p) for p in model.get_classifier().parameters()}
    norm = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()}
    return [p for p in model.parameters() if id(p) not in head and id(p) not in norm]


def set_frozen(model: nn.Module, cfg: TrainConfig, epoch: int) -> bool:
    """Freeze the body (``requires_grad`` off: no gradient, so the optimizer gives it no
    update, no weight decay and no momentum) during the first ``--freeze-epochs`` epochs,
    and thaw it from then on; ``epoch`` is the number of epochs done. Returns whether any
    parameter changed, so that a DDP wrapper can be rebuilt."""
    if not cfg.freeze_epochs:
        return False
    trainable = epoch >= cfg.freeze_epochs
    changed = [p for p in body_parameters(model) if p.requires_grad != trainable]
    for p in changed:
        p.requires_grad_(trainable)
    return bool(changed)
