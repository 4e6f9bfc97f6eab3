"""FITS detector sections as 0-based numpy slices: :func:`nres.io.parse_section`, re-exported.

One parser serves the whole package (``nres.io.sections``); this module only adds that an
already parsed ``(slice, slice)`` pair passes through unchanged, so the camera parameters of
:func:`nres.calib.ccd_parameters` may be given either way.
"""

from __future__ import annotations

from ..io.sections import parse_section as _parse_section

__all__ = ["parse_section"]


def parse_section(section, *, name: str = "section") -> tuple[slice, slice]:
    """Convert a FITS section string to 0-based ``(y, x)`` slices (see :func:`nres.io.parse_section`).

    Parameters
    ----------
    section : str or tuple of slice
        ``"[x1:x2,y1:y2]"``, 1-based and inclusive (FITS/IRAF order: x first). A tuple of two
        slices is returned unchanged (already parsed).
    name : str
        Parameter or keyword name used in error messages.

    Returns
    -------
    (slice, slice)
        ``(slice(y1 - 1, y2), slice(x1 - 1, x2))``.

    Raises
    ------
    InvalidParameterError
        Not of that form, or reversed ranges (flipped readout sections are not supported).

    Examples
    --------
    >>> parse_section("[1:4096,1:4096]")
    (slice(0, 4096, None), slice(0, 4096, None))
    """
    if isinstance(section, tuple) and len(section) == 2 and all(isinstance(s, slice) for s in section):
        return section
    return _parse_section(section, name=name)
