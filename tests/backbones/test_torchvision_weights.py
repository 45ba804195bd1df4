"""torchvision's detection and segmentation models, built with random weights (and random
BatchNorm statistics), load strictly into the same torchvision class on a deepres backbone
and give the same outputs."""

import pytest
import torch
from torch import nn
from torchvision.models import detection, segmentation
from torchvision.ops import FrozenBatchNorm2d

from deepres.backbones import (
    backbone,
    deeplabv3,
    fasterrcnn,
    fcos,
    keypointrcnn,
    maskrcnn,
    retinanet,
)

SIZE = 64
# Small images and few proposals keep the box head (12.8M MACs per proposal) fast on a CPU.
SMALL = {"min_size": SIZE, "max_size": SIZE}
FEW = {"rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 50, "box_score_thresh": 0.0}


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random scales, shifts and running statistics in every (frozen) BatchNorm."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d):
                n = m.running_mean.numel()
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def image() -> list[torch.Tensor]:
    return [torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))]


def same_detections(ours: list[dict], theirs: list[dict]) -> None:
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys() and len(b["boxes"]) > 0
        for key in a:
            assert torch.equal(a[key], b[key]), key


def check_detector(theirs: nn.Module, ours: nn.Module, image: list[torch.Tensor]) -> None:
    """torchvision without weights uses plain BatchNorm, all layers trainable: the same
    modules as ours with ``norm="bn", trainable_layers=5``, hence the same outputs."""
    ours.load_state_dict(randomise_norms(theirs).state_dict(), strict=True)
    with torch.no_grad():
        same_detections(ours.eval()(image), theirs(image))


def test_fasterrcnn_resnet50_fpn(image):
    """Also into our default, frozen BatchNorm (the layout of torchvision's published
    detection weights): the same features up to rounding (FrozenBatchNorm2d folds the
    statistics into a scale and a shift)."""
    options = {**SMALL, **FEW, "box_detections_per_img": 20}
    theirs = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **options)
    body = backbone("resnet50", norm="bn", trainable_layers=5)
    check_detector(theirs, detection.FasterRCNN(body, num_classes=91, **options), image)
    frozen = detection.FasterRCNN(backbone("resnet50"), num_classes=91, **options).eval()
    frozen.load_state_dict(theirs.state_dict(), strict=True)
    batch = torch.stack(image)
    with torch.no_grad():
        expected, got = theirs.backbone(batch), frozen.backbone(batch)
    assert got.keys() == expected.keys() == {"0", "1", "2", "3", "pool"}
    for key in got:
        scale = expected[key].abs().max()
        assert (got[key] - expected[key]).abs().max() <= 1e-4 * scale, key


def test_maskrcnn_resnet50_fpn(image):
    options = {**SMALL, **FEW, "box_detections_per_img": 4}
    theirs = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **options)

    body = backbone("resnet50", norm="bn", trainable_layers=5)
    check_detector(theirs, detection.MaskRCNN(body, num_classes=91, **options), image)


def test_retinanet_resnet50_fpn(image):
    options = {**SMALL, "score_thresh": 0.0, "detections_per_img": 20}
    theirs = detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None, **options)

    ours = retinanet("resnet50", 91, norm="bn", trainable_layers=5, detector_kwargs=options)
    check_detector(theirs, ours, image)


def test_deeplabv3_resnet50(image):
    theirs = segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True)
    state = randomise_norms(theirs).state_dict()
    ours = deeplabv3("resnet50", 21, aux_loss=True).eval()  # output stride 8, as theirs
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        expected, got = theirs(image[0][None]), ours(image[0][None])
    assert got.keys() == expected.keys() == {"out", "aux"}
    for key in got:
        assert got[key].shape == (1, 21, SIZE, SIZE)
        assert torch.equal(got[key], expected[key]), key


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (fasterrcnn, detection.fasterrcnn_resnet50_fpn),
        (maskrcnn, detection.maskrcnn_resnet50_fpn),
        (keypointrcnn, detection.keypointrcnn_resnet50_fpn),
        (retinanet, detection.retinanet_resnet50_fpn),
        (fcos, detection.fcos_resnet50_fpn),
    ],
)
def test_the_thin_builders_take_torchvision_weights(ours, theirs):
    """Each builder makes torchvision's model: its weight file loads strictly, into the
    default (frozen BatchNorm, 3 trainable layers) as into the from-scratch settings."""
    reference = theirs(weights=None, weights_backbone=None)
    state = reference.state_dict()
    first = 17 if ours is keypointrcnn else 91  # keypoints, or classes
    model = ours("resnet50", first)
    model.load_state_dict(state, strict=True)
    assert type(model) is type(reference)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("backbone.body.layer1", "backbone.body.conv1")) for n in trained)
    assert any(n.startswith("backbone.body.layer2") for n in trained)
