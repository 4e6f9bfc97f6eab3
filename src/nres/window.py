"""Windows: frames that are crops of the full trimmed 4096 x 4096 detector.

Convention (fixed once for all of nres): pixel indices are 0-based with pixel centres at integers,
numpy axis order (y, x). A windowed frame carries its origin on the full trimmed detector in its
``meta`` as ``NRESX0``/``NRESY0`` (full-detector index of its pixel [0, 0]) and, for image viewers,
the IRAF-style ``LTV1 = -x0``, ``LTV2 = -y0``. Traces, models and spectra are always expressed in
full-detector coordinates, so a windowed reduction equals the same crop of a full reduction.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidParameterError

__all__ = ["window_origin", "with_window_origin", "full_detector_grid", "DETECTOR_SHAPE"]

#: Shape (ny, nx) of the trimmed NRES detector.
DETECTOR_SHAPE = (4096, 4096)


def window_origin(meta) -> tuple[int, int]:
    """Origin ``(y0, x0)`` of a frame on the full trimmed detector (``(0, 0)`` if not windowed).

    Parameters
    ----------
    meta : dict-like or None
        A frame's ``meta`` (FITS header or dict).
    """
    if meta is None:
        return 0, 0
    y0 = meta.get("NRESY0", None)
    x0 = meta.get("NRESX0", None)
    if y0 is None and "LTV2" in meta:
        y0 = -float(meta["LTV2"])
    if x0 is None and "LTV1" in meta:
        x0 = -float(meta["LTV1"])
    y0 = 0 if y0 is None else y0
    x0 = 0 if x0 is None else x0
    if float(y0) != int(y0) or float(x0) != int(x0):
        msg = f"window origin: expected integer NRESY0/NRESX0 (or LTV2/LTV1), got ({y0}, {x0})"
        raise InvalidParameterError(msg)
    return int(y0), int(x0)


def with_window_origin(meta, y0: int, x0: int):
    """Return a copy of ``meta`` (dict or header) with the window origin set to ``(y0, x0)``."""
    out = {} if meta is None else meta.copy()
    out["NRESY0"] = int(y0)
    out["NRESX0"] = int(x0)
    out["LTV1"] = -int(x0)
    out["LTV2"] = -int(y0)
    return out


def full_detector_grid(shape, meta) -> tuple[np.ndarray, np.ndarray]:
    """Full-detector ``(y, x)`` index vectors of a (possibly windowed) frame of ``shape``."""
    y0, x0 = window_origin(meta)
    ny, nx = shape
    return np.arange(ny) + y0, np.arange(nx) + x0
