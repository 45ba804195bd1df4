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
