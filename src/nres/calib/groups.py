"""Grouping of calibration inputs before stacking: one master per fiber state.

Lamp flats are taken with different fibers lit (OBJECTS ``tung&tung&none`` and
``none&tung&tung``); each fiber state makes its own master flat. :func:`stack` refuses a mixed
set; :func:`group_by_fiber_state` splits a night's flats into the sets to stack.
"""

from __future__ import annotations

from pathlib import Path

from astropy.io import fits
from astropy.nddata import NDData

from ..errors import InvalidInputFileError, InvalidParameterError

__all__ = ["group_by_fiber_state", "fiber_state"]


def fiber_state(item) -> str:
    """The fiber state (header OBJECTS, stripped, lower case) of a frame or FITS file.

    Parameters
    ----------
    item : CCDData or path
        A frame with ``meta``, or a FITS file (primary header, else the first extension's).

    Returns
    -------
    str
        E.g. ``"tung&tung&none"``.

    Raises
    ------
    InvalidParameterError
        No OBJECTS keyword (or not a frame/path).
    InvalidInputFileError
        A path that is missing or not FITS.
    """
    if isinstance(item, NDData):
        header, name = item.meta or {}, "frame"
    elif isinstance(item, str | Path):
        name = str(item)
        if not Path(item).exists():
            raise InvalidInputFileError(item, "file not found")
        try:
            header = fits.getheader(item, 0)
            if "OBJECTS" not in header:
                header = fits.getheader(item, 1)
        except (OSError, IndexError) as err:
            raise InvalidInputFileError(item, f"not a readable FITS file with OBJECTS ({err})") from None
    else:
        msg = f"expected a CCDData or a path, got {type(item).__name__}"
        raise InvalidParameterError(msg)
    value = header.get("OBJECTS")
    if value is None:
        msg = f"{name}: no OBJECTS keyword (fiber state, e.g. 'tung&tung&none')"
        raise InvalidParameterError(msg)
    return str(value).strip().lower()


def group_by_fiber_state(frames_or_paths) -> dict[str, list]:
    """Split calibration inputs by fiber state (OBJECTS), keeping their order.

    Parameters
    ----------
    frames_or_paths : sequence of CCDData or of paths

    Returns
    -------
    dict
        Fiber state -> list of the inputs with it, in input order; stack each list on its own
        (``{s: stack(g) for s, g in group_by_fiber_state(flats).items()}``).

    Raises
    ------
    InvalidParameterError
        An input without OBJECTS. Nothing is grouped partially.
    """
    groups: dict[str, list] = {}
    for item in frames_or_paths:
        groups.setdefault(fiber_state(item), []).append(item)
    return groups
