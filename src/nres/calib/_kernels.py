"""Numba kernels of nres.calib: the fused CCD pass, overscan levels and the clipped stack.

Kernels see only contiguous float64/int64/bool arrays and scalars, with one exception: the raw
frame of ``_process`` is read in its own integer dtype (:data:`RAW_DTYPES`), because a float64 copy
of a 4108 x 4160 frame costs more than half the fused pass. The uint16 flags are an output. The
public wrappers in ``ccd.py``, ``overscan.py`` and ``stack.py`` validate, coerce and unpack.
Integer codes:

- median rule: 0 = mean of the two middle values for even N, 1 = the original's upper-middle value
- stack method: 0 = sigma clip, 1 = median, 2 = mean
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit, njit_parallel

# flag bits (copied as literals: a kernel must not read module globals of another module;
# tests/calib/test_kernels.py checks them against nres.flags.Flag)
_BAD_PIXEL = 1
_SATURATED = 2
_NONLINEAR = 4
_BLEED = 16
_NONFINITE = 256

MEDIAN_EXACT = 0
MEDIAN_IDL = 1
METHOD_CLIP = 0
METHOD_MEDIAN = 1
METHOD_MEAN = 2

# 1.4826 = 1 / Phi^-1(3/4): MAD -> Gaussian sigma (astropy's mad_std uses the same constant)
_MAD_TO_SIGMA = 1.482602218505602

#: raw dtypes ``_process`` reads directly (real NRES frames are uint16, the simulator's int32);
#: the wrapper converts any other dtype to float64
RAW_DTYPES = (np.float64, np.uint16, np.int32)


@njit
def _insertion_sort(a, n):
    """Sort a[:n] in place (n is small: the number of frames in a stack)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@njit
def _median_sorted(a, n, rule):
    """Median of sorted a[:n] (n >= 1)."""
    h = n // 2
    if n % 2 == 1 or rule == MEDIAN_IDL:
        return a[h]
    return 0.5 * (a[h - 1] + a[h])


@njit
def _clipped_mean_sorted(values, srt, sigma):
    """Median centre, 1.4826 MAD scale, reject |x - c| > sigma * scale, mean of the rest.

    ``srt`` is ``values`` sorted as numpy sorts (-inf first; +inf, then NaN last), so the finite
    values are one run of it. Non-finite values are ignored; the kept values are summed in their
    input order. Returns (mean, n_kept); (nan, 0) if no finite value.
    """
    n = srt.size
    lo = 0
    while lo < n and srt[lo] == -np.inf:
        lo += 1
    hi = lo
    while hi < n and np.isfinite(srt[hi]):
        hi += 1
    m = hi - lo
    if m == 0:
        return np.nan, 0
    fin = srt[lo:hi]
    centre = _median_sorted(fin, m, MEDIAN_EXACT)
    # _mad_sorted equals the median of |values - centre| exactly (tested), without a second sort
    thresh = sigma * _MAD_TO_SIGMA * _mad_sorted(fin, m, centre)
    s = 0.0
    k = 0
    for i in range(values.size):
        v = values[i]
        if np.isfinite(v) and abs(v - centre) <= thresh:
            s += v
            k += 1
    return s / k, k


@njit
def _overscan_rows(region, sorted_rows, sigma):
    """Per-row clipped mean of an overscan region (ny, nbias) -> (ny,).

    ``sorted_rows = np.sort(region, axis=1)``: numpy's vectorised sort of ~60-value rows is ~5x
    faster than sorting them here, which was most of this kernel's time. Serial: 4096 rows take
    0.6 ms on one thread, and a parallel loop took 7 ms on the loaded 2-core machine (fork/join).
    """
    ny = region.shape[0]
    out = np.empty(ny)
    for y in range(ny):
        out[y] = _clipped_mean_sorted(region[y], sorted_rows[y], sigma)[0]
    return out


@njit
def _overscan_frame(region, sigma):
    """Clipped mean of a whole overscan region -> scalar."""
    values = region.ravel()
    return _clipped_mean_sorted(values, np.sort(values), sigma)[0]


# bits that make a pixel bad: everything but NONLINEAR (nres.flags.INFORMATIONAL; tested)
_MASK_BITS = 0xFFFF & ~_NONLINEAR


@njit
def _process_columns(y, x0, x1, shift, raw, ry, lev, tx0, scalars, masters, has, outputs):
    """Columns x0:x1 of trimmed row y of the fused pass (raw pixel ``raw[ry, tx0 + x - shift]``).

    Returns the number of saturated pixels. The loop has no branch that varies along the row (the
    legacy last column is a separate call with ``shift=1``), so LLVM vectorises it; a per-pixel
    column test made the whole pass 4x slower.
    """
    gain, poisson_factor, var_const, exptime, saturation, max_linear = scalars
    bias, bias_var, dark, dark_var, bpm, bias_mask, dark_mask = masters
    has_bias, has_bias_var, has_dark, has_dark_var, has_bpm, has_bias_mask, has_dark_mask = has
    data, var, flags, mask = outputs
    nsat = 0
    for x in range(x0, x1):
        r = float(raw[ry, tx0 + x - shift])
        e = (r - lev) * gain
        v = 0.0
        if has_bias:
            e -= bias[y, x]
        if has_bias_var:
            v += bias_var[y, x]
        v += poisson_factor * max(e, 0.0) + var_const
        if has_dark:
            e -= exptime * dark[y, x]
        if has_dark_var:
            v += exptime * exptime * dark_var[y, x]
        f = 0
        if has_bpm and bpm[y, x]:
            f |= _BAD_PIXEL
        if has_bias_mask and bias_mask[y, x]:
            f |= _BAD_PIXEL
        if has_dark_mask and dark_mask[y, x]:
            f |= _BAD_PIXEL
        if r >= saturation:
            f |= _SATURATED
            nsat += 1
        elif r > max_linear:
            f |= _NONLINEAR
        if not (np.isfinite(e) and np.isfinite(v)):
            f |= _NONFINITE
        data[y, x] = e
        var[y, x] = v
        flags[y, x] = f
        mask[y, x] = (f & _MASK_BITS) != 0
    return nsat


@njit_parallel
def _process(
    raw,
    level,
    ty0,
    tx0,
    gain,
    poisson_factor,
    var_const,
    exptime,
    bias,
    has_bias,
    bias_var,
    has_bias_var,
    bias_mask,
    has_bias_mask,
    dark,
    has_dark,
    dark_var,
    has_dark_var,
    dark_mask,
    has_dark_mask,
    bpm,
    has_bpm,
    saturation,
    max_linear,
    bleed_level,
    bleed_pad,
    copy_last_column,
    data,
    var,
    flags,
    mask,
):
    """The fused CCD pass over the trimmed region of ``raw`` (ADU), written into the outputs.

    ``raw`` is read in its own dtype (float64, uint16 or int32: no float copy of the frame);
    ``level`` is the overscan level per raw row (ADU); the trimmed region is ``raw[ty0:ty0+ny,
    tx0:tx0+nx]`` with (ny, nx) the shape of the outputs ``data`` (e-), ``var`` (e-^2), ``flags``
    (uint16) and ``mask`` (bool, ``flags_to_mask(flags)``), all overwritten. Masters are (ny, nx),
    or (1, 1) dummies when their ``has_*`` is False; dark in e-/s, its variance in (e-/s)^2; a
    masked master pixel or a bpm pixel is BAD_PIXEL. The read-noise/Poisson term is
    ``poisson_factor * max(signal, 0) + var_const`` (the wrapper sets both for the chosen
    formula), signal = bias-subtracted electrons before the dark. The caller allocates the
    outputs: numpy asks the kernel for huge pages on large arrays and numba's allocator does not;
    the page faults of four fresh 4096^2 outputs cost more than the arithmetic.
    """
    ny, nx = data.shape
    copy = copy_last_column and nx > 1
    nmain = nx - 1 if copy else nx
    scalars = (gain, poisson_factor, var_const, exptime, saturation, max_linear)
    masters = (bias, bias_var, dark, dark_var, bpm, bias_mask, dark_mask)
    has = (has_bias, has_bias_var, has_dark, has_dark_var, has_bpm, has_bias_mask, has_dark_mask)
    outputs = (data, var, flags, mask)
    row_sat = np.zeros(ny, dtype=np.bool_)
    for y in prange(ny):
        ry = ty0 + y
        lev = level[ry]
        nsat = _process_columns(y, 0, nmain, 0, raw, ry, lev, tx0, scalars, masters, has, outputs)
        if copy:  # legacy: the last column repeats the raw column before it
            nsat += _process_columns(y, nmain, nx, 1, raw, ry, lev, tx0, scalars, masters, has, outputs)
        row_sat[y] = nsat > 0
    _flag_bleed(raw, ty0, tx0, flags, mask, row_sat, bleed_level, bleed_pad, copy_last_column)


@njit
def _flag_bleed(raw, ty0, tx0, flags, mask, row_sat, bleed_level, bleed_pad, copy_last_column):
    """Flag BLEED (and mask) along columns from saturated pixels, in place.

    From each saturated pixel, walk up and down its column while the raw value stays above
    ``bleed_level``; those pixels and ``bleed_pad`` more beyond each end are BLEED (saturated
    pixels themselves are not). The saturated pixels are collected from the rows marked in
    ``row_sat`` (read along rows) and grouped by column, so the walks start only where there is
    saturation and a frame without it costs nothing. Serial: a simulated arc frame has a few
    hundred saturated pixels and the walks take well under a millisecond, less than one thread
    fork/join of a parallel loop on a loaded machine (measured).
    """
    ny, nx = flags.shape
    sat_rows = np.flatnonzero(row_sat)
    if sat_rows.size == 0:
        return
    start = np.zeros(nx + 1, dtype=np.int64)  # saturated pixels of column x: ys[start[x]:start[x+1]]
    for k in range(sat_rows.size):
        y = sat_rows[k]
        for x in range(nx):
            if flags[y, x] & _SATURATED:
                start[x + 1] += 1
    for x in range(nx):
        start[x + 1] += start[x]
    ys = np.empty(start[nx], dtype=np.int64)
    fill = start[:nx].copy()
    for k in range(sat_rows.size):
        y = sat_rows[k]
        for x in range(nx):
            if flags[y, x] & _SATURATED:
                ys[fill[x]] = y
                fill[x] += 1
    for x in range(nx):
        rx = tx0 + x
        if copy_last_column and x == nx - 1 and nx > 1:
            rx -= 1
        for k in range(start[x], start[x + 1]):
            y = ys[k]
            for step in (-1, 1):
                yy = y + step
                while 0 <= yy < ny and not flags[yy, x] & _SATURATED and raw[ty0 + yy, rx] > bleed_level:
                    flags[yy, x] |= _BLEED
                    mask[yy, x] = True
                    yy += step
                for _ in range(bleed_pad):
                    if 0 <= yy < ny and not flags[yy, x] & _SATURATED:
                        flags[yy, x] |= _BLEED
                        mask[yy, x] = True
                        yy += step
                    else:
                        break


@njit
def _mad_sorted(srt, n, centre):
    """Median of |srt[:n] - centre| for sorted srt, without a second sort.

    The deviations below the centre (read downwards) and above it (read upwards) are two sorted
    runs; merging them up to the middle rank gives the median in O(n).
    """
    s = 0
    while s < n and srt[s] < centre:
        s += 1
    i = s - 1
    j = s
    lo_rank = (n - 1) // 2
    hi_rank = n // 2
    lo = 0.0
    d = 0.0
    for t in range(hi_rank + 1):
        if j >= n or (i >= 0 and centre - srt[i] <= srt[j] - centre):
            d = centre - srt[i]
            i -= 1
        else:
            d = srt[j] - centre
            j += 1
        if t == lo_rank:
            lo = d
    return 0.5 * (lo + d)


@njit
def _gather(slab, vslab, j, data, var, mask, has_mask, y0, scale):
    """Copy rows y0:y0+k of one input into column j of a pixel-major slab (k, nx, n), in place.

    ``slab[r, x, j] = data[y0 + r, x] * scale`` and ``vslab[...] = var * scale^2``; an input that
    is masked or whose value or variance is not finite is stored as nan (left out of the stack).
    Serial: it is memory-bound and called once per input and slab, so a parallel launch (a thread
    barrier per call) costs more than it gains, badly so on a loaded machine.
    """
    k = slab.shape[0]
    nx = slab.shape[1]
    s2 = scale * scale
    for r in range(k):
        y = y0 + r
        for x in range(nx):
            d = data[y, x] * scale
            v = var[y, x] * s2
            if not (np.isfinite(d) and np.isfinite(v)) or (has_mask and mask[y, x]):
                d = np.nan
            slab[r, x, j] = d
            vslab[r, x, j] = v


@njit_parallel
def _stack_slab(slab, vslab, sigma, method, rule, out, outvar, ngood, y0):
    """Combine a pixel-major slab (k, nx, n) along its last axis into rows y0:y0+k of the outputs.

    Values that are not finite are left out before any statistic. Sigma clip: centre = median,
    scale = 1.4826 MAD about it, reject |x - c| > sigma * scale (one pass), mean of the survivors,
    variance = sum of their variances / N_good^2. Median: variance = pi/2 times the variance of
    the mean (Gaussian asymptotic efficiency). Mean: all valid inputs. ``out``/``outvar`` are nan
    and ``ngood`` 0 where nothing survives. Parallel over rows; no allocation per pixel.
    """
    k, nx, n = slab.shape
    for r in prange(k):
        y = y0 + r
        vals = np.empty(n)
        vv = np.empty(n)
        srt = np.empty(n)
        for x in range(nx):
            m = 0
            for i in range(n):
                d = slab[r, x, i]
                if np.isfinite(d):
                    vals[m] = d
                    vv[m] = vslab[r, x, i]
                    m += 1
            if m == 0:
                out[y, x] = np.nan
                outvar[y, x] = np.nan
                ngood[y, x] = 0
                continue
            if method == METHOD_MEAN:
                s = 0.0
                sv = 0.0
                for i in range(m):
                    s += vals[i]
                    sv += vv[i]
                out[y, x] = s / m
                outvar[y, x] = sv / (m * m)
                ngood[y, x] = m
                continue
            for i in range(m):
                srt[i] = vals[i]
            _insertion_sort(srt, m)
            centre = _median_sorted(srt, m, rule)
            if method == METHOD_MEDIAN:
                sv = 0.0
                for i in range(m):
                    sv += vv[i]
                out[y, x] = centre
                outvar[y, x] = 0.5 * np.pi * sv / (m * m)
                ngood[y, x] = m
                continue
            thresh = sigma * _MAD_TO_SIGMA * _mad_sorted(srt, m, centre)
            s = 0.0
            sv = 0.0
            g = 0
            for i in range(m):
                if abs(vals[i] - centre) <= thresh:
                    s += vals[i]
                    sv += vv[i]
                    g += 1
            ngood[y, x] = g
            if g == 0:  # only possible with a nan threshold (sigma = nan)
                out[y, x] = np.nan
                outvar[y, x] = np.nan
            else:
                out[y, x] = s / g
                outvar[y, x] = sv / (g * g)


def _warmup():
    """Compile every kernel of nres.calib on tiny inputs."""
    rng = np.random.default_rng(0)
    raw = rng.normal(100.0, 5.0, (6, 8))
    raw[2, 3] = 1e6
    level = _overscan_rows(np.ascontiguousarray(raw[:, 6:]), np.sort(raw[:, 6:], axis=1), 3.0)
    _overscan_frame(np.ascontiguousarray(raw[:, 6:]), 3.0)
    one = np.zeros((1, 1))
    no = np.zeros((1, 1), dtype=np.bool_)
    for dtype in RAW_DTYPES:
        out = (np.empty((6, 6)), np.empty((6, 6)), np.empty((6, 6), np.uint16), np.empty((6, 6), np.bool_))
        masters = (one, False, one, False, no, False) * 2 + (no, False)
        _process(raw.astype(dtype), level, 0, 0, 1.0, 1.0, 25.0, 1.0, *masters, 1e5, 9e4, 9e4, 1, False, *out)
    img = rng.normal(0.0, 1.0, (2, 2))
    slab = np.empty((2, 2, 3))
    vslab = np.empty((2, 2, 3))
    for j in range(3):
        _gather(slab, vslab, j, img, np.ones((2, 2)), np.zeros((1, 1), dtype=np.bool_), False, 0, 1.0)
    out, outvar, ngood = np.empty((2, 2)), np.empty((2, 2)), np.empty((2, 2), np.int64)
    _stack_slab(slab, vslab, 3.0, METHOD_CLIP, MEDIAN_EXACT, out, outvar, ngood, 0)
