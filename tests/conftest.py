"""Session-wide test settings."""

import os


def pytest_configure(config):
    # Under pytest-xdist every worker is a process of its own on this 2-core machine: each running
    # numba's parallel kernels on all cores would oversubscribe them, and a parallel region whose
    # threads are descheduled waits at its barrier (measured: a 2-thread stack took twice as long as
    # a 1-thread one on a busy machine). Workers therefore use one numba thread each, as batch
    # workers do; tests that need several threads set them explicitly.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import numba

        numba.set_num_threads(1)
