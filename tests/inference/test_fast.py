"""The fast inference path (BatchNorm folded, channels-last, bf16) is exact enough."""

import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from deepres import create_model
from deepres.checkpoints import load_model
from deepres.data import load_split, normalize
from deepres.inference import optimize_for_inference
from deepres.train import resolve_config, train


def test_fast_inference_matches_torchvision_resnet50_on_real_images():
    from tests.conftest import SHARED_DATA

    folder = SHARED_DATA / "imagenette-224" / "val"
    if not folder.is_dir():
        pytest.skip("imagenette-224 is not here")
    files = [sorted(d.iterdir())[0] for d in sorted(folder.iterdir())[:4]]
    images = torch.stack(
        [transforms.functional.pil_to_tensor(Image.open(f).convert("RGB")) for f in files]
    )
    x = normalize(images, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    torch.manual_seed(0)
    reference = torchvision.models.resnet50().eval()
    with torch.no_grad():  # trained-looking BN statistics
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2)
                m.running_mean.uniform_(-0.2, 0.2)
    ours = create_model("resnet50")
    ours.load_state_dict(reference.state_dict())
    fast = optimize_for_inference(ours, dtype="fp32")
    with torch.inference_mode():
        assert (fast(x) - reference(x)).abs().max().item() < 1e-4


def test_bf16_inference_agrees_on_top1(cifar_small, tmp_path):
    out = tmp_path / "run"
    cfg = resolve_config(
        model="resnet20",
        data=str(cifar_small),
        out=str(out),
        epochs=2,
        batch_size=32,
        lr=0.05,
        progress="off",
    )
    train(cfg)
    model, meta = load_model(out)
    data = load_split(str(cifar_small), "test")
    x = normalize(data.images, meta["mean"], meta["std"])
    with torch.inference_mode():
        reference = model(x)
        fp32 = optimize_for_inference(model, dtype="fp32")(x)
        bf16 = optimize_for_inference(model, dtype="bf16")(x)
    assert (fp32 - reference).abs().max().item() < 1e-4
    agree = (bf16.argmax(1) == reference.argmax(1)).float().mean().item()
    assert agree >= 0.995  # 200 images: at most one near-tie may flip
