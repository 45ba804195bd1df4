"""Shared fixtures: small real image folders copied from ../shared/data, a private cache.

In CI (``CI=true`` in the environment) a skipped test is a failure: a missing dev dependency
(``importorskip``), a missing ``../shared/data`` or any other skip must not turn a broken set-up
into a green run. Locally skips stay allowed, and ``-ra`` names each one's reason."""

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skip into a failure that names the reason, when in CI (xfail stays as it is)."""
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: a skip is a failure here: {skip_reason(report)}\n"
            "(install the dev dependencies with setup.sh and provide ../shared/data; "
            "see ../shared/data/README.md)"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level importorskip skips the whole module at collection
    fail_skip_in_ci(outcome.get_result())


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
def imagenette_small(tmp_path_factory) -> Path:
    """4 real Imagenette photographs (224 px) per class, of its train and val splits."""
    dest = tmp_path_factory.mktemp("imagenette-small")
    return copy_subset(SHARED_DATA / "imagenette-224", dest, 4, ("train", "val"))


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
