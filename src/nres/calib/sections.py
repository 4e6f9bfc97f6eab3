"""FITS detector sections (``BIASSEC``, ``TRIMSEC``, ``DATASEC``) as 0-based numpy slices."""

from __future__ import annotations

import re

from ..errors import InvalidParameterError

__all__ = ["parse_section"]

_SECTION = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


def parse_section(section, *, name: str = "section") -> tuple[slice, slice]:
    """Convert a FITS section string to 0-based ``(y, x)`` slices.

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
    m = _SECTION.match(str(section)) if isinstance(section, str) else None
    if m is None:
        msg = f"{name}: expected a FITS section '[x1:x2,y1:y2]' (1-based, inclusive), got {section!r}"
        raise InvalidParameterError(msg)
    x1, x2, y1, y2 = (int(v) for v in m.groups())
    if x1 < 1 or y1 < 1 or x2 < x1 or y2 < y1:
        msg = f"{name}: expected increasing 1-based ranges, got {section!r}"
        raise InvalidParameterError(msg)
    return slice(y1 - 1, y2), slice(x1 - 1, x2)
