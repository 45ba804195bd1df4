"""Fine-tuning (train.finetune): --freeze-epochs trains the head (and BatchNorm) alone first,
--layer-lr-decay gives each stage lr x D^k; both resume bitwise across the unfreeze."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from deepres import DeepresError
from deepres.models import create_model
from deepres.train import resolve_config, train
from deepres.train.finetune import body_parameters, layer_depths, set_frozen
from deepres.train.optim import build_optimizer, set_lr


def test_layer_depths_count_stages_from_the_head():
    depths = layer_depths(create_model("resnet20", num_classes=10))  # 3 stages
    assert depths["fc.weight"] == 0 and depths["fc.bias"] == 0
    assert depths["layer3.2.conv2.weight"] == 1 and depths["layer2.0.bn1.bias"] == 2
    assert depths["layer1.0.conv1.weight"] == 3
    assert depths["conv1.weight"] == 4 and depths["bn1.weight"] == 4
    deep = layer_depths(create_model("resnet50d", num_classes=10))  # deep stem, 4 stages
    assert (
        deep["conv1.0.weight"] == deep["conv1.4.bias"] == 5 and deep["layer4.0.conv1.weight"] == 1
    )
    preact = layer_depths(create_model("preact_resnet18", num_classes=10))
    assert preact["final_bn.weight"] == 0  # after the last stage: with the head


@pytest.mark.parametrize("norm_weight_decay", [None, 0.0])
def test_each_group_learns_at_lr_times_decay_to_its_depth(norm_weight_decay):
    model = create_model("resnet20", num_classes=10)
    cfg = resolve_config(
        layer_lr_decay=0.5, lr=0.2, weight_decay=1e-3, norm_weight_decay=norm_weight_decay
    )
    optimizer = build_optimizer(cfg, model)
    depths, names = layer_depths(model), {id(p): n for n, p in model.named_parameters()}
    assert optimizer.param_groups[0]["params"][0] is model.fc.weight  # the head's group first
    set_lr(optimizer, 0.1)  # as every step does, with the schedule's lr
    seen = 0
    for group in optimizer.param_groups:
        (k,) = {depths[names[id(p)]] for p in group["params"]}
        assert group["lr_scale"] == 0.5**k and group["lr"] == pytest.approx(0.1 * 0.5**k)
        assert cfg.lr * group["lr_scale"] == pytest.approx(0.2 * 0.5**k)
        norm = group["weight_decay"] == 0.0
        assert norm == (norm_weight_decay is not None and "bn" in names[id(group["params"][0])])
        seen += len(group["params"])
    assert seen == len(list(model.parameters()))
    assert len(optimizer.param_groups) == (5 if norm_weight_decay is None else 9)  # fc: no BN


def test_layer_decay_off_leaves_one_group_and_a_bad_decay_is_refused():
    optimizer = build_optimizer(resolve_config(), create_model("resnet8", num_classes=4))
    assert len(optimizer.param_groups) == 1 and "lr_scale" not in optimizer.param_groups[0]
    with pytest.raises(DeepresError, match="--layer-lr-decay must be in"):
        resolve_config(layer_lr_decay=1.5)
    with pytest.raises(DeepresError, match="--freeze-epochs must be >= 0"):
        resolve_config(freeze_epochs=-1)


def test_set_frozen_freezes_the_body_but_not_the_head_or_batchnorm_then_thaws_it():
    model = create_model("resnet8", num_classes=4)
    cfg = resolve_config(freeze_epochs=2)
    assert set_frozen(model, cfg, epoch=0) is True
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "conv1.weight" in frozen and "layer3.0.conv2.weight" in frozen
    assert not any(n.startswith("fc.") or ".bn" in n or n.startswith("bn1") for n in frozen)
    assert len(frozen) == len(body_parameters(model))
    assert set_frozen(model, cfg, epoch=1) is False  # still frozen: nothing changes
    assert set_frozen(model, cfg, epoch=2) is True
    assert all(p.requires_grad for p in model.parameters())
    assert set_frozen(model, resolve_config(), epoch=0) is False  # off: never frozen
    assert all(p.requires_grad for p in model.parameters())


# --- runs --------------------------------------------------------------------------------


def fine_tune(tmp_path, out, **options):
    """resnet8 from a weight file on 64 synthetic 16x16 images, batch 16: 2 epochs of 4
    steps, the first frozen, SGD with momentum and weight decay."""
    start = tmp_path / "start.safetensors"
    if not start.exists():
        torch.manual_seed(1)
        save_file(create_model("resnet8", num_classes=4).state_dict(), start)
    common = dict(
        model="resnet8",
        data="synthetic:3x16x16:4:64",
        out=str(out),
        epochs=2,
        batch_size=16,
        lr=0.05,
        weight_decay=1e-3,
        init_from=str(start),
        freeze_epochs=1,
        checkpoint_every=2,
        threads=1,
        progress="off",
    )
    return resolve_config(**{**common, **options})


@pytest.mark.parametrize(
    "options", [{}, dict(optimizer="adamw", lr=1e-3, layer_lr_decay=0.7)], ids=["sgd", "adamw"]
)
def test_frozen_weights_stay_put_for_the_frozen_epoch_and_train_after_it(
    tmp_path, monkeypatch, options
):
    reference = tmp_path / "reference"
    train(fine_tune(tmp_path, reference, **options))
    run = tmp_path / "run"
    monkeypatch.setenv("DEEPRES_FAULT", "step:5:raise")  # stop in the first step of epoch 2
    with pytest.raises(RuntimeError, match="DEEPRES_FAULT"):
        train(fine_tune(tmp_path, run, **options))
    monkeypatch.delenv("DEEPRES_FAULT")
    start = load_file(tmp_path / "start.safetensors")
    after_frozen = torch.load(run / "state.pt", weights_only=True)
    assert after_frozen["step"] == 4
    model = create_model("resnet8", num_classes=4)
    body = {id(p) for p in body_parameters(model)}
    names = [n for n, p in model.named_parameters()]  # the optimizer's order (one group)
    frozen = [n for n, p in model.named_parameters() if id(p) in body]
    weights = after_frozen["model"]
    assert all(torch.equal(weights[n], start[n]) for n in frozen), "a frozen weight moved"
    assert not torch.equal(weights["fc.weight"], start["fc.weight"])
    assert not torch.equal(weights["bn1.weight"], start["bn1.weight"])  # fastai's train_bn
    assert not torch.equal(weights["bn1.running_mean"], start["bn1.running_mean"])
    if not options:  # SGD: no momentum for the frozen weights
        state = after_frozen["optimizer"]["state"]
        assert {names[i] for i in state} == set(names) - set(frozen)
    # Resumed at the unfreeze: everything trains, bitwise as the uninterrupted run.
    train(fine_tune(tmp_path, run, **options), resume=True)
    end, ref = load_file(run / "model.safetensors"), load_file(reference / "model.safetensors")
    assert all(torch.equal(end[k], ref[k]) for k in ref), "the resumed run differs"
    assert all(not torch.equal(end[n], start[n]) for n in frozen), "a weight never trained"


def test_a_run_stopped_inside_the_frozen_epoch_resumes_bitwise(tmp_path, monkeypatch):
    options = dict(optimizer="radam", lr=1e-3, lookahead=True, lookahead_k=3, layer_lr_decay=0.8)
    train(fine_tune(tmp_path, tmp_path / "reference", **options))
    run = tmp_path / "run"
    monkeypatch.setenv("DEEPRES_FAULT", "step:3:raise")
    with pytest.raises(RuntimeError, match="DEEPRES_FAULT"):
        train(fine_tune(tmp_path, run, **options))
    monkeypatch.delenv("DEEPRES_FAULT")
    assert torch.load(run / "state.pt", weights_only=True)["step"] == 2
    train(fine_tune(tmp_path, run, **options), resume=True)
    end = load_file(run / "model.safetensors")
    ref = load_file(tmp_path / "reference" / "model.safetensors")
    assert all(torch.equal(end[k], ref[k]) for k in ref)


def test_without_freezing_every_weight_moves_in_the_first_epoch(tmp_path):
    out = tmp_path / "plain"
    train(fine_tune(tmp_path, out, freeze_epochs=0, epochs=1))
    start, end = load_file(tmp_path / "start.safetensors"), load_file(out / "model.safetensors")
    assert not torch.equal(end["conv1.weight"], start["conv1.weight"])
    assert not torch.equal(end["layer3.0.conv2.weight"], start["layer3.0.conv2.weight"])


def test_the_fine_tune_recipe_loads_resolves_and_says_what_it_is_for():
    from deepres.train import list_recipes, load_recipe

    assert "fine-tune" in list_recipes()
    recipe = load_recipe("fine-tune")
    assert "--init-from" in recipe["description"] and "new data set" in recipe["description"]
    cfg = resolve_config("fine-tune", model="resnet50", init_from="torchvision", data="x")
    assert (cfg.optimizer, cfg.schedule, cfg.freeze_epochs) == ("adamw", "flat-cos", 1)
    assert (cfg.layer_lr_decay, cfg.label_smoothing, cfg.augment) == (0.7, 0.1, "auto")
    assert cfg.recipe == "fine-tune" and cfg.init_from == "torchvision"
    assert resolve_config("fine-tune", lr=3e-4).lr == 3e-4  # the command line wins


def test_the_fine_tune_recipe_trains_from_a_weight_file(tmp_path):
    out = tmp_path / "recipe"
    cfg = fine_tune(tmp_path, out, recipe="fine-tune", lr=1e-3, weight_decay=0.01, amp="off")
    assert (cfg.optimizer, cfg.layer_lr_decay, cfg.schedule) == ("adamw", 0.7, "flat-cos")
    assert train(cfg)["epochs"] == 2
    start, end = load_file(tmp_path / "start.safetensors"), load_file(out / "model.safetensors")
    assert not torch.equal(end["conv1.weight"], start["conv1.weight"])
