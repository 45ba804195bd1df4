"""The Imagenette leaderboard's model ingredients as ``ResNet`` options, each on and off, in
every family: ``act`` (ReLU, Mish, SiLU), ``blur_pool`` (anti-aliased downsampling, checked
against timm's ``BlurPool2d`` and ``resnetblur`` models) and ``self_attention`` (fastai's
``SimpleSelfAttention``). Models with the default options keep their state-dict keys."""

import hashlib

import pytest
import torch
import torch.fx
import torchvision
from torch import nn

from deepres import DeepresError, count_params, create_model
from deepres.checkpoints import load_model
from deepres.deploy import export_model, load_runner, verify_export
from deepres.models import BlurPool2d, FeatureListNet, SimpleSelfAttention
from deepres.models.layers import ACTIVATION_LAYERS
from deepres.models.options import ACTIVATIONS, SELF_ATTENTION_STAGE
from deepres.train import resolve_config, train

# One of each family: ImageNet bottleneck (ResNet-D stem), ImageNet basic, CIFAR basic,
# pre-activation ImageNet basic, pre-activation CIFAR bottleneck, WRN, SE-ResNeXt.
FAMILIES = [
    "resnet50d",
    "resnet18",
    "resnet20",
    "preact_resnet18",
    "preact_resnet164",
    "wrn16_2",
    "seresnext50_32x4d",
]
OPTIONS = {"act": "mish", "blur_pool": True, "self_attention": True}


def on_meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def built(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **kwargs).eval()


def digest(model: nn.Module) -> tuple[int, str]:
    keys = list(model.state_dict())
    return len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


# --- default options: the same keys as before the options existed ---------------------

# (number of keys, sha256 of the ordered keys) of the models built before these options
OLD_KEYS = {
    "resnet50": (320, "8f960d1d00758a98"),
    "resnet20": (116, "865d6479afd09370"),
    "preact_resnet18": (107, "74ee20823fe45a4d"),
    "resnet50d": (332, "951a1ebf58e70a9a"),
    "seresnext50_32x4d": (384, "f96732458084f458"),
    "wrn16_2": (83, "93945823389cb771"),
}


@pytest.mark.parametrize("name", list(OLD_KEYS))
def test_default_options_keep_the_state_dict_keys_exactly(name):
    default = on_meta(name)
    explicit = on_meta(name, act="relu", blur_pool=False, self_attention=False)
    assert list(default.state_dict()) == list(explicit.state_dict())
    assert digest(default) == OLD_KEYS[name]
    # blur-pool and the activation add no key either (the blur filter is not saved)
    assert list(on_meta(name, act="silu", blur_pool=True).state_dict()) == list(
        default.state_dict()
    )


def test_resnet50_keys_still_those_of_torchvision():
    with torch.device("meta"):
        reference = torchvision.models.resnet50()
    assert list(on_meta("resnet50").state_dict()) == list(reference.state_dict())
    assert list(on_meta("resnet50", blur_pool=True).state_dict()) == list(reference.state_dict())


# --- act ------------------------------------------------------------------------------


def test_the_torch_free_choices_name_the_layers():
    assert tuple(ACTIVATION_LAYERS) == ACTIVATIONS == ("relu", "mish", "silu")
    assert ACTIVATION_LAYERS["mish"] is nn.Mish and ACTIVATION_LAYERS["silu"] is nn.SiLU


def kinds(model: nn.Module) -> dict[type, int]:
    counts: dict[type, int] = {}
    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.Mish, nn.SiLU)):
            counts[type(m)] = counts.get(type(m), 0) + 1
    return counts


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("act", ["mish", "silu"])
def test_act_replaces_every_relu(name, act):
    relus = kinds(on_meta(name))
    assert set(relus) == {nn.ReLU}
    assert kinds(on_meta(name, act=act)) == {ACTIVATION_LAYERS[act]: relus[nn.ReLU]}
    assert count_params(on_meta(name, act=act)) == count_params(on_meta(name))


def test_mish_model_differs_from_relu_model_with_the_same_seed():
    x = torch.randn(2, 3, 32, 32)
    relu, mish = built("resnet20"), built("resnet20", act="mish")
    for (k, a), (_, b) in zip(relu.state_dict().items(), mish.state_dict().items(), strict=True):
        assert torch.equal(a, b), k  # the same weights ...
    with torch.no_grad():
        assert not torch.allclose(relu(x), mish(x), atol=1e-3)  # ... another function
        assert torch.equal(relu(x), built("resnet20", act="relu")(x))


@pytest.mark.parametrize(("act", "layer"), [("mish", nn.Mish), ("silu", nn.SiLU)])
def test_act_gives_timm_resnet_with_that_act_layer(act, layer):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model("resnet50d", act_layer=layer).eval()
    model = create_model("resnet50d", act=act).eval()
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_act_trains():
    model = create_model("preact_resnet20", act="mish").train()
    model(torch.randn(4, 3, 16, 16)).sum().backward()  # in-place Mish keeps its gradient
    assert all(p.grad is not None for p in model.parameters())


# --- blur_pool ------------------------------------------------------------------------


@pytest.mark.parametrize("filt_size", [2, 3, 5])
@pytest.mark.parametrize("shape", [(2, 8, 16, 16), (1, 3, 15, 9)])
def test_blur_pool_layer_equals_timm(filt_size, shape):
    layers = pytest.importorskip("timm.layers")
    x = torch.randn(shape)
    ours = BlurPool2d(shape[1], 2, filt_size)
    reference = layers.BlurPool2d(shape[1], filt_size=filt_size, stride=2)
    assert torch.allclose(ours(x), reference(x), atol=1e-6)
    assert not list(ours.parameters()) and not ours.state_dict()  # fixed, not saved
    assert ours.filt.sum().item() == pytest.approx(shape[1])  # each channel's filter sums to 1


def test_blur_pool_is_a_binomial_low_pass():
    layer = BlurPool2d(1, 2, 3)
    assert torch.equal(layer.filt[0, 0], torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    constant = torch.full((1, 1, 8, 8), 3.0)
    assert torch.allclose(layer(constant), torch.full((1, 1, 4, 4), 3.0))  # passes DC
    stripes = torch.tensor([1.0, -1.0] * 4).repeat(8, 1)[None, None]  # Nyquist: removed
    assert layer(stripes)[..., 1:-1, 1:-1].abs().max() < 1e-6


@pytest.mark.parametrize(
    ("name", "timm_name"),
    [("resnet18", "resnetblur18"), ("resnet50", "resnetblur50"), ("resnet50d", "resnetblur50d")],
)
def test_blur_pool_model_equals_timm_resnetblur(name, timm_name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model(timm_name).eval()
    model = create_model(name, blur_pool=True).eval()
    model.load_state_dict(reference.state_dict())  # strict: the same keys
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def strides(model: nn.Module) -> list[int]:
    return [
        m.stride[0] for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and ".sa" not in n
    ]


@pytest.mark.parametrize("name", FAMILIES)
def test_blur_pool_moves_the_strides_to_blur_layers(name):
    plain, blurred = on_meta(name), on_meta(name, blur_pool=True)
    blurs = [m for m in blurred.modules() if isinstance(m, BlurPool2d)]
    stage_strides = len(plain.stage_names) - 1  # every stage but the first halves the map
    stem_pool = 0 if isinstance(plain.maxpool, nn.Identity) else 1
    assert len(blurs) == stage_strides + stem_pool
    assert count_params(blurred) == count_params(plain)
    # strided 3x3 convolutions in the blocks now run at stride 1; the shortcuts keep theirs
    block_3x3 = [
        m.stride[0]
        for b in blurred.blocks
        for m in b.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert set(block_3x3) == {1}
    assert strides(blurred).count(2) == strides(plain).count(2) - stage_strides
    if stem_pool:
        assert blurred.maxpool[0].stride == 1 and blurred.maxpool[1].stride == 2


def test_blur_pool_with_the_stride_on_the_first_1x1():
    model = on_meta("resnet50", blur_pool=True, stride_in_1x1=True)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and block.blur_before == 2
    assert block.aa.channels == block.conv1.out_channels


# --- self_attention -------------------------------------------------------------------


def test_simple_self_attention_against_fastai_formula():
    torch.manual_seed(0)
    layer = SimpleSelfAttention(8)
    x = torch.randn(2, 8, 5, 7)
    assert torch.equal(layer(x), x)  # gamma starts at 0: the identity
    with torch.no_grad():
        layer.gamma.fill_(0.3)
    flat = x.view(2, 8, -1)
    conv = torch.nn.functional.conv1d(flat, layer.conv.weight[..., 0])  # fastai: Conv1d
    expected = (0.3 * torch.bmm(torch.bmm(flat, flat.permute(0, 2, 1)), conv) + flat).view_as(x)
    assert torch.allclose(layer(x), expected, atol=1e-4)
    assert count_params(layer) == 8 * 8 + 1


@pytest.mark.parametrize("name", FAMILIES)
def test_self_attention_adds_its_1x1_conv_and_gamma_to_the_last_block_of_a_stage(name):
    plain = on_meta(name)
    for choice, stage in [(True, SELF_ATTENTION_STAGE), (1, 1), (-1, len(plain.stage_names) - 1)]:
        model = on_meta(name, self_attention=choice)
        layer_name = plain.stage_names[stage]
        last = len(getattr(model, layer_name)) - 1
        channels = model.feature_info[stage + 1]["num_chs"]
        new = set(model.state_dict()) - set(plain.state_dict())
        assert new == {f"{layer_name}.{last}.sa.conv.weight", f"{layer_name}.{last}.sa.gamma"}
        assert count_params(model) - count_params(plain) == channels * channels + 1
        assert sum(isinstance(m, SimpleSelfAttention) for m in model.modules()) == 1
    assert count_params(on_meta(name, self_attention=False)) == count_params(plain)


def test_self_attention_starts_as_the_network_without_it():
    plain = built("resnet20")
    model = built("resnet20", self_attention=True)
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["layer1.2.sa.conv.weight", "layer1.2.sa.gamma"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-6)
        model.layer1[2].sa.gamma.fill_(1e-3)
        assert not torch.allclose(model(x), plain(x), atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"act": "gelu"}, "unknown activation 'gelu'"),
        ({"self_attention": 3}, r"stage index in \[-3, 2\]"),
        ({"self_attention": "first"}, "self_attention must be"),
    ],
)
def test_bad_options_are_refused_with_the_choices(kwargs, message):
    with pytest.raises(DeepresError, match=message):
        create_model("resnet20", **kwargs)


# --- everything at once, in every family ------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_with_every_option_keeps_its_shapes_and_traces(name):
    plain = on_meta(name, num_classes=10)
    model = built(name, num_classes=10, **OPTIONS)
    for m in model.modules():  # make the attention count
        if isinstance(m, SimpleSelfAttention):
            m.gamma.data.fill_(1e-4)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        traced = torch.fx.symbolic_trace(model)
        assert torch.allclose(traced(x), logits, atol=1e-5)
        maps = FeatureListNet(model)(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert [f.shape[1] for f in maps] == [i["num_chs"] for i in plain.feature_info]
    assert [64 // f.shape[-1] for f in maps] == [i["reduction"] for i in plain.feature_info]


def test_model_with_the_options_exports_to_onnx_exactly(tmp_path):
    model = built("resnet20", **OPTIONS)
    with torch.no_grad():
        model.layer1[2].sa.gamma.fill_(1e-3)
    path = tmp_path / "model.onnx"
    meta = {"model": "resnet20", "model_args": OPTIONS, "mean": [0.5] * 3, "std": [0.25] * 3}
    export_model(model, path, "onnx", {**meta, "input_size": 32}, dynamic_batch=True)
    images = torch.randn(4, 3, 32, 32)
    diffs = verify_export(model, load_runner(path, "onnx"), images, dynamic_batch=True)
    assert all(d.exact for d in diffs.values()), diffs


def test_train_builds_the_model_with_the_options(tmp_path):
    cfg = resolve_config(
        model="resnet20", data="synthetic:3x16x16:10:32", out=str(tmp_path / "run"), iters=1,
        batch_size=16, progress="off", threads=1, act="mish", blur_pool=True,
        self_attention=True,
    )  # fmt: skip
    train(cfg)
    model, meta = load_model(tmp_path / "run")
    assert meta["model_args"] | OPTIONS == meta["model_args"]
    assert set(kinds(model)) == {nn.Mish}
    assert sum(isinstance(m, BlurPool2d) for m in model.modules()) == 2
    assert isinstance(model.layer1[2].sa, SimpleSelfAttention)
