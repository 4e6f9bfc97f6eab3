"""Dead (charge-trapping) columns found in a processed frame, for nights without a bad-pixel map.

A dead column keeps a small fraction of the charge from some row to the top of the detector.
Against the smaller of its two neighbouring columns, its pixels are low wherever there is signal;
a normal column is within the noise of its neighbours (traces are nearly horizontal, so neighbours
see the same light; a narrow arc line makes one neighbour brighter, never both dimmer).
:func:`flag_dead_columns` flags, per column, the rows from the first row above which most pixels
with signal are low. It is a recipe-level work-around: ``nres.calib``
takes a bad-pixel map (``bpm=``) when one exists, which is the better source.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData

from ..flags import FLAG_DTYPE, Flag, flags_to_mask

__all__ = ["dead_column_mask", "flag_dead_columns"]


def dead_column_mask(data, variance, good, *, min_snr=20.0, max_ratio=0.3, min_pixels=5, min_fraction=0.8):
    """Boolean (ny, nx) map of pixels in dead columns.

    Parameters
    ----------
    data, variance : ndarray (ny, nx)
        Processed frame (electrons) and its variance.
    good : ndarray of bool (ny, nx)
        Usable pixels.
    min_snr : float
        A pixel is tested where its smaller neighbour exceeds ``min_snr`` times its noise.
    max_ratio : float
        A tested pixel is low below ``max_ratio`` times its smaller neighbour (photon noise at
        ``min_snr`` = 20 moves the ratio by ~0.05, so 0.3 is far from a normal pixel).
    min_pixels : int
        Low pixels needed in a column before it is examined.
    min_fraction : float
        The dead part starts at the first tested row from which this fraction of tested pixels up
        to the top are low.
    """
    data = np.asarray(data, np.float64)
    variance = np.asarray(variance, np.float64)
    good = np.asarray(good, bool)
    ny, nx = data.shape
    out = np.zeros((ny, nx), bool)
    if nx < 3:
        return out
    signal = np.zeros((ny, nx), bool)
    low = np.zeros((ny, nx), bool)
    # blocks of rows keep the temporaries in cache (one full-frame pass per operation cost ~0.5 s
    # on a 4096^2 frame); edge columns have one neighbour only and are never tested
    step = max(1, 65536 // nx)
    with np.errstate(invalid="ignore"):
        for r0 in range(0, ny, step):
            rs = slice(r0, min(r0 + step, ny))
            d = data[rs, 1:-1]
            # the smaller neighbour: a pixel in the wing of a sharp arc line is far below the mean
            # of its neighbours (one of them is the line) but not below both
            nbr = np.minimum(data[rs, :-2], data[rs, 2:])
            ok = good[rs, 1:-1] & np.isfinite(nbr) & np.isfinite(d)
            var = variance[rs, 1:-1]
            noise = np.sqrt(np.maximum(np.where(np.isnan(var), 1.0, var), 1.0))
            sig = ok & (nbr > min_snr * noise)
            signal[rs, 1:-1] = sig
            low[rs, 1:-1] = sig & (d < max_ratio * nbr)
    for x in np.flatnonzero(low.sum(axis=0) >= min_pixels):
        rows = np.flatnonzero(signal[:, x])
        lows = low[rows, x]
        # fraction of low pixels from each tested row up to the top
        frac = np.cumsum(lows[::-1])[::-1] / np.arange(rows.size, 0, -1)
        start = np.flatnonzero((frac >= min_fraction) & lows)
        if start.size and lows[start[0] :].sum() >= min_pixels:
            out[rows[start[0]] :, x] = True
    return out


def flag_dead_columns(frame: CCDData, **options) -> tuple[CCDData, int]:
    """A copy of ``frame`` with dead-column pixels flagged ``BAD_PIXEL`` (and masked).

    Returns the new frame and the number of columns flagged. Options: :func:`dead_column_mask`.
    """
    flags = getattr(frame, "flags", None)
    flags = np.zeros(frame.shape, FLAG_DTYPE) if flags is None else np.array(flags, dtype=FLAG_DTYPE)
    good = ~flags_to_mask(flags)
    if frame.mask is not None:
        good &= ~np.asarray(frame.mask, bool)
    var = frame.uncertainty.array if frame.uncertainty is not None else np.abs(frame.data)
    bad = dead_column_mask(frame.data, var, good, **options)
    flags[bad] |= FLAG_DTYPE(Flag.BAD_PIXEL)
    mask = flags_to_mask(flags) if frame.mask is None else (np.asarray(frame.mask, bool) | bad)
    unc = None if frame.uncertainty is None else frame.uncertainty.__class__(frame.uncertainty.array.copy())
    meta = frame.meta.copy() if frame.meta is not None else {}
    out = CCDData(frame.data.copy(), unit=frame.unit, uncertainty=unc, mask=mask, meta=meta)
    out.flags = flags
    return out, int(bad.any(axis=0).sum())
