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
def one_thread_env() -> dict[str, str]:
    """The environment for a `deepres` subprocess with one intra-op thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}
