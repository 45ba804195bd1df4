"""One CPU thread for these tests: the machines that run them are shared, and PyTorch with
more threads than free cores runs several times slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
