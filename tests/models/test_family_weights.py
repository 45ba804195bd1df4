"""Weight files of the later families load strictly with ``create_model(name, pretrained=PATH)``
and give the reference model's logits; old files without ``num_batches_tracked`` load; a
pre-activation ResNet-1001 trains on CPU within a stated memory bound with checkpointing."""

import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
import torchvision

from deepres import DeepresError, create_model


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Random BN statistics, affine parameters and counters, so the comparison exercises
    every parameter and buffer."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.num_batches_tracked.fill_(7)
    return model.eval()


SOURCES = [
    ("resnext50_32x4d", {}, torchvision.models.resnext50_32x4d),
    ("wide_resnet50_2", {}, torchvision.models.wide_resnet50_2),
    ("resnet50d", {}, lambda: timm.create_model("resnet50d")),
    ("seresnet50", {}, lambda: timm.create_model("seresnet50")),
    ("seresnext50_32x4d", {}, lambda: timm.create_model("seresnext50_32x4d")),
    ("preact_resnet50", {}, lambda: timm.create_model("resnetv2_50")),
    (
        "preact_resnet18",
        {"stem": "deep", "avg_down": True},
        lambda: timm.create_model("resnetv2_18d"),
    ),
]
IDS = ["tv-resnext50", "tv-wrn50-2", "timm-resnet50d", "timm-seresnet50", "timm-seresnext50"]
IDS += ["timm-resnetv2_50", "timm-resnetv2_18d"]


@pytest.mark.parametrize(("name", "kwargs", "build_reference"), SOURCES, ids=IDS)
def test_weight_files_load_strictly_with_the_same_logits(
    tmp_path, caplog, name, kwargs, build_reference
):
    torch.manual_seed(0)
    reference = randomised(build_reference())
    path = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), path)
    model = create_model(name, pretrained=path, **kwargs).eval()
    assert "classifier" not in caplog.text  # the head loaded too: nothing was left out
    assert all(v.item() == 7 for k, v in model.state_dict().items() if "num_batches" in k)
    # In float64: random weights give logits in the hundreds, where float32 rounding alone
    # comes near 1e-4; any real difference in the computation is far larger.
    # 40x40: maps of 10, 5, 3 and 2 pixels, so every 3x3 tap counts and odd sizes are pooled
    x = torch.randn(1, 3, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        expected, logits = reference.double()(x), model.double()(x)
    assert (logits - expected).abs().max().item() < 1e-4


def test_file_without_num_batches_tracked_loads(tmp_path):
    """Files written by PyTorch < 0.4.1 have no BN counters: they start at 0."""
    torch.manual_seed(0)
    source = randomised(create_model("resnet20"))
    old = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(old, path)
    model = create_model("resnet20", pretrained=path).eval()
    counters = [v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert len(counters) == 19 and all(c.item() == 0 for c in counters)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    del old["layer2.0.bn1.running_var"]  # any other missing key is still refused, by name
    torch.save(old, path)
    with pytest.raises(DeepresError, match="missing layer2.0.bn1.running_var\\)"):
        create_model("resnet20", pretrained=path)


# Peak resident memory added by one training step of pre-activation ResNet-1001 on two CIFAR
# images, after a warm-up step (so gradient buffers and lazily imported code are already
# there). Measured on this project's CPU machine (torch 2.14): 120 MiB with checkpointing
# (the 333 block inputs alone are 97 MiB) and 320 MiB without, which fails this bound.
MEMORY_BOUND_MIB = 224
STEP = textwrap.dedent(
    """
    import sys, torch
    from deepres import create_model

    def kib(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field))

    torch.set_num_threads(1)
    model = create_model("preact_resnet1001").train()
    model.set_grad_checkpointing(sys.argv[1] == "on")

    def step(x):
        y = torch.zeros(len(x), dtype=torch.long)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    step(torch.randn(1, 3, 8, 8))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident size (VmHWM) starts again from the current one
    before = kib("VmRSS:")
    step(torch.randn(2, 3, 32, 32))
    print((kib("VmHWM:") - before) / 1024)
    """
)


def peak_step_memory_mib(checkpointing: bool) -> float:
    # Large freed buffers go straight back to the system, so resident memory follows the
    # tensors that are alive rather than what the allocator keeps for later.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    mode = "on" if checkpointing else "off"
    run = subprocess.run(
        [sys.executable, "-c", STEP, mode], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return float(run.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_preact_resnet1001_trains_within_the_memory_bound_with_checkpointing():
    on, off = (peak_step_memory_mib(checkpointing=c) for c in (True, False))
    assert on < MEMORY_BOUND_MIB < off, (on, off)  # with checkpointing only
    assert on < 0.6 * off, (on, off)  # checkpointing is what brings it down
