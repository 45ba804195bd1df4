"""Activation checkpointing (``set_grad_checkpointing``, ``--grad-checkpointing``): the same
gradients and BatchNorm statistics as a normal step, with far fewer saved activations."""

import pytest
import torch

from deepres import create_model
from deepres.checkpoints import load_model
from deepres.train import resolve_config, train


def step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = {f"grad.{k}": p.grad.clone() for k, p in model.named_parameters()}
    return {"loss": loss.detach(), **grads, **model.state_dict()}


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass outside checkpointed blocks."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(x).sum().backward()
    return total


@pytest.mark.parametrize(("name", "size"), [("resnet20", 32), ("resnet50", 64)])
def test_checkpointed_step_is_exactly_a_normal_step(name, size):
    torch.manual_seed(0)
    plain = create_model(name, num_classes=10)
    checkpointed = create_model(name, num_classes=10)
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing()
    x, y = torch.randn(4, 3, size, size), torch.randint(0, 10, (4,))
    a, b = step(plain, x, y), step(checkpointed, x, y)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []  # loss, every gradient, running stats and num_batches_tracked
    assert saved_bytes(checkpointed, x) < saved_bytes(plain, x) / 4


def test_evaluation_and_tracing_are_unaffected():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    plain = create_model("resnet20")
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    model.set_grad_checkpointing()
    assert torch.equal(model(x), expected)
    # torch.fx tracing and torch.export of the checkpointed model: the same outputs
    traced = torch.fx.symbolic_trace(model)
    assert torch.equal(traced(x), expected)
    exported = torch.export.export(model, (x,)).module()
    torch.testing.assert_close(exported(x), expected, rtol=0, atol=1e-5)
    # training mode without a graph runs the blocks directly: the outputs and BatchNorm
    # statistics of a model without checkpointing
    with torch.no_grad():
        got, want = model.train()(x), plain.train()(x)
    assert torch.equal(got, want)
    for (k, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_training_with_grad_checkpointing_gives_the_same_weights(tmp_path):
    runs = {}
    for flag in (False, True):
        out = tmp_path / f"run-{flag}"
        train(
            resolve_config(
                model="resnet8",
                data="synthetic:3x16x16:10:128",
                epochs=1,
                batch_size=32,
                threads=1,
                progress="off",
                grad_checkpointing=flag,
                out=str(out),
            )
        )
        runs[flag] = load_model(out)[0].state_dict()
    assert all(torch.equal(runs[False][k], runs[True][k]) for k in runs[False])
