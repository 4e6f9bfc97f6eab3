"""nres.sim: synthetic NRES frames and extracted spectra with their truth.

``simulate`` makes a 2-D frame (BIAS, DARK, LAMPFLAT, DOUBLE, TARGET) in memory;
``simulate_extracted`` makes a stellar spectrum at the extracted level; ``simulate_extracted_arc``
makes an extracted ThAr arc; ``StellarSpectrum`` is the analytic stellar template; ``Truth`` holds
the known answers; ``write_raw`` and ``simulate_night`` write raw NRES files and whole nights.
Names load lazily from their modules.
"""

from __future__ import annotations

from .._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
