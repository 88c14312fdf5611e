"""Shared by every test this repository collects, ``tests/`` and the notebooks under nbval alike.

The suite runs under pytest-xdist, one worker per core, and many tests start processes of their own:
the notebook kernels of nbval and of the lesson-check tests, the CLI. Torch gives each process one
thread per core by default, so two workers on two cores ran four or more busy threads, which then
wait on each other: the notebooks ran six times slower. So in each xdist worker, every process the
tests start gets the worker's share of the cores through ``OMP_NUM_THREADS`` (unless it is set
already). The test processes themselves use one torch thread (``tests/conftest.py``).
"""

import os


def pytest_configure():
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))  # set in xdist's workers only
    if workers:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
