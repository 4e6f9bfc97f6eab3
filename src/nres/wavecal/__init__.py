"""nres.wavecal: ThAr line finding, matching, the physical-model start and the wavelength solution.

Public API: :func:`find_lines`, :func:`solve`, :func:`apply_solution`, :class:`WavelengthSolution`,
:class:`LineFlag`; fiber offsets and the TRIPLE (:func:`measure_fiber_offsets`,
:func:`combine_doubles`), drift from the simultaneous ThAr (:func:`measure_drift`);
the original's end-to-end fit for parity (:func:`thar_fitall_legacy`, :func:`fit_idl`, :class:`IDLFit`);
the original's THAR/TRIP files and e91 grids (:func:`read_thar`, :func:`read_trip`,
:func:`compare_idl_wavelengths`).
"""

from .drift import Drift, DriftCorrectedSolution, measure_drift
from .fibers import FiberOffsets, measure_fiber_offsets
from .idl_fit import IDLFit, fit_idl, thar_fitall_legacy
from .idl_products import (
    IDLThar,
    IDLTriple,
    compare_idl_wavelengths,
    read_e91_wavelengths,
    read_thar,
    read_trip,
    recompute_idl_wavelengths,
)
from .lines import LineFlag, find_lines
from .solution import WavelengthSolution, correction_basis
from .solve import Z0_PER_FL, apply_solution, solve
from .triple import combine_doubles

__all__ = [
    "find_lines",
    "LineFlag",
    "solve",
    "apply_solution",
    "WavelengthSolution",
    "correction_basis",
    "Z0_PER_FL",
    "FiberOffsets",
    "measure_fiber_offsets",
    "combine_doubles",
    "Drift",
    "DriftCorrectedSolution",
    "measure_drift",
    "fit_idl",
    "thar_fitall_legacy",
    "IDLFit",
    "IDLThar",
    "IDLTriple",
    "read_thar",
    "read_trip",
    "read_e91_wavelengths",
    "recompute_idl_wavelengths",
    "compare_idl_wavelengths",
]
