"""Shared fixtures: small real image folders copied from ../shared/data, a private cache."""

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DEEPRES_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def copy_subset(source: Path, dest: Path, per_class: int, splits=("train", "test")) -> Path:
    """A small image-folder tree with the first ``per_class`` real images of each class."""
    if not source.is_dir():
        pytest.skip(f"{source} is not here (see ../shared/data/README.md)")
    for split in splits:
        for class_dir in sorted((source / split).iterdir()):
            target = dest / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                shutil.copy(image, target / image.name)
    return dest


@pytest.fixture(scope="session")
def cifar_small(tmp_path_factory) -> Path:
    """60 real CIFAR-10 JPEGs per class for training, 20 per class for testing."""
    dest = tmp_path_factory.mktemp("cifar-small")
    copy_subset(SHARED_DATA / "cifar10-jpeg", dest, 60, ("train",))
    test = dest / "test"
    copy_subset(SHARED_DATA / "cifar10-jpeg", dest / "t", 20, ("test",))
    shutil.move(dest / "t" / "test", test)
    return dest


@pytest.fixture(scope="session")
def two_runs(cifar_small, tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny real runs (ResNet-8, one epoch) on the same real CIFAR images, seeds 1 and 2:
    members of an ensemble."""
    from deepres.cli import main

    root = tmp_path_factory.mktemp("two-runs")
    options = ["--model", "resnet8", "--data", str(cifar_small), "--epochs", "1",
               "--batch-size", "50", "--train-subset", "20", "--threads", "1",
               "--progress", "off"]  # fmt: skip
    for seed in (1, 2):
        out = root / f"seed{seed}"
        assert main(["train", *options, "--seed", str(seed), "--out", str(out)]) == 0
    return root / "seed1", root / "seed2"
