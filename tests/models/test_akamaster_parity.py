"""A weight file from the most used CIFAR ResNet code (akamaster/pytorch_resnet_cifar10)
loads with ``create_model(name, pretrained=PATH)`` and nothing else, and gives that code's
predictions.

That code cannot be fetched here (it is no PyPI package, and the tests stay offline), so the
reference is an independent computation written for this test from the repository's
published definition (its ``resnet.py``): no module class, only ``torch.nn.functional``
applied to the checkpoint's own tensors, looked up by their keys in the file:

- stem ``conv1`` (3x3, 16 channels) + ``bn1`` + ReLU; stages ``layer1..3`` of n basic blocks
  each (16/32/64 channels, the first block of layers 2 and 3 at stride 2);
- block: ``conv1`` 3x3 (the block's stride) + ``bn1`` + ReLU, ``conv2`` 3x3 + ``bn2``, plus
  the shortcut, then ReLU; option-A shortcut where the shape changes: ``x[:, :, ::2, ::2]``
  zero-padded with planes // 4 channels before and after (no parameters);
- ``avg_pool2d`` over the whole map, then the classifier ``linear``;
- checkpoints saved from ``nn.DataParallel`` as ``{"state_dict": {"module.…": …},
  "best_prec1": …}`` in ``.th`` files; parameter counts 0.27M / 0.46M / 0.85M for
  ResNet-20 / 32 / 56 (the repository's table).
"""

import pytest
import torch
import torch.nn.functional as F

from deepres import create_model
from deepres.models import count_params

PUBLISHED_PARAMS_M = {20: 0.27, 32: 0.46, 56: 0.85}


def stages(n: int):
    """(layer, block, in planes, planes, stride) of each basic block."""
    inplanes = 16
    for layer, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        for block in range(n):
            yield layer, block, inplanes, planes, stride if block == 0 else 1
            inplanes = planes


def bn_tensors(prefix: str, c: int) -> dict[str, torch.Tensor]:
    """Trained-looking BatchNorm statistics and affine terms."""
    return {
        f"{prefix}.weight": torch.empty(c).uniform_(0.5, 1.5),
        f"{prefix}.bias": torch.empty(c).uniform_(-0.2, 0.2),
        f"{prefix}.running_mean": torch.empty(c).uniform_(-0.5, 0.5),
        f"{prefix}.running_var": torch.empty(c).uniform_(0.5, 2.0),
        f"{prefix}.num_batches_tracked": torch.tensor(1000),
    }


def their_state_dict(n: int) -> dict[str, torch.Tensor]:
    """The keys and shapes that their ``resnet.py`` has (random conv weights of variance
    1 / fan-in)."""

    def conv(cout, cin):
        return torch.randn(cout, cin, 3, 3) * (1 / (9 * cin)) ** 0.5

    state = {"conv1.weight": conv(16, 3), **bn_tensors("bn1", 16)}
    for layer, block, inplanes, planes, _ in stages(n):
        p = f"layer{layer}.{block}"
        state[f"{p}.conv1.weight"] = conv(planes, inplanes)
        state.update(bn_tensors(f"{p}.bn1", planes))
        state[f"{p}.conv2.weight"] = conv(planes, planes)
        state.update(bn_tensors(f"{p}.bn2", planes))
    state["linear.weight"] = torch.randn(10, 64) * 0.1
    state["linear.bias"] = torch.randn(10) * 0.1
    return state


def their_forward(state: dict[str, torch.Tensor], n: int, x: torch.Tensor) -> torch.Tensor:
    """Their network in evaluation mode, computed from the checkpoint's tensors."""

    def bn(t, prefix):
        return F.batch_norm(
            t, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
            state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5,
        )  # fmt: skip

    out = F.relu(bn(F.conv2d(x, state["conv1.weight"], padding=1), "bn1"))
    for layer, block, inplanes, planes, stride in stages(n):
        p = f"layer{layer}.{block}"
        y = F.relu(
            bn(F.conv2d(out, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1")
        )
        y = bn(F.conv2d(y, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
        if stride != 1 or inplanes != planes:  # option A
            shortcut = F.pad(out[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
        else:
            shortcut = out
        out = F.relu(y + shortcut)
    out = F.avg_pool2d(out, out.size()[3])
    return F.linear(out.view(out.size(0), -1), state["linear.weight"], state["linear.bias"])


@pytest.mark.parametrize("depth", [20, 32, 56])
def test_akamaster_checkpoint_gives_that_codes_predictions(tmp_path, depth):
    torch.manual_seed(depth)
    n = (depth - 2) // 6
    theirs = their_state_dict(n)
    learned = sum(
        v.numel()
        for k, v in theirs.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert round(learned / 1e6, 2) == PUBLISHED_PARAMS_M[depth]
    path = tmp_path / f"resnet{depth}-12fdde89.th"  # their file naming
    state = {f"module.{k}": v for k, v in theirs.items()}  # DataParallel
    torch.save({"state_dict": state, "best_prec1": 91.25}, path)

    ours = create_model(f"resnet{depth}", pretrained=path).eval()
    assert count_params(ours) == learned
    images = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        expected, got = their_forward(theirs, n, images), ours(images)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    atol = 1e-5 * max(1.0, expected.abs().max().item())  # float rounding grows with logits
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    # the part of the logits that depends on the image (random weights after global pooling
    # vary little from image to image) is far above the tolerance, and matches too
    centred, got_centred = expected - expected.mean(0), got - got.mean(0)
    assert centred.abs().max() > 100 * atol
    torch.testing.assert_close(got_centred, centred, rtol=0, atol=2 * atol)
