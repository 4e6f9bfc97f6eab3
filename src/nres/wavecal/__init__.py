"""nres.wavecal: ThAr line finding, matching, the physical-model start and the wavelength solution.

Public API: :func:`find_lines`, :func:`solve`, :func:`apply_solution`, :class:`WavelengthSolution`,
:class:`LineFlag`.
"""

from .lines import LineFlag, find_lines
from .solution import WavelengthSolution, correction_basis
from .solve import Z0_PER_FL, apply_solution, solve

__all__ = [
    "find_lines",
    "LineFlag",
    "solve",
    "apply_solution",
    "WavelengthSolution",
    "correction_basis",
    "Z0_PER_FL",
]
