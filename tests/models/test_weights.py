"""Weight files in the layouts real files use load with no renaming; nothing is unpickled."""

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from deepres import DeepresError, create_model


def _same(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel / DDP
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_prec1": 91.0},
    ],
    ids=["plain", "module-prefix", "state_dict-wrapper", "model-wrapper", "cifar-repo-style"],
)
def test_torch_file_layouts(tmp_path, wrap):
    source = create_model("resnet20")
    path = tmp_path / "w.pth"
    torch.save(wrap(source.state_dict()), path)
    assert _same(create_model("resnet20", pretrained=path), source)


def test_classifier_called_linear_and_safetensors(tmp_path):
    source = create_model("resnet20")
    renamed = {k.replace("fc.", "linear."): v for k, v in source.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(renamed, str(path))
    assert _same(create_model("resnet20", pretrained=path), source)


def test_torchvision_file_loads(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("resnet18", pretrained=path)
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_new_class_count_replaces_only_the_classifier(tmp_path, caplog):
    source = create_model("resnet20")
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    model = create_model("resnet20", pretrained=path, num_classes=3)
    assert model.fc.out_features == 3
    assert torch.equal(model.layer3[2].conv2.weight, source.layer3[2].conv2.weight)
    assert "classifier" in caplog.text and "10 classes" in caplog.text


def test_other_architecture_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "r32.pth"
    torch.save(create_model("resnet32").state_dict(), path)
    with pytest.raises(DeepresError, match="r32.pth.*unexpected layer1.3"):
        create_model("resnet20", pretrained=path)
    with pytest.raises(DeepresError, match="not found"):
        create_model("resnet20", pretrained=tmp_path / "missing.pth")


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(DeepresError, match="evil.pth"):
        create_model("resnet20", pretrained=path)
    assert not marker.exists()
