"""nres.sim: synthetic NRES frames and extracted spectra with their truth.

``simulate`` makes a 2-D frame (BIAS, DARK, LAMPFLAT, DOUBLE, TARGET) in memory;
``simulate_extracted`` makes a stellar spectrum at the extracted level; ``simulate_extracted_arc`` makes an extracted ThAr arc; ``StellarSpectrum`` is
the analytic stellar template; ``Truth`` holds the known answers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "simulate": "core",
    "SimConfig": "config",
    "simulate_extracted": "extracted",
    "simulate_extracted_arc": "extracted_arc",
    "StellarSpectrum": "star",
    "Truth": "truth",
    "write_raw": "raw_file",
    "raw_window": "raw_file",
    "raw_filename": "raw_file",
    "simulate_night": "night",
    "NightTarget": "night",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    msg = f"module 'nres.sim' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
