"""The networks against the paper's tables and torchvision's own models."""

import pytest
import torch
import torchvision

from deepres import DeepresError, count_macs, count_params, create_model, list_models
from deepres.models import BasicBlock, Bottleneck, stage_table

IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR_DEPTHS = [20, 32, 44, 56, 110]


@pytest.mark.parametrize(
    "name, params",
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
    ],
)
def test_imagenet_parameter_counts_exact(name, params):
    assert count_params(create_model(name)) == params


@pytest.mark.parametrize(
    "depth, millions",
    [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7), (1202, 19.4)],
)
def test_cifar_parameter_counts_match_table6(depth, millions):
    params = count_params(create_model(f"resnet{depth}"))
    digits = 1 if millions >= 1 else 2
    assert round(params / 1e6, digits) == millions
    if depth != 1202:  # the plain twin has the same count under shortcut A
        assert count_params(create_model(f"plain{depth}")) == params


@pytest.mark.parametrize(
    "name, torchvision_gmacs, paper_gmacs",
    [
        ("resnet18", 1.81, 1.8),
        ("resnet34", 3.67, 3.6),
        ("resnet50", 4.09, 3.8),
        ("resnet101", 7.80, 7.6),
        ("resnet152", 11.51, 11.3),
    ],
)
def test_multiply_adds(name, torchvision_gmacs, paper_gmacs):
    v15 = count_macs(create_model(name), 224) / 1e9
    assert v15 == pytest.approx(torchvision_gmacs, rel=0.01)
    original = count_macs(create_model(name, stride_in_1x1=True), 224) / 1e9
    assert original == pytest.approx(paper_gmacs, rel=0.05)


@pytest.mark.parametrize("name", IMAGENET)
def test_torchvision_weights_load_and_give_same_logits(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    # Random BN statistics so the comparison exercises every parameter and buffer.
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours = create_model(name).eval()
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff < 1e-4


def test_resnet50_stage_sizes_follow_the_stage_table():
    rows = {r.name: r.output_size for r in stage_table(create_model("resnet50"), 224)}
    assert rows["conv1"][1:] == (112, 112)
    assert [rows[n][1] for n in ("maxpool", "layer1", "layer2", "layer3", "layer4")] == [
        56,
        56,
        28,
        14,
        7,
    ]
    assert rows["avgpool"][1:] == (1, 1)
    assert rows["fc"] == (1000,)


@pytest.mark.parametrize("name", ["resnet20", "plain56"])
def test_cifar_stage_sizes(name):
    rows = {r.name: r.output_size for r in stage_table(create_model(name), 32)}
    assert [rows[n] for n in ("layer1", "layer2", "layer3")] == [
        (16, 32, 32),
        (32, 16, 16),
        (64, 8, 8),
    ]
    assert rows["fc"] == (10,)


@pytest.mark.parametrize("block, channels", [(BasicBlock, 16), (Bottleneck, 64)])
def test_zero_init_identity_block_returns_relu_of_input(block, channels):
    torch.manual_seed(0)
    in_channels = channels * block.expansion
    model = create_model("resnet20" if block is BasicBlock else "resnet50", zero_init_residual=True)
    blk = next(b for b in model.blocks if isinstance(b, block) and b.downsample is None)
    with torch.no_grad():  # arbitrary trained-looking statistics in the other layers
        for m in blk.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    blk.eval()
    x = torch.randn(2, in_channels, 8, 8)
    assert torch.equal(blk(x), torch.relu(x))


@pytest.mark.parametrize("shortcut, projections", [("A", 0), ("B", 2), ("C", 9), ("none", 0)])
def test_shortcut_options(shortcut, projections):
    model = create_model("resnet20", shortcut=shortcut)
    convs = [b for b in model.blocks if isinstance(b.downsample, torch.nn.Sequential)]
    assert len(convs) == projections
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_pads_half_before_half_after():
    model = create_model("resnet20")
    shortcut = model.layer2[0].downsample
    x = torch.randn(1, 16, 32, 32)
    y = shortcut(x)
    assert y.shape == (1, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_plain_network_has_no_shortcut_path():
    model = create_model("plain20").eval()
    blk = model.layer1[0]
    with torch.no_grad():
        for p in blk.parameters():
            p.zero_()
    x = torch.randn(1, 16, 8, 8)
    assert not blk(x).any()  # a plain block with zero weights outputs zeros, not relu(x)


def test_list_models():
    assert list_models("resnet*")[:3] == ["resnet18", "resnet20", "resnet32"]
    assert set(list_models("plain*")) == {
        "plain18",
        "plain34",
        *(f"plain{d}" for d in CIFAR_DEPTHS),
    }
    assert "resnet1202" in list_models()


def test_features_only_imagenet():
    model = create_model("resnet50", features_only=True)
    assert model.channels() == [64, 256, 512, 1024, 2048]
    assert model.reduction() == [2, 4, 8, 16, 32]
    features = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 32),
        (256, 16, 16),
        (512, 8, 8),
        (1024, 4, 4),
        (2048, 2, 2),
    ]
    assert not any(k.startswith("fc.") for k in model.state_dict())
    # The backbone's keys are the classifier's keys: torchvision weights load unchanged.
    full = torchvision.models.resnet50(weights=None).state_dict()
    model.load_state_dict({k: v for k, v in full.items() if not k.startswith("fc.")})


def test_features_only_cifar_with_out_indices():
    model = create_model("resnet56", features_only=True, out_indices=(1, 2, 3))
    assert model.channels() == [16, 32, 64]
    assert model.reduction() == [1, 2, 4]
    features = model(torch.randn(2, 3, 32, 32))
    assert [f.shape[-1] for f in features] == [32, 16, 8]
    partial = create_model("resnet18", features_only=True, out_indices=(2,))
    assert "layer3" not in dict(partial.named_children())
    with pytest.raises(DeepresError, match="out of range"):
        create_model("resnet18", features_only=True, out_indices=(7,))


def test_forward_features_head_and_reset_classifier():
    model = create_model("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    features = model.forward_features(x)
    assert features.shape == (1, 512, 2, 2)
    assert model.forward_head(features, pre_logits=True).shape == (1, 512)
    assert torch.equal(model.forward_head(features), model(x))
    model.reset_classifier(7)
    assert model(x).shape == (1, 7)
    model.reset_classifier(0)
    assert model(x).shape == (1, 512)


def test_in_chans_1_end_to_end():
    model = create_model("resnet20", in_chans=1)
    out = model(torch.randn(4, 1, 28, 28))
    out.sum().backward()
    assert out.shape == (4, 10)
    assert model.conv1.weight.grad is not None


def test_unknown_model_lists_close_matches():
    with pytest.raises(DeepresError, match="resnet50"):
        create_model("resnet5O")


def test_wrong_shortcut_names_the_allowed_ones():
    with pytest.raises(DeepresError, match="'A', 'B', 'C', 'none'"):
        create_model("resnet20", shortcut="D")


def test_wrong_channel_count_says_what_is_expected():
    model = create_model("resnet18")
    with pytest.raises(DeepresError, match=r"\(batch, 3, height, width\)"):
        model(torch.randn(1, 1, 32, 32))


def test_bad_depth_and_option():
    from deepres.models import cifar_resnet

    with pytest.raises(DeepresError, match="6n\\+2"):
        cifar_resnet(21)
    with pytest.raises(DeepresError, match="bad option"):
        create_model("resnet20", colour="blue")


def test_torch_hub_local(tmp_path):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    model = torch.hub.load(str(repo), "resnet50", source="local", num_classes=5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_other_cifar_depths_build_on_demand_but_are_not_listed():
    model = create_model("plain14", num_classes=3)
    assert model.shortcut == "none" and len(model.blocks) == 6 and model.fc.out_features == 3
    assert create_model("resnet8").shortcut == "A"
    assert "resnet8" not in list_models()
    with pytest.raises(DeepresError, match="unknown model 'resnet9'"):
        create_model("resnet9")
