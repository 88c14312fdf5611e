"""Shared test set-up: headless figures, and one torch thread per test process.

The tests use small tensors, for which one thread is fastest; and the suite runs under
pytest-xdist with one worker per core, so more threads would only oversubscribe the CPU.
"""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
