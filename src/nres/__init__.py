"""nres: reduction of NRES echelle spectra, from raw frames to precise radial velocities.

Importing ``nres`` is cheap: subpackages (``nres.instrument``, ``nres.io``, ``nres.calib``,
``nres.extract``, ``nres.wavecal``, ``nres.rv``, ``nres.sim``, ``nres.pipeline``) load on first
use and no kernel is compiled until it is called. :func:`warmup` compiles every kernel.
"""

from __future__ import annotations

import importlib

from ._version import __version__

__all__ = ["__version__", "warmup", "SUBPACKAGES"]

SUBPACKAGES = ("instrument", "io", "calib", "extract", "wavecal", "rv", "sim", "pipeline")
_LAZY_MODULES = ("errors", "flags", "spectrum", "traces", "doppler", "window", "provenance", "legacy")


def __getattr__(name):
    if name in SUBPACKAGES or name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    msg = f"module 'nres' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__():
    return sorted(set(globals()) | set(SUBPACKAGES) | set(_LAZY_MODULES))


def warmup(*, verbose: bool = False) -> dict[str, float]:
    """Compile every numba kernel of nres on tiny inputs (and fill the on-disk cache).

    Each subpackage with kernels exposes ``_kernels._warmup()``; batch workers call this once so
    the first real frame does not pay the compile time.

    Returns
    -------
    dict
        Subpackage name -> seconds spent.
    """
    import time

    timings = {}
    for sub in ("",) + SUBPACKAGES:
        modname = f"{__name__}.{sub}._kernels" if sub else f"{__name__}._kernels"
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as err:
            if err.name != modname:
                raise
            continue
        t0 = time.perf_counter()
        mod._warmup()
        timings[sub or "nres"] = time.perf_counter() - t0
        if verbose:
            print(f"warmup {sub or 'nres'}: {timings[sub or 'nres']:.2f} s")
    return timings
