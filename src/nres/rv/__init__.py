"""nres.rv: barycentric correction, templates and line masks, radial velocities.

>>> import nres.rv as rv
>>> result = rv.measure(spec, template, method="template")        # doctest: +SKIP
"""

from __future__ import annotations

from .barycentric import BarycentricCorrection, barycentric_correction, flux_weighted_correction
from .masks import LineMask
from .measure import HEADER_KEYWORDS, measure
from .result import RVResult
from .template import Template

__all__ = [
    "BarycentricCorrection",
    "barycentric_correction",
    "flux_weighted_correction",
    "LineMask",
    "Template",
    "measure",
    "RVResult",
    "HEADER_KEYWORDS",
]
