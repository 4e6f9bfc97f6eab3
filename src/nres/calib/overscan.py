"""Overscan level of a raw frame: per row, per frame, or the original's trimoscan rule."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from .. import legacy
from ..errors import InvalidParameterError
from . import _kernels

__all__ = ["overscan_level", "OVERSCAN_MODES"]

#: ``"row"``: robust level per row, then a running mean over ``overscan_smooth`` rows;
#: ``"frame"``: one robust level for the frame; ``"idl"``: the original's trimoscan (plain row
#: mean, three 17-row boxcars leaving 8 rows at each end unsmoothed); ``"none"``: no subtraction.
OVERSCAN_MODES = ("row", "frame", "idl", "none")

#: IDL trimoscan: boxcar width and number of passes (idl-calib-trace-extract.md 3.3, 17)
IDL_SMOOTH_WIDTH = 17
IDL_SMOOTH_PASSES = 3

for _fn in ("nres.calib.process_ccd", "nres.calib.subtract_overscan"):
    legacy.register(
        _fn,
        "overscan",
        choices=OVERSCAN_MODES,
        default="row",
        legacy="idl",
        reference="idl-calib-trace-extract.md 3.3",
        summary="trimoscan: non-robust row mean smoothed 3x with a 17-row boxcar, ends unsmoothed",
    )


def _idl_smooth(v: np.ndarray, width: int) -> np.ndarray:
    """IDL ``SMOOTH(v, width)`` with default edges: the first/last width//2 values unchanged."""
    h = width // 2
    out = v.copy()
    if v.size <= 2 * h:
        return out
    c = np.concatenate(([0.0], np.cumsum(v)))
    out[h : v.size - h] = (c[width:] - c[: v.size - width + 1]) / width
    return out


def overscan_level(
    data,
    biassec: tuple[slice, slice],
    *,
    overscan: str = "row",
    sigma: float = 3.0,
    smooth: int = 17,
    data_rows: slice | None = None,
) -> np.ndarray:
    """Overscan level of every raw row (ADU).

    Parameters
    ----------
    data : ndarray, shape (ny_raw, nx_raw)
        Raw frame in ADU, any real dtype (only the overscan region is converted to float64).
    biassec : (slice, slice)
        0-based ``(y, x)`` slices of the overscan region (see :func:`~nres.calib.parse_section`).
    overscan : {"row", "frame", "idl", "none"}
        Rule (see :data:`OVERSCAN_MODES`). Robust levels use one pass of median centre, 1.4826 MAD
        scale, rejection beyond ``sigma`` and the mean of the survivors.
    sigma : float
        Rejection threshold of the robust level, in robust standard deviations.
    smooth : int
        ``"row"`` only: odd width (rows) of the running mean applied to the per-row levels (edges
        use the nearest row); 1 = no smoothing.
    data_rows : slice, optional
        ``"idl"`` only: raw rows of the data section. The original pairs overscan row
        ``biassec.start + r`` with data row ``data_rows.start + r``.

    Returns
    -------
    level : ndarray, shape (ny_raw,)
        Level per raw row; nan for rows outside ``biassec`` (``"row"``/``"idl"``).
    """
    data = np.asarray(data)
    ny = data.shape[0]
    ys, xs = biassec
    region = np.ascontiguousarray(data[ys, xs], dtype=np.float64)  # only the region: not the frame
    if region.size == 0:
        msg = f"biassec: the overscan region {biassec} is empty in a frame of shape {data.shape}"
        raise InvalidParameterError(msg)
    if overscan not in OVERSCAN_MODES:
        msg = f"overscan: expected one of {OVERSCAN_MODES}, got {overscan!r}"
        raise InvalidParameterError(msg)
    level = np.full(ny, np.nan)
    rows = np.arange(ny)[ys]
    if overscan == "none":
        return np.zeros(ny)
    if overscan == "frame":
        return np.full(ny, _kernels._overscan_frame(region, float(sigma)))
    if overscan == "row":
        if int(smooth) < 1 or int(smooth) % 2 == 0:
            msg = f"overscan_smooth: expected an odd number of rows >= 1, got {smooth!r}"
            raise InvalidParameterError(msg)
        per_row = _kernels._overscan_rows(region, np.sort(region, axis=1), float(sigma))
        if smooth > 1:
            per_row = uniform_filter1d(per_row, int(smooth), mode="nearest")
        level[rows] = per_row
        return level
    # "idl": plain mean of each overscan row, three boxcars with IDL's default edges
    o = region.mean(axis=1)
    for _ in range(IDL_SMOOTH_PASSES):
        o = _idl_smooth(o, IDL_SMOOTH_WIDTH)
    target = rows if data_rows is None else np.arange(ny)[data_rows]
    n = min(o.size, target.size)
    level[target[:n]] = o[:n]
    return level
