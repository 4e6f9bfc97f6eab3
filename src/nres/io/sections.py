"""FITS image sections (``'[x1:x2,y1:y2]'``, 1-based, inclusive) as 0-based numpy slices.

FITS and IRAF write a section x first, 1-based, both ends included; numpy indexes an image (y, x),
0-based, end excluded. ``'[4103:4160,1:4096]'`` (the NRES BIASSEC) is therefore
``(slice(0, 4096), slice(4102, 4160))``.

>>> parse_section("[4103:4160,1:4096]")
(slice(0, 4096, None), slice(4102, 4160, None))
"""

from __future__ import annotations

import re

from ..errors import InvalidParameterError

__all__ = ["parse_section", "section_shape"]

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


def parse_section(section: str, *, name: str = "section") -> tuple[slice, slice]:
    """Convert a FITS section string into ``(y_slice, x_slice)``, 0-based, end excluded.

    Parameters
    ----------
    section : str
        ``'[x1:x2,y1:y2]'`` with 1-based inclusive bounds, ``x1 <= x2`` and ``y1 <= y2``.
    name : str, optional
        What the section is (e.g. ``'BIASSEC'``), used in error messages.

    Returns
    -------
    (slice, slice)
        Row (y) slice and column (x) slice, in numpy order.

    Raises
    ------
    InvalidParameterError
        The string is not of that form, a bound is 0, or a range is reversed (reversed sections,
        used by some multi-amplifier cameras, never occur on NRES and are not supported).
    """
    match = _SECTION.match(str(section).strip()) if isinstance(section, str) else None
    if match is None:
        msg = f"{name}: expected a FITS section '[x1:x2,y1:y2]' (1-based), got {section!r}"
        raise InvalidParameterError(msg)
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if min(x1, x2, y1, y2) < 1 or x1 > x2 or y1 > y2:
        msg = f"{name}: section {section!r} must have 1-based, non-reversed ranges (x1 <= x2, y1 <= y2)"
        raise InvalidParameterError(msg)
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def section_shape(slices: tuple[slice, slice]) -> tuple[int, int]:
    """Shape ``(ny, nx)`` of the region selected by :func:`parse_section`'s output."""
    ys, xs = slices
    return ys.stop - ys.start, xs.stop - xs.start
