"""A weight file from the most used CIFAR ResNet code (akamaster/pytorch_resnet_cifar10)
loads with ``create_model(name, pretrained=PATH)`` and nothing else, and gives that code's
predictions.

``AkamasterStyleResNet`` below is written for this test from that repository's documented
conventions: option-A shortcuts that subsample by 2 and zero-pad the new channels on both
sides (planes // 4 before, planes // 4 after), the classifier named ``linear``, global
average pooling by ``avg_pool2d`` over the whole map, and checkpoints saved from
``nn.DataParallel`` as ``{"state_dict": {"module.…": …}, "best_prec1": …}`` in ``.th`` files.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepres import create_model


class PadShortcut(nn.Module):
    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class Block(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes = stride != 1 or inplanes != planes
        self.shortcut = PadShortcut(planes) if changes else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class AkamasterStyleResNet(nn.Module):
    def __init__(self, n: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, inplanes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(Block(inplanes, planes, stride if i == 0 else 1))
                inplanes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


@pytest.mark.parametrize("depth", [20, 32, 56])
def test_akamaster_checkpoint_gives_that_codes_predictions(tmp_path, depth):
    torch.manual_seed(depth)
    theirs = AkamasterStyleResNet((depth - 2) // 6)
    for m in theirs.modules():  # trained-looking BatchNorm statistics and affine terms
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    theirs.eval()
    path = tmp_path / f"resnet{depth}-12fdde89.th"  # their file naming
    state = {f"module.{k}": v for k, v in theirs.state_dict().items()}  # DataParallel
    torch.save({"state_dict": state, "best_prec1": 91.25}, path)

    ours = create_model(f"resnet{depth}", pretrained=path).eval()
    images = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        expected, got = theirs(images), ours(images)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
