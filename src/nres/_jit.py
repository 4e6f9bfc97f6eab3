"""The one place that sets numba options for every kernel in nres.

Rationale
---------
- ``cache=True``: compiled kernels are written next to the source so a second Python process
  starts warm. The cache is invalidated when the file defining a kernel changes, so every
  kernel keeps its jitted callees in the same ``_kernels.py``.
- ``nogil=True``: batch scripts may call kernels from threads.
- ``error_model="numpy"``: division by zero gives inf/nan like numpy instead of raising, so
  kernels behave like their numpy references (tests compare them).
- ``fastmath``: only :data:`JIT_FAST`, and only for element-wise loops. Never for reductions,
  sums of weights, least squares or correlation accumulators, where reassociation changes the
  answer at the level that matters for m/s radial velocities.
- ``parallel``: :data:`JIT_PARALLEL` is for kernels that ``prange`` over independent outputs
  (orders, fibers, columns, pixel rows). Batch workers set one numba thread each
  (:func:`set_num_threads`).

Kernels use these decorators, never literal options:
``tests/test_conventions.py::test_jit_options_only_in_jit_module`` greps the package for
``cache=``/``fastmath=``/``parallel=True``/``@njit(`` outside this module.
"""

from __future__ import annotations

import numba

__all__ = ["JIT", "JIT_FAST", "JIT_PARALLEL", "set_num_threads", "njit", "njit_fast", "njit_parallel"]

JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
JIT_FAST = {**JIT, "fastmath": True}
JIT_PARALLEL = {**JIT, "parallel": True}


def njit(func=None):
    """``numba.njit`` with :data:`JIT` options; usable as ``@njit`` or ``@njit()``."""
    if func is None:
        return numba.njit(**JIT)
    return numba.njit(**JIT)(func)


def njit_fast(func=None):
    """``numba.njit`` with :data:`JIT_FAST` (element-wise loops only)."""
    if func is None:
        return numba.njit(**JIT_FAST)
    return numba.njit(**JIT_FAST)(func)


def njit_parallel(func=None):
    """``numba.njit`` with :data:`JIT_PARALLEL` (``prange`` over independent outputs only)."""
    if func is None:
        return numba.njit(**JIT_PARALLEL)
    return numba.njit(**JIT_PARALLEL)(func)


def set_num_threads(n: int) -> None:
    """Set the number of numba threads (batch workers use 1)."""
    numba.set_num_threads(int(n))
