"""``deepres.backbones.backbone``: strides, channels, frozen BatchNorm, trainable layers."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from deepres.backbones import backbone, set_output_stride
from deepres.errors import DeepresError
from deepres.models import BasicBlock, Bottleneck, ResNet, create_model

SIZE = 64
WIDTHS = (8, 16, 32, 64)


def small(block: type, **options) -> ResNet:
    """A narrow ImageNet-layout net (stem /4, four stages) that builds in milliseconds."""
    return ResNet(block, [1, 2, 2, 2], WIDTHS, num_classes=0, **options)


def body_shapes(net: nn.Module, size: int = SIZE) -> dict[str, tuple[int, ...]]:
    with torch.no_grad():
        return {k: tuple(v.shape) for k, v in net.eval()(torch.rand(1, 3, size, size)).items()}


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_output_stride_and_channels(block, output_stride):
    body = backbone(
        small(block), fpn=False, returned_layers=[1, 2, 3, 4], output_stride=output_stride
    )
    widths = [w * block.expansion for w in WIDTHS]
    strides = [4, 8, min(16, output_stride), output_stride]
    expected = {
        key: (1, w, SIZE // s, SIZE // s)
        for key, w, s in zip(["1", "2", "aux", "out"], widths, strides, strict=True)
    }
    assert body_shapes(body) == expected
    assert (body.out_channels, body.aux_channels) == (widths[3], widths[2])
    net = set_output_stride(small(block), output_stride)
    assert [info["reduction"] for info in net.feature_info[1:]] == strides
    pyramid = backbone(small(block), output_stride=output_stride)
    assert pyramid.out_channels == 256
    shapes = body_shapes(pyramid)
    assert list(shapes) == ["0", "1", "2", "3", "pool"]
    assert [shapes[k][2] for k in "0123"] == [SIZE // s for s in strides]


def test_dilation_keeps_the_weights_and_the_receptive_field():
    """The dilated net is the same function on a denser grid: its stride-32 samples of the
    last map match the undilated net's map where both see the whole image."""
    plain = create_model("resnet18", num_classes=0).eval()
    dilated = create_model("resnet18", num_classes=0).eval()
    dilated.load_state_dict(plain.state_dict())
    set_output_stride(dilated, 16)
    assert dilated.layer4[0].conv1.stride == (1, 1)
    assert dilated.layer4[0].downsample[0].stride == (1, 1)
    assert dilated.layer4[1].conv1.dilation == (2, 2) and dilated.layer4[0].conv1.dilation == (1, 1)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert dilated.forward_features(x).shape[-1] == 2 * plain.forward_features(x).shape[-1]
    with pytest.raises(DeepresError, match="already dilated"):
        set_output_stride(dilated, 8)


def test_dilation_of_other_blocks_and_shortcuts():
    """ResNet-D (average-pool shortcut), paper-style stride on the 1x1, shortcut A."""
    for block, options in [
        (Bottleneck, {"avg_down": True, "stem": "deep"}),
        (Bottleneck, {"stride_in_1x1": True, "groups": 2, "base_width": 32}),
        (BasicBlock, {"shortcut": "A"}),
        (BasicBlock, {"preact": True, "attention": "se"}),
    ]:
        body = backbone(small(block, **options), fpn=False, output_stride=8)
        shapes = body_shapes(body)
        assert shapes["out"][2:] == shapes["aux"][2:] == (8, 8), (block, options)


def test_cifar_nets_work_at_their_own_strides():
    body = backbone("resnet20", fpn=False, returned_layers=[1, 2, 3])
    assert body_shapes(body, 32) == {
        "1": (1, 16, 32, 32),
        "aux": (1, 32, 16, 16),
        "out": (1, 64, 8, 8),
    }
    assert body_shapes(backbone("resnet20", fpn=False, output_stride=2), 32)["out"] == (
        1,
        64,
        16,
        16,
    )
    pyramid = backbone("resnet20", trainable_layers=4)
    assert list(body_shapes(pyramid, 32)) == ["0", "1", "2", "pool"]
    with pytest.raises(DeepresError, match="3 stages.*no layer4"):
        backbone("resnet20", returned_layers=[2, 3, 4])
    with pytest.raises(DeepresError, match=r"choose one of \[4, 2, 1\]"):
        backbone("resnet20", output_stride=8)
    with pytest.raises(DeepresError, match=r"\[0, 4\]"):
        backbone("resnet20", trainable_layers=5)


def test_bad_options_are_refused_with_the_choices():
    with pytest.raises(DeepresError, match="frozen_bn"):
        backbone(small(BasicBlock), norm="gn")
    with pytest.raises(DeepresError, match=r"choose one of \[32, 16, 8, 4\]"):
        backbone(small(BasicBlock), output_stride=12)
    with pytest.raises(DeepresError, match=r"\[1, 4\]"):
        backbone(small(BasicBlock), returned_layers=[0, 1])
    with pytest.raises(DeepresError, match="fpn=True"):
        backbone(small(BasicBlock), fpn=False, extra_blocks=nn.Identity())
    with pytest.raises(DeepresError, match="not a ResNet"):
        backbone(nn.Conv2d(3, 8, 3))


def test_frozen_batchnorm_is_really_frozen():
    net = backbone(small(Bottleneck), trainable_layers=5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    frozen = [m for m in net.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == 1 + 7 * 3 + 4  # stem, three per block, one per projection
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net.train()
    loss = sum(v.square().mean() for v in net(torch.rand(2, 3, SIZE, SIZE)).values())
    loss.backward()
    optimizer.step()
    after = net.state_dict()
    for name, buffer in net.named_buffers():
        assert not buffer.requires_grad
        assert torch.equal(after[name], before[name]), name  # statistics and affine: unchanged
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed and all(k.endswith("weight") or k.endswith("bias") for k in changed)
    assert not any(".bn" in k or "downsample.1" in k for k in changed)


@pytest.mark.parametrize("norm", ["frozen_bn", "bn"])
def test_trainable_layers_match_torchvision(norm):
    norm_layer = FrozenBatchNorm2d if norm == "frozen_bn" else nn.BatchNorm2d
    for k in range(6):
        ours = backbone("resnet18", trainable_layers=k, norm=norm)
        theirs = resnet_fpn_backbone(
            backbone_name="resnet18", weights=None, trainable_layers=k, norm_layer=norm_layer
        )
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        trained = {n for n, p in ours.named_parameters() if p.requires_grad}
        assert trained == {n for n, p in theirs.named_parameters() if p.requires_grad}, k
        assert any(n.startswith("fpn.") for n in trained)
        if k < 5:
            assert not any(n.startswith("body.conv1") for n in trained)


def test_sync_batchnorm():
    net = backbone(small(BasicBlock), norm="sync_bn")
    assert any(isinstance(m, nn.SyncBatchNorm) for m in net.modules())
    assert body_shapes(net)["0"] == (1, 256, SIZE // 4, SIZE // 4)


def test_pretrained_classification_weights_load_before_freezing(tmp_path):
    """A torchvision ImageNet checkpoint (here with random weights and statistics) becomes
    the backbone's weights: the frozen BatchNorms hold its statistics."""
    classifier = torchvision.models.resnet18()
    with torch.no_grad():
        classifier.bn1.running_mean.uniform_(-1, 1)
        classifier.layer4[1].bn2.running_var.uniform_(0.5, 2)
    torch.save(classifier.state_dict(), tmp_path / "resnet18.pth")
    net = backbone("resnet18", pretrained=tmp_path / "resnet18.pth")
    assert torch.equal(net.body.conv1.weight, classifier.conv1.weight)
    assert torch.equal(net.body.bn1.running_mean, classifier.bn1.running_mean)
    assert torch.equal(net.body.layer4[1].bn2.running_var, classifier.layer4[1].bn2.running_var)
    assert isinstance(net.body.layer4[1].bn2, FrozenBatchNorm2d)
