"""The single registry of pixel-quality flag bits, and the flags -> mask helper.

Every frame and spectrum in nres carries a uint16 ``flags`` array (the reasons) beside its boolean
``mask`` (True = bad). The mask is always derived from the flags with :func:`flags_to_mask`, so the
two never disagree. Bits are combined with ``|``; a pixel may carry several reasons.

>>> from nres.flags import Flag, flags_to_mask, describe
>>> import numpy as np
>>> f = np.array([0, Flag.SATURATED | Flag.BLEED], dtype=np.uint16)
>>> flags_to_mask(f).tolist()
[False, True]
>>> describe(f[1])
['SATURATED', 'BLEED']
"""

from __future__ import annotations

import enum

import numpy as np

from .errors import InvalidParameterError

__all__ = ["Flag", "FLAG_DTYPE", "flags_to_mask", "describe", "add_flag", "empty_flags", "INFORMATIONAL"]

FLAG_DTYPE = np.uint16


class Flag(enum.IntFlag):
    """Bit flags of pixel quality (uint16). Values are fixed forever: they are written to disk."""

    BAD_PIXEL = 1 << 0  #: bad pixel map, dead/hot column
    SATURATED = 1 << 1  #: raw value at or above the camera's SATURATE level
    NONLINEAR = 1 << 2  #: raw value above MAXLIN (non-linear regime), below saturation
    COSMIC_RAY = 1 << 3  #: cosmic-ray hit (single-frame detection or rejected in extraction)
    BLEED = 1 << 4  #: charge bleeding along a column from a saturated pixel
    ORDER_EDGE = 1 << 5  #: near the end of an order, or the trace leaves the detector
    TELLURIC = 1 << 6  #: inside a telluric absorption band (RV masks)
    NO_WEIGHT = 1 << 7  #: no usable data (zero weight, no survivors in a stack, zero profile)
    NONFINITE = 1 << 8  #: NaN or inf in the input
    OUTLIER = 1 << 9  #: rejected as an outlier by a fit (other than a cosmic ray)
    BAD_WAVELENGTH = 1 << 10  #: in a known bad-wavelength region (the original's badlams)
    OFF_DETECTOR = 1 << 11  #: outside the detector or the frame's window
    LOW_SIGNAL = 1 << 12  #: signal too low to be useful (e.g. blue hook, blaze edge)


#: Flags that describe a pixel without making it bad by default (kept in ``flags``, but
#: :func:`flags_to_mask` ignores them unless asked). NONLINEAR data are still usable.
INFORMATIONAL = Flag.NONLINEAR


def empty_flags(shape) -> np.ndarray:
    """A zeroed flags array of the given shape and dtype uint16."""
    return np.zeros(shape, dtype=FLAG_DTYPE)


def flags_to_mask(flags, *, ignore: int | Flag = INFORMATIONAL) -> np.ndarray:
    """Boolean mask (True = bad) from a flags array.

    Parameters
    ----------
    flags : array_like of int
        Flag bits (any shape).
    ignore : int or Flag, optional
        Bits that do not make a pixel bad. Default :data:`INFORMATIONAL` (non-linear).

    Returns
    -------
    mask : ndarray of bool, same shape as ``flags``
    """
    flags = np.asarray(flags)
    if flags.dtype.kind not in "ui":
        msg = f"flags: expected an integer array, got dtype {flags.dtype}"
        raise InvalidParameterError(msg)
    return (flags.astype(np.uint32) & ~np.uint32(int(ignore)) & np.uint32(0xFFFF)) != 0


def add_flag(flags: np.ndarray, flag: int | Flag, where) -> np.ndarray:
    """Set ``flag`` in ``flags`` where ``where`` is True (in place) and return ``flags``."""
    flags[np.asarray(where, dtype=bool)] |= FLAG_DTYPE(int(flag))
    return flags


def describe(value: int) -> list[str]:
    """Names of the flags set in one integer value, lowest bit first."""
    value = int(value)
    return [f.name for f in Flag if value & f.value]
