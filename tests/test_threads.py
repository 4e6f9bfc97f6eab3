"""Parallel kernels give the same answer whatever the number of numba threads, and the public
functions can run concurrently from Python threads (kernels are nogil and share no state)."""

import sys
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
from astropy.nddata import CCDData, VarianceUncertainty

from nres import calib
from nres._jit import set_num_threads


def _frames(n=7, shape=(64, 48), seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = rng.normal(1000.0, 7.0, shape)
        d[rng.random(shape) < 0.01] += 5000.0
        out.append(
            CCDData(
                d,
                unit="electron",
                uncertainty=VarianceUncertainty(np.full(shape, 49.0)),
                meta={"OBSTYPE": "BIAS"},
            )
        )
    return out


@pytest.fixture
def two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("numba was started with one thread; this test needs two")
    previous = numba.get_num_threads()
    set_num_threads(2)
    yield
    set_num_threads(previous)


@pytest.fixture
def parallel_stack(monkeypatch):
    """Small test stacks take the parallel kernel (not the serial one meant for small work)."""
    monkeypatch.setattr(sys.modules["nres.calib.stack"], "_SERIAL_MAX_VALUES", 0)


def test_stack_independent_of_thread_count(two_threads, parallel_stack):
    frames = _frames()
    two = calib.stack(frames)
    set_num_threads(1)
    one = calib.stack(frames)
    np.testing.assert_array_equal(one.data, two.data)
    np.testing.assert_array_equal(one.uncertainty.array, two.uncertainty.array)


def test_stack_from_python_threads_gives_identical_results(parallel_stack):
    sets = [_frames(seed=s) for s in range(4)]
    serial = [calib.stack(f).data for f in sets]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda f: calib.stack(f).data, sets))
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)
