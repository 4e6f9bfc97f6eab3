"""nres.calib: CCD processing, cosmic rays, calibration stacking and calibration selection.

Public API: :func:`process_ccd` (one fused numba pass) and its individual steps, :func:`stack`
(sigma-clipped combination, from memory or row slabs of files), :func:`flag_cosmic_rays`,
:func:`fill_masked`, and
the selection rules in :mod:`nres.calib.select`.
"""

from . import ccd, select
from .ccd import *  # noqa: F403 -- the CCD steps, listed once in ccd.__all__
from .cosmic import COSMIC_METHODS, fill_masked, flag_cosmic_rays
from .groups import fiber_state, group_by_fiber_state
from .overscan import OVERSCAN_MODES, overscan_level
from .sections import parse_section
from .stack import MIN_FRAMES, STACK_METHODS, stack

__all__ = [
    *ccd.__all__,
    "overscan_level",
    "OVERSCAN_MODES",
    "parse_section",
    "stack",
    "group_by_fiber_state",
    "fiber_state",
    "flag_cosmic_rays",
    "fill_masked",
    "COSMIC_METHODS",
    "select",
    "MIN_FRAMES",
    "STACK_METHODS",
]
