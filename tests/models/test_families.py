"""The later ResNet families (pre-activation, ResNeXt, Wide ResNet, ResNet-D, SE) against
torchvision, timm and their papers' tables; every family with every ResNet feature.

Counts use models built on the meta device (no weights allocated or initialised), so the
101-layer and wide networks cost nothing to count.
"""

import pytest
import timm
import torch
import torch.fx
import torchvision

from deepres import DeepresError, count_macs, count_params, create_model, list_models
from deepres.models import BasicBlock, Bottleneck, FeatureListNet, SqueezeExcite, stage_table


def on_meta(build, name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return build(name, **kwargs)


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


TORCHVISION = [
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_families_same_keys_params_and_multiply_adds(name):
    ours = on_meta(create_model, name)
    reference = on_meta(torchvision.models.get_model, name)
    assert shapes(ours) == shapes(reference)  # the same keys and shapes: strict loading fits
    meta = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta
    assert count_params(ours) == count_params(reference) == meta["num_params"]
    # torchvision's published "GFLOPS" (``_ops``) are multiply-adds at 224x224.
    assert count_macs(ours, 224) / 1e9 == pytest.approx(meta["_ops"], rel=0.01)


TIMM = [
    ("resnet50d", "resnet50d", {}),
    ("resnet101d", "resnet101d", {}),
    ("seresnet50", "seresnet50", {}),
    ("seresnext50_32x4d", "seresnext50_32x4d", {}),
    ("preact_resnet18", "resnetv2_18", {}),
    ("preact_resnet50", "resnetv2_50", {}),
    ("preact_resnet101", "resnetv2_101", {}),
    ("preact_resnet50", "resnetv2_50d", {"stem": "deep", "avg_down": True}),
]


@pytest.mark.parametrize(("name", "timm_name", "kwargs"), TIMM)
def test_timm_families_same_parameter_count(name, timm_name, kwargs):
    ours = on_meta(create_model, name, **kwargs)
    reference = on_meta(timm.create_model, timm_name)
    assert count_params(ours) == count_params(reference)
    if not timm_name.startswith("resnetv2"):  # ResNet-V2 keys are renamed on loading
        assert shapes(ours) == shapes(reference)


@pytest.mark.parametrize(
    ("name", "millions"),
    [
        ("preact_resnet110", 1.7),  # He et al. 2016b (Identity Mappings)
        ("preact_resnet164", 1.7),
        ("preact_resnet1001", 10.2),
        ("resnext29_8x64d", 34.4),  # Xie et al. 2017, CIFAR
        ("resnext29_16x64d", 68.1),
        ("wrn16_8", 11.0),  # Zagoruyko & Komodakis 2016
        ("wrn28_10", 36.5),
        ("wrn40_4", 8.9),
    ],
)
def test_cifar_parameter_counts_match_the_papers(name, millions):
    assert count_params(on_meta(create_model, name)) / 1e6 == pytest.approx(millions, rel=0.02)


def test_the_papers_block_layouts():
    wrn = on_meta(create_model, "wrn28_10")
    assert [len(getattr(wrn, f"layer{i}")) for i in (1, 2, 3)] == [4, 4, 4]
    assert wrn.conv1.out_channels == 16 and wrn.num_features == 640 and wrn.preact
    deep = on_meta(create_model, "preact_resnet1001")
    assert isinstance(deep.layer1[0], Bottleneck) and len(deep.blocks) == 333
    assert [deep.layer1[0].conv2.out_channels, deep.num_features] == [16, 256]
    resnext = on_meta(create_model, "resnext29_16x64d")
    assert resnext.layer1[0].conv2.groups == 16 and resnext.layer1[0].conv2.out_channels == 1024
    assert [info["num_chs"] for info in resnext.feature_info[1:]] == [256, 512, 1024]
    d = on_meta(create_model, "resnet50d")
    assert [m.out_channels for m in d.conv1 if isinstance(m, torch.nn.Conv2d)] == [32, 32, 64]
    assert isinstance(d.layer2[0].downsample[0], torch.nn.AvgPool2d)
    assert isinstance(on_meta(create_model, "seresnet50").layer4[2].se, SqueezeExcite)


def test_list_models_and_on_demand_depths():
    assert list_models("preact*") == [
        *("preact_resnet18", "preact_resnet20", "preact_resnet34", "preact_resnet50"),
        *("preact_resnet56", "preact_resnet101", "preact_resnet110", "preact_resnet152"),
        *("preact_resnet164", "preact_resnet200", "preact_resnet1001"),
    ]
    assert list_models("wrn*") == ["wrn16_8", "wrn28_10", "wrn40_4"]
    assert list_models("resnext*") == [
        *("resnext29_8x64d", "resnext29_16x64d", "resnext50_32x4d"),
        *("resnext101_32x8d", "resnext101_64x4d"),
    ]
    assert list_models("se*") == ["seresnet50", "seresnext50_32x4d"]
    assert list_models("wide*") == ["wide_resnet50_2", "wide_resnet101_2"]
    assert {"resnet50d", "resnet101d"} <= set(list_models("resnet*d"))
    deep = on_meta(create_model, "preact_resnet272")  # 9n+2 bottlenecks, n = 30
    assert isinstance(deep.blocks[0], Bottleneck) and len(deep.blocks) == 90
    small = on_meta(create_model, "preact_resnet26")  # 6n+2 basic blocks, n = 4
    assert isinstance(small.blocks[0], BasicBlock) and len(small.blocks) == 12
    wide = on_meta(create_model, "wrn22_2", num_classes=100)
    assert len(wide.blocks) == 9 and wide.num_features == 128 and wide.fc.out_features == 100
    assert "wrn22_2" not in list_models()
    with pytest.raises(DeepresError, match="6n\\+2 below 164"):
        create_model("preact_resnet170")
    with pytest.raises(DeepresError, match="6n\\+4"):
        create_model("wrn20_2")


def test_options_are_checked():
    with pytest.raises(DeepresError, match="need Bottleneck"):
        create_model("resnet18", groups=32)
    with pytest.raises(DeepresError, match="unknown attention"):
        create_model("resnet20", attention="cbam")
    with pytest.raises(DeepresError, match="dropout"):
        create_model("wrn16_8", dropout=1.5)
    with pytest.raises(DeepresError, match="unknown stem"):
        create_model("resnet50", stem="patchify")
    assert create_model("resnet50", stem="deep").conv1[0].out_channels == 32


# One model of each family, run on small images (ImageNet models end on 1x1 maps at 32x32).
FAMILIES = [
    ("preact_resnet20", {}),
    ("resnext50_32x4d", {"num_classes": 10}),
    ("wrn10_2", {"dropout": 0.3}),
    ("resnet50d", {"num_classes": 10}),
    ("seresnext50_32x4d", {"num_classes": 10}),
]


@pytest.mark.parametrize(("name", "kwargs"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_family_traces_and_has_the_resnet_interface(name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, **kwargs).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        traced = torch.fx.symbolic_trace(model)
        assert torch.allclose(traced(x), logits, atol=1e-5)
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        assert torch.equal(model.forward_head(features), logits)
        assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features)
        # features_only (what create_model(name, features_only=True) returns)
        backbone = FeatureListNet(model)
        maps = backbone(x)
    assert [f.shape[1] for f in maps] == backbone.channels()
    assert [32 // f.shape[-1] for f in maps] == backbone.reduction()
    assert not any(k.startswith("fc.") for k in backbone.state_dict())
    if model.preact:  # the last map is after the final BN-ReLU, as timm's
        assert "final_bn.weight" in backbone.state_dict() and maps[-1].min() >= 0
    rows = {r.name: r for r in stage_table(model, 32)}
    assert rows["fc"].output_size == (model.num_classes,)
    stage_channels = [rows[n].output_size[0] for n in model.stage_names]
    assert stage_channels == [info["num_chs"] for info in model.feature_info[1:]]
    model.reset_classifier(3)
    assert model(x).shape == (1, 3)


def test_features_only_by_name():
    model = create_model("preact_resnet56", features_only=True, out_indices=(1, 3))
    assert model.channels() == [16, 64] and model.reduction() == [1, 4]
    assert [f.shape[-1] for f in model(torch.randn(1, 3, 32, 32))] == [32, 8]
    assert "final_bn.weight" in model.state_dict()


def test_checkpointed_step_is_exactly_a_normal_step():
    """Pre-activation, SE and dropout under checkpointing: the recomputation replays the
    dropout masks, so the loss, gradients and BN statistics are exactly a normal step's."""
    torch.manual_seed(0)
    options = {"attention": "se", "dropout": 0.3}
    plain = create_model("wrn10_2", **options).train()
    checkpointed = create_model("wrn10_2", **options).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing()
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    results = []
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads = [p.grad for p in model.parameters()]
        results.append([*grads, *model.state_dict().values()])
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_options_combine_in_every_family():
    torch.manual_seed(0)
    model = create_model("resnet20", preact=True, attention="se", dropout=0.1, shortcut="B")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert all(isinstance(b.se, SqueezeExcite) for b in model.blocks)
    # A pre-activation block with option-A shortcuts keeps the raw input on its identity path.
    padded = create_model("preact_resnet20", shortcut="A")
    assert count_params(padded) < count_params(create_model("preact_resnet20"))
    assert padded(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["preact_resnet20", "preact_resnet164", "resnet50d"])
def test_zero_init_residual_starts_every_identity_block_as_the_identity(name):
    """Pre-activation blocks become x itself (zeroed last convolution), post-activation
    blocks relu(x) (zeroed last BN scale)."""
    model = create_model(name, zero_init_residual=True).eval()
    with torch.no_grad():
        for block in [b for b in model.blocks if b.downsample is None]:
            x = torch.randn(1, block.conv1.in_channels, 4, 4)
            assert torch.equal(block(x), x if block.preact else torch.relu(x))


def test_multiply_adds_of_the_cifar_families():
    # Conv and FC multiply-adds at 32x32 (reported in the README's family table).
    assert count_macs(on_meta(create_model, "preact_resnet164"), 32) == 247_646_720
    assert count_macs(on_meta(create_model, "wrn28_10"), 32) == 5_243_328_768
    assert count_macs(on_meta(create_model, "resnext29_8x64d"), 32) == 5_387_266_048
