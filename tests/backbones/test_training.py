"""A detector and a segmenter on deepres backbones train on CPU: finite losses that fall
on a fixed batch."""

import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator

from deepres.backbones import backbone, deeplabv3

SIZE = 64


def fixed_batch() -> tuple[list[torch.Tensor], list[dict]]:
    """Two images, each with a bright square object on a dark noisy background."""
    generator = torch.Generator().manual_seed(0)
    images, targets = [], []
    for x0, y0, side, label in [(8, 12, 28, 1), (30, 20, 24, 2)]:
        image = torch.rand(3, SIZE, SIZE, generator=generator) * 0.3
        image[label - 1, y0 : y0 + side, x0 : x0 + side] = 1.0
        images.append(image)
        box = torch.tensor([[x0, y0, x0 + side, y0 + side]], dtype=torch.float32)
        targets.append({"boxes": box, "labels": torch.tensor([label])})
    return images, targets


def test_fasterrcnn_training_steps_lower_the_loss():
    torch.manual_seed(0)
    body = backbone(
        "resnet18", trainable_layers=5, norm="bn", returned_layers=[3, 4], fpn_channels=64
    )
    anchors = AnchorGenerator(((16,), (32,), (64,)), ((1.0,),) * 3)
    model = FasterRCNN(
        body,
        num_classes=3,
        min_size=SIZE,
        max_size=SIZE,
        rpn_anchor_generator=anchors,
        rpn_post_nms_top_n_train=50,
        box_batch_size_per_image=32,
    ).train()
    images, targets = fixed_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    totals = []
    for _ in range(6):
        losses = model(images, targets)
        assert set(losses) == {
            "loss_classifier",
            "loss_box_reg",
            "loss_objectness",
            "loss_rpn_box_reg",
        }
        assert all(torch.isfinite(v) for v in losses.values())
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert totals[-1] < 0.7 * totals[0], totals


def test_deeplabv3_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = deeplabv3("resnet18", 3, output_stride=16, aux_loss=True).train()
    images, targets = fixed_batch()
    labels = torch.zeros(2, SIZE, SIZE, dtype=torch.int64)
    for i, target in enumerate(targets):
        x0, y0, x1, y1 = target["boxes"][0].int().tolist()
        labels[i, y0:y1, x0:x1] = target["labels"][0]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(5):
        out = model(torch.stack(images))
        loss = torch.nn.functional.cross_entropy(out["out"], labels)
        loss = loss + 0.4 * torch.nn.functional.cross_entropy(out["aux"], labels)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert totals[-1] < 0.7 * totals[0], totals
