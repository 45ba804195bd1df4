"""Deploy tests run their models, and the processes they start, on one thread: on the 2
shared cores a 2-thread barrier waits on every op."""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def one_thread_env(tmp_path_factory) -> dict[str, str]:
    """The environment for a `deepres` subprocess with one intra-op thread and the tests'
    private cache (this session fixture is made before the autouse one sets it)."""
    cache = str(tmp_path_factory.getbasetemp() / "cache")
    return {**os.environ, "OMP_NUM_THREADS": "1", "DEEPRES_CACHE": cache}


TRAIN = ["train", "--model", "resnet20", "--epochs", "3", "--batch-size", "20", "--lr", "0.05",
         "--threads", "1", "--progress", "off", "--train-subset", "20", "--seed", "3"]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(cifar_small, tmp_path_factory):
    """A resnet20 trained for three epochs on 200 real CIFAR images (its BatchNorm
    statistics are real, not 0/1; about 20% top-1 on 200 others, predictions of several
    classes), for the runtime tests (test_runtime, test_runtimes, test_auto, ...)."""
    from deepres.cli import main

    out = tmp_path_factory.mktemp("runtime") / "run"
    threads = torch.get_num_threads()
    try:
        assert main([*TRAIN, "--data", str(cifar_small), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def loaded(trained_run):
    """(model, meta) of ``trained_run``."""
    from deepres.checkpoints import load_model

    return load_model(trained_run)


@pytest.fixture(scope="session")
def batch():
    return torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One cache for the tests that export to ONNX: the resnet20 is exported once."""
    return tmp_path_factory.mktemp("runtime-cache")
