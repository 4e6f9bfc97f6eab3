"""nres.calib: CCD processing, cosmic rays, calibration stacking and calibration selection.

Public API: :func:`process_ccd` (one fused numba pass) and its individual steps, :func:`stack`
(sigma-clipped combination, from memory or row slabs of files), :func:`flag_cosmic_rays`, and
the selection rules in :mod:`nres.calib.select`.
"""

from . import select
from .ccd import (
    ccd_parameters,
    flag_pixels,
    gain_correct,
    make_variance,
    process_ccd,
    subtract_bias,
    subtract_dark,
    subtract_overscan,
    trim,
)
from .cosmic import flag_cosmic_rays
from .groups import fiber_state, group_by_fiber_state
from .overscan import OVERSCAN_MODES, overscan_level
from .sections import parse_section
from .stack import MIN_FRAMES, STACK_METHODS, stack

__all__ = [
    "process_ccd",
    "ccd_parameters",
    "subtract_overscan",
    "trim",
    "gain_correct",
    "subtract_bias",
    "make_variance",
    "subtract_dark",
    "flag_pixels",
    "overscan_level",
    "OVERSCAN_MODES",
    "parse_section",
    "stack",
    "group_by_fiber_state",
    "fiber_state",
    "flag_cosmic_rays",
    "select",
    "MIN_FRAMES",
    "STACK_METHODS",
]
