"""nres.rv: barycentric correction, templates and line masks, radial velocities.

>>> import nres.rv as rv
>>> result = rv.measure(spec, template, method="template")        # doctest: +SKIP
"""

from __future__ import annotations

from .barycentric import BarycentricCorrection, barycentric_correction, flux_weighted_correction
from .continuum import continuum, normalize
from .idl_blocks import blockfit2, combine_blocks, lsqblkfit2
from .idl_ccf import mgbcc
from .masks import LineMask
from .measure import HEADER_KEYWORDS, measure
from .result import RVResult
from .rvmasks import read_badlams, rv_mask, telluric_bands
from .template import Template
from .zero import read_zero, write_zero

__all__ = [
    "BarycentricCorrection",
    "barycentric_correction",
    "flux_weighted_correction",
    "LineMask",
    "Template",
    "measure",
    "RVResult",
    "HEADER_KEYWORDS",
    "continuum",
    "normalize",
    "mgbcc",
    "blockfit2",
    "lsqblkfit2",
    "combine_blocks",
    "rv_mask",
    "telluric_bands",
    "read_badlams",
    "read_zero",
    "write_zero",
]
