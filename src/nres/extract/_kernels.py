"""Jitted kernels of nres.extract (tracing). Plain contiguous arrays in, arrays out."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit, njit_parallel


@njit
def _window_moments(img, good, x, c, h):
    """Moments of one column about ``c`` over the exact window [c - h, c + h].

    Column ``x`` of ``img`` (ny, nx) float64 is treated as a piecewise-constant density (pixel j uniform over
    [j - 0.5, j + 0.5]), so the window edges cut pixels at sub-pixel positions and the moments are
    continuous in ``c`` (no rounding sawtooth). A straight background through the data at
    c - h - 0.5 and c + h + 0.5 (linear interpolation between pixel centres), sampled at the pixel
    centres, is subtracted.
    Returns (m0, m1, bad) with m1 the first moment about c, bad = True if the window or its
    background samples leave the column or touch a bad pixel.
    """
    ny = img.shape[0]
    lo = c - h - 0.5
    hi = c + h + 0.5
    jlo = int(np.floor(lo))
    jhi = int(np.ceil(hi))
    if jlo < 0 or jhi > ny - 1:
        return 0.0, 0.0, True
    for j in range(jlo, jhi + 1):
        if not good[j, x]:
            return 0.0, 0.0, True
    fl = lo - jlo
    bl = img[jlo, x] * (1.0 - fl) + img[jlo + 1, x] * fl
    fh = hi - np.floor(hi)
    jh = int(np.floor(hi))
    br = img[jh, x] if fh == 0.0 else img[jh, x] * (1.0 - fh) + img[jh + 1, x] * fh
    slope = (br - bl) / (2.0 * h + 1.0)
    m0 = 0.0
    m1 = 0.0
    for j in range(jlo, jhi + 1):
        a = max(j - 0.5, c - h) - c
        b = min(j + 0.5, c + h) - c
        if b <= a:
            continue
        # the background is sampled at the pixel centre like the data, so a straight background
        # cancels exactly (an analytic line would leave the staircase's -slope/12 per pixel in m1)
        v = img[j, x] - (bl + slope * (j - lo))
        m0 += v * (b - a)
        m1 += v * 0.5 * (b * b - a * a)
    return m0, m1, False


@njit_parallel
def _centroid_traces(data, var, good, centers, halfwidth):
    """Flux centroids of every trace in every column, about the current trace estimate.

    Parameters
    ----------
    data, var : (ny, nx) float64
        The image and its variance (each trace walks along x, so consecutive reads are adjacent).
    good : (ny, nx) bool
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
            m0, m1, bad = _window_moments(data, good, x, c, h)
            if bad or not m0 > 0.0:
                continue
            d = m1 / m0
            # linear error propagation of d = sum(u f) / sum(f) over the window pixels
            jlo = int(np.floor(c - h + 0.5))
            jhi = int(np.ceil(c + h - 0.5))
            s2 = 0.0
            for j in range(jlo, jhi + 1):
                u = j - c - d
                s2 += u * u * var[j, x]
            cen[t, x] = c + d
            err[t, x] = np.sqrt(s2) / m0
            flux[t, x] = m0
    return cen, err, flux


@njit
def _follow_traces(img, var, good, k0, y_start, min_snr, h, max_step, max_miss):
    """Follow traces from column k0 of a column-binned image to both sides.

    img, var (ny, nb) float64, good (ny, nb) bool; y_start (n,) rows at column k0. In each step the
    trace is predicted from its last position and slope, re-centred by the window centroid, and
    accepted if the window flux exceeds ``min_snr`` times its noise and the centre moved less than
    ``max_step``; a trace is dropped after ``max_miss`` misses in a row. Returns (n, nb) rows (NaN
    where not followed).
    """
    ny, nb = img.shape
    n = y_start.size
    ys = np.full((n, nb), np.nan)
    for t in range(n):
        c = y_start[t]
        bad = False
        m0 = 0.0
        for _ in range(3):
            m0, m1, bad = _window_moments(img, good, k0, c, h)
            if bad or not m0 > 0.0:
                break
            c = c + m1 / m0
        if bad or not m0 > 0.0:
            continue
        ys[t, k0] = c
        for step in (1, -1):
            last = ys[t, k0]
            slope = 0.0
            have_slope = False
            miss = 0
            k = k0 + step
            while 0 <= k < nb and miss < max_miss:
                gap = miss + 1
                pred = last + slope * gap
                c = pred
                bad = False
                m0 = 0.0
                for _ in range(3):  # re-centre: one pass from a point off the centre is biased inwards
                    m0, m1, bad = _window_moments(img, good, k, c, h)
                    if bad or not m0 > 0.0:
                        break
                    c = c + m1 / m0
                ok = False
                if not bad and m0 > 0.0:
                    j = int(min(max(pred, 0.0), ny - 1.0))
                    noise = np.sqrt(var[j, k] * (2.0 * h + 1.0))
                    if m0 > min_snr * noise and abs(c - pred) < max_step:
                        ok = True
                if ok:
                    new_slope = (c - last) / gap
                    slope = 0.5 * (slope + new_slope) if have_slope else new_slope
                    have_slope = True
                    ys[t, k] = c
                    last = c
                    miss = 0
                else:
                    miss += 1
                k += step
    return ys


@njit
def _solve_small(g, r):
    """Solve g c = r for a small symmetric positive-definite g (Cholesky; no LAPACK, so the kernel
    compiles fast). g (q, q), r (q,) float64; returns c (q,)."""
    q = r.size
    low = np.zeros((q, q))
    for i in range(q):
        for j in range(i + 1):
            s = g[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            if i == j:
                low[i, i] = np.sqrt(s) if s > 0.0 else 1e-300
            else:
                low[i, j] = s / low[j, j]
    z = np.zeros(q)
    for i in range(q):
        s = r[i]
        for k in range(i):
            s -= low[i, k] * z[k]
        z[i] = s / low[i, i]
    c = np.zeros(q)
    for i in range(q - 1, -1, -1):
        s = z[i]
        for k in range(i + 1, q):
            s -= low[k, i] * c[k]
        c[i] = s / low[i, i]
    return c


@njit
def _fit_clipped(v, y, w, nterm, clip, n_clip):
    """Weighted least-squares fits of many traces on one basis, with iterative sigma clipping.

    Parameters
    ----------
    v : (nx, p) float64
        Basis (e.g. Legendre Vandermonde) at each column.
    y, w : (n, nx) float64
        Samples and weights (w = 0: unusable).
    nterm : (n,) int64
        Number of basis functions used for each trace (<= p; the other coefficients are 0).
    clip : float
        Reject |r| sqrt(w) > clip * 1.4826 * median(|r| sqrt(w)) (recomputed each pass).
    n_clip : int
        Largest number of clipping passes.

    Returns
    -------
    coef : (n, p) float64; used : (n, nx) bool; rms : (n,) float64 (unweighted, of used columns;
    NaN if fewer than p columns are used).
    """
    n, nx = y.shape
    p = v.shape[1]
    coef = np.zeros((n, p))
    used = np.zeros((n, nx), dtype=np.bool_)
    rms = np.full(n, np.nan)
    for t in range(n):  # serial: a parallel build of this kernel compiles ~3x slower
        u = w[t] > 0.0
        q = min(max(nterm[t], 1), p)
        for _ in range(n_clip + 1):
            g = np.zeros((q, q))
            r = np.zeros(q)
            cnt = 0
            for x in range(nx):
                if not u[x]:
                    continue
                cnt += 1
                wx = w[t, x]
                for i in range(q):
                    vi = v[x, i] * wx
                    r[i] += vi * y[t, x]
                    for j in range(i, q):
                        g[i, j] += vi * v[x, j]
            if cnt < q:
                break
            for i in range(q):
                for j in range(i):
                    g[i, j] = g[j, i]
            c = _solve_small(g, r)
            z = np.empty(cnt)
            k = 0
            res = np.empty(nx)
            for x in range(nx):
                f = 0.0
                for i in range(q):
                    f += c[i] * v[x, i]
                res[x] = y[t, x] - f
                if u[x]:
                    z[k] = abs(res[x]) * np.sqrt(w[t, x])
                    k += 1
            zs = np.sort(z)
            med = 0.5 * (zs[(cnt - 1) // 2] + zs[cnt // 2])
            lim = clip * max(1.4826 * med, 1e-12)
            changed = False
            for x in range(nx):
                if u[x] and abs(res[x]) * np.sqrt(w[t, x]) > lim:
                    u[x] = False
                    changed = True
            coef[t, :q] = c
            s = 0.0
            k = 0
            for x in range(nx):
                if u[x]:
                    s += res[x] * res[x]
                    k += 1
            rms[t] = np.sqrt(s / k) if k >= q else np.nan
            if not changed:
                break
        used[t] = u
    return coef, used, rms


@njit
def _bin_columns(data, var, good, bw):
    """Mean of good pixels over bins of ``bw`` columns: (mean, variance of the mean, ok), each
    (ny, nx // bw); ok = at least half the bin's pixels are good (else mean 0, variance inf)."""
    ny, nx = data.shape
    nb = nx // bw
    mean = np.zeros((ny, nb))
    mvar = np.full((ny, nb), np.inf)
    ok = np.zeros((ny, nb), dtype=np.bool_)
    for j in range(ny):  # serial: memory-bound, and a parallel build compiles much slower
        for k in range(nb):
            s = 0.0
            v = 0.0
            n = 0
            for x in range(k * bw, (k + 1) * bw):
                if good[j, x]:
                    s += data[j, x]
                    v += var[j, x]
                    n += 1
            if 2 * n >= bw and n > 0:
                mean[j, k] = s / n
                mvar[j, k] = v / (n * n)
                ok[j, k] = True
    return mean, mvar, ok


def _warmup():
    """Compile every kernel on tiny inputs."""
    y = np.arange(40.0)
    col = np.exp(-0.5 * ((y - 20.3) / 1.5) ** 2)
    data = np.ascontiguousarray(np.tile(col[:, None], (1, 3)))
    good = np.ones(data.shape, dtype=np.bool_)
    centers = np.full((1, 3), 20.0)
    _centroid_traces(data, data.copy(), good, centers, np.array([5.0]))
    _follow_traces(data, data.copy(), good, 1, np.array([20.0]), 5.0, 3.0, 1.5, 3)
    _bin_columns(data, data.copy(), good, 2)
    v = np.vander(np.linspace(-1.0, 1.0, 8), 2)
    _fit_clipped(v, np.ones((2, 8)), np.ones((2, 8)), np.array([2, 1]), 4.0, 2)
    from ._extract_kernels import _warmup as _warmup_extraction

    _warmup_extraction()
