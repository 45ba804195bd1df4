"""SGD's parameter groups: --norm-weight-decay gives BatchNorm weights their own decay."""

import torch
from torch import nn

from deepres.models import create_model
from deepres.train import resolve_config
from deepres.train.optim import sgd


def zero_grad_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One step with every gradient zero: only weight decay moves a weight."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()


def test_norm_weight_decay_zero_leaves_batchnorm_weights_to_the_gradient():
    model = create_model("resnet20", num_classes=10)
    cfg = resolve_config(weight_decay=0.1, norm_weight_decay=0.0, lr=1.0, momentum=0.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    zero_grad_step(model, sgd(cfg, model))
    for name, p in model.named_parameters():
        norm = name.split(".")[-2].startswith("bn") or ".downsample.1." in name
        expected = before[name] if norm else before[name] * (1 - 0.1)
        torch.testing.assert_close(p.detach(), expected, msg=name)


def test_without_it_every_parameter_decays_alike():
    model = create_model("resnet20", num_classes=10)
    cfg = resolve_config(weight_decay=0.1, lr=1.0, momentum=0.0)
    optimizer = sgd(cfg, model)
    assert len(optimizer.param_groups) == 1
    before = [p.detach().clone() for p in model.parameters()]
    zero_grad_step(model, optimizer)
    for old, p in zip(before, model.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), old * 0.9)
