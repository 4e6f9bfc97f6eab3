"""Jitted kernels of nres.extract (tracing). Plain contiguous arrays in, arrays out."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit, njit_parallel


@njit
def _window_moments(col, good, c, h):
    """Moments of one column about ``c`` over the exact window [c - h, c + h].

    ``col`` (ny,) float64 is treated as a piecewise-constant density (pixel j uniform over
    [j - 0.5, j + 0.5]), so the window edges cut pixels at sub-pixel positions and the moments are
    continuous in ``c`` (no rounding sawtooth). A straight background through the data at
    c - h - 0.5 and c + h + 0.5 (linear interpolation between pixel centres) is subtracted.
    Returns (m0, m1, bad) with m1 the first moment about c, bad = True if the window or its
    background samples leave the column or touch a bad pixel.
    """
    ny = col.shape[0]
    lo = c - h - 0.5
    hi = c + h + 0.5
    jlo = int(np.floor(lo))
    jhi = int(np.ceil(hi))
    if jlo < 0 or jhi > ny - 1:
        return 0.0, 0.0, True
    for j in range(jlo, jhi + 1):
        if not good[j]:
            return 0.0, 0.0, True
    fl = lo - jlo
    bl = col[jlo] * (1.0 - fl) + col[jlo + 1] * fl
    fh = hi - np.floor(hi)
    jh = int(np.floor(hi))
    br = col[jh] if fh == 0.0 else col[jh] * (1.0 - fh) + col[jh + 1] * fh
    mid = 0.5 * (bl + br)
    slope = (br - bl) / (2.0 * h + 1.0)
    m0 = 0.0
    m1 = 0.0
    for j in range(jlo, jhi + 1):
        a = max(j - 0.5, c - h) - c
        b = min(j + 0.5, c + h) - c
        if b <= a:
            continue
        m0 += col[j] * (b - a)
        m1 += col[j] * 0.5 * (b * b - a * a)
    # the background line mid + slope * u integrates to 2 h mid and has first moment 2 h^3 slope / 3
    m0 -= 2.0 * h * mid
    m1 -= 2.0 * h * h * h * slope / 3.0
    return m0, m1, False


@njit_parallel
def _centroid_traces(data, var, good, centers, halfwidth):
    """Flux centroids of every trace in every column, about the current trace estimate.

    Parameters
    ----------
    data, var : (nx, ny) float64
        The image and its variance TRANSPOSED (one contiguous detector column per row), so a
        column is read from contiguous memory.
    good : (nx, ny) bool
        True where a pixel is usable.
    centers : (n_traces, nx) float64
        Current centre (frame rows) per column; NaN = skip.
    halfwidth : (n_traces,) float64
        Half height (px) of the centroid window of each trace.

    Returns
    -------
    cen, err, flux : (n_traces, nx) float64
        Centroid (frame rows), its photon-noise error and the window flux; NaN where not measured.
    """
    ntr, nx = centers.shape
    cen = np.full((ntr, nx), np.nan)
    err = np.full((ntr, nx), np.nan)
    flux = np.full((ntr, nx), np.nan)
    for t in prange(ntr):
        h = halfwidth[t]
        for x in range(nx):
            c = centers[t, x]
            if not np.isfinite(c):
                continue
            m0, m1, bad = _window_moments(data[x], good[x], c, h)
            if bad or not m0 > 0.0:
                continue
            d = m1 / m0
            # linear error propagation of d = sum(u f) / sum(f) over the window pixels
            jlo = int(np.floor(c - h + 0.5))
            jhi = int(np.ceil(c + h - 0.5))
            s2 = 0.0
            for j in range(jlo, jhi + 1):
                u = j - c - d
                s2 += u * u * var[x, j]
            cen[t, x] = c + d
            err[t, x] = np.sqrt(s2) / m0
            flux[t, x] = m0
    return cen, err, flux


@njit_parallel
def _centroid_columns(profiles, good, centers, halfwidth):
    """Centroids in a few 1-D profiles: ``profiles`` (ncol, ny), ``centers`` (n, ncol) -> (cen, flux)."""
    n, ncol = centers.shape
    cen = np.full((n, ncol), np.nan)
    flux = np.full((n, ncol), np.nan)
    for t in prange(n):
        for k in range(ncol):
            c = centers[t, k]
            if not np.isfinite(c):
                continue
            m0, m1, bad = _window_moments(profiles[k], good[k], c, halfwidth)
            if bad or not m0 > 0.0:
                continue
            cen[t, k] = c + m1 / m0
            flux[t, k] = m0
    return cen, flux


def _warmup():
    """Compile every kernel on tiny inputs."""
    y = np.arange(40.0)
    col = np.exp(-0.5 * ((y - 20.3) / 1.5) ** 2)
    data = np.ascontiguousarray(np.tile(col, (3, 1)))
    good = np.ones(data.shape, dtype=np.bool_)
    centers = np.full((1, 3), 20.0)
    _centroid_traces(data, data.copy(), good, centers, np.array([5.0]))
    _centroid_columns(data, good, centers, 5.0)
    _window_moments(col, good[0], 20.0, 5.0)
