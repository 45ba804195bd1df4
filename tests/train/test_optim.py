"""The optimizer from the options (train.optim): --optimizer, --betas/--eps, --lookahead, and
runs with each of them that are stopped, resumed and end bitwise as the uninterrupted run."""

import re
import sys

import pytest
import torch
from safetensors.torch import load_file
from timm.optim import Lamb, Lookahead

from deepres import DeepresError
from deepres.models import create_model
from deepres.train import TrainConfig, resolve_config, train
from deepres.train.optim import build_optimizer, set_lr


def build(**options):
    model = create_model("resnet8", num_classes=4)
    return model, build_optimizer(resolve_config(**options), model)


def test_sgd_is_the_default_with_one_group_and_no_lr_scale():
    _, optimizer = build(lr=0.3)
    assert type(optimizer) is torch.optim.SGD
    (group,) = optimizer.param_groups
    assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4 and "lr_scale" not in group


@pytest.mark.parametrize(
    "name, kind",
    [("adamw", torch.optim.AdamW), ("radam", torch.optim.RAdam), ("lamb", Lamb)],
)
def test_each_optimizer_with_its_own_defaults_or_the_given_betas_and_eps(name, kind):
    _, default = build(optimizer=name, lr=1e-3, weight_decay=0.05)
    assert type(default) is kind
    own = kind([torch.nn.Parameter(torch.zeros(1))]).defaults
    group = default.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (1e-3, 0.05)
    assert (group["betas"], group["eps"]) == (own["betas"], own["eps"])
    _, given = build(optimizer=name, betas=[0.95, 0.99], eps=1e-6)
    assert (given.param_groups[0]["betas"], given.param_groups[0]["eps"]) == ((0.95, 0.99), 1e-6)
    if name == "radam":  # decoupled weight decay, as AdamW's
        assert group["decoupled_weight_decay"] is True


def test_lookahead_wraps_the_optimizer_and_keeps_its_slow_weights_in_the_state_dict():
    model, optimizer = build(optimizer="radam", lookahead=True, lookahead_k=2, lr=0.01)
    assert isinstance(optimizer, Lookahead) and optimizer.param_groups[0]["lookahead_k"] == 2
    assert optimizer.param_groups[0]["lookahead_alpha"] == 0.5
    for _ in range(2):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
    state = optimizer.state_dict()
    slow = [s["lookahead_slow_buff"] for s in state["state"].values()]
    assert len(slow) == len(list(model.parameters()))
    assert state["param_groups"][0]["lookahead_step"] == 2
    # After k steps the weights are the slow weights.
    assert all(torch.equal(s, p) for s, p in zip(slow, model.parameters(), strict=True))


def test_without_timm_lamb_and_lookahead_are_clear_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm.optim", None)  # import timm.optim fails
    with pytest.raises(DeepresError, match="timm is not installed: pip install timm"):
        build(optimizer="lamb")
    with pytest.raises(DeepresError, match="--lookahead uses timm.optim.Lookahead"):
        build(lookahead=True)


def test_set_lr_gives_every_group_the_schedules_lr_times_its_scale():
    _, optimizer = build(optimizer="adamw")
    set_lr(optimizer, 0.25)
    assert [g["lr"] for g in optimizer.param_groups] == [0.25]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(optimizer="adam"), "--optimizer must be one of sgd, adamw, radam, lamb"),
        (dict(betas=[0.9]), "--betas takes two numbers in [0, 1)"),
        (dict(betas=[0.9, 1.0]), "--betas takes two numbers"),
        (dict(eps=0.0), "--eps must be positive"),
        (dict(lookahead_alpha=0.0), "--lookahead-alpha must be in (0, 1]"),
        (dict(lookahead_k=0), "--lookahead-k must be positive"),
    ],
)
def test_bad_optimizer_options_are_refused(options, message):
    with pytest.raises(DeepresError, match=re.escape(message)):
        resolve_config(**options)


# --- resumed runs -----------------------------------------------------------------------


def tiny(out, **options) -> TrainConfig:
    """resnet8 on 64 synthetic 16x16 images, batch 16: 3 epochs of 4 steps, a checkpoint
    every 2 steps."""
    common = dict(
        model="resnet8",
        data="synthetic:3x16x16:4:64",
        out=str(out),
        epochs=3,
        batch_size=16,
        lr=0.01,
        checkpoint_every=2,
        threads=1,
        progress="off",
    )
    return resolve_config(**{**common, **options})


def stopped_and_resumed(tmp_path, monkeypatch, fault: str, **options) -> None:
    """A reference run, and a run stopped by ``DEEPRES_FAULT=fault`` (in this process) and
    resumed from its last checkpoint: both end with bitwise the same weights."""
    train(tiny(tmp_path / "reference", **options))
    run = tmp_path / "stopped"
    monkeypatch.setenv("DEEPRES_FAULT", fault)
    with pytest.raises(RuntimeError, match="DEEPRES_FAULT"):
        train(tiny(run, **options))
    monkeypatch.delenv("DEEPRES_FAULT")
    resumed_from = torch.load(run / "state.pt", weights_only=True)
    train(tiny(run, **options), resume=True)
    a, b = load_file(tmp_path / "reference/model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "weights differ"
    return resumed_from


@pytest.mark.parametrize(
    "options",
    [
        dict(optimizer="adamw", lr=1e-3, weight_decay=0.01),
        dict(optimizer="radam", lr=1e-3, lookahead=True, lookahead_k=3),  # Ranger
        dict(optimizer="lamb", lr=1e-3),
        dict(lookahead=True, lookahead_k=3),  # SGD + Lookahead
    ],
    ids=["adamw", "ranger", "lamb", "sgd-lookahead"],
)
def test_every_optimizer_resumes_bitwise(tmp_path, monkeypatch, options):
    saved = stopped_and_resumed(tmp_path, monkeypatch, "step:5:raise", **options)
    assert saved["step"] == 4  # continued from the end of epoch 1
    if options.get("lookahead"):  # synced at step 3: the slow weights are in the checkpoint
        states = saved["optimizer"]["state"].values()
        assert all("lookahead_slow_buff" in s for s in states)
        assert saved["optimizer"]["param_groups"][0]["lookahead_step"] == 4


def test_the_flags_set_the_fields_and_default_to_off():
    from deepres.cli import build_parser

    argv = ["train", "--optimizer", "radam", "--betas", "0.95", "0.99", "--eps", "1e-6"]
    argv += ["--lookahead", "--lookahead-k", "5", "--lookahead-alpha", "0.6"]
    argv += ["--layer-lr-decay", "0.7", "--freeze-epochs", "2", "--schedule", "flat-cos"]
    args = vars(build_parser().parse_args([*argv, "--flat", "0.6"]))
    names = ("optimizer", "betas", "eps", "lookahead", "lookahead_k", "lookahead_alpha")
    names += ("layer_lr_decay", "freeze_epochs", "schedule", "flat")
    cfg = resolve_config(**{name: args[name] for name in names})
    assert (cfg.optimizer, cfg.betas, cfg.eps) == ("radam", [0.95, 0.99], 1e-6)
    assert (cfg.lookahead, cfg.lookahead_k, cfg.lookahead_alpha) == (True, 5, 0.6)
    assert (cfg.layer_lr_decay, cfg.freeze_epochs, cfg.schedule, cfg.flat) == (
        0.7,
        2,
        "flat-cos",
        0.6,
    )
    off = vars(build_parser().parse_args(["train"]))
    cfg = resolve_config(**{name: off[name] for name in names})
    assert (cfg.optimizer, cfg.betas, cfg.eps, cfg.lookahead) == ("sgd", None, None, False)
    assert (cfg.layer_lr_decay, cfg.freeze_epochs, cfg.schedule) == (None, 0, "step")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--freeze-epochs", "-1"])
