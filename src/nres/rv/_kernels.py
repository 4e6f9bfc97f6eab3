"""Jitted kernels of nres.rv (private). Numpy twins live in tests/rv/_naive.py.

Orders are packed one after the other in flat arrays with ``start`` offsets (int64, length
n_order + 1), so one kernel call covers all orders and ``prange`` runs over orders (independent
outputs). No fastmath: every kernel here is a correlation accumulator or a least-squares sum.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit, njit_parallel

__all__ = [
    "template_ccf",
    "template_model",
    "fit_normal_equations",
    "fit_template_orders",
    "mask_ccf",
    "mask_ccf_variance",
    "fit_blocks",
    "banded_inverse_band",
    "continuum_rows",
    "continuum_row",
]


@njit
def _lerp_uniform(values, u0, h, u):
    """Linear interpolation of ``values`` sampled at u0 + k h; NaN outside."""
    t = (u - u0) / h
    k = int(np.floor(t))
    if k < 0 or k >= values.size - 1:
        return np.nan
    f = t - k
    return values[k] * (1.0 - f) + values[k + 1] * f


@njit_parallel
def template_ccf(x, y, start, tvals, tstart, tu0, h, shifts):
    """Cross-correlation of per-order data with a uniformly sampled template.

    ``ccf[o, j] = sum_i y_i T_o(x_i - shifts[j])`` over the pixels i of order o, with T_o linearly
    interpolated on its grid ``tu0[o] + k h`` (``tvals[tstart[o]:tstart[o+1]]``); pixels that fall
    outside the template grid add nothing.

    Parameters
    ----------
    x, y : float64 (n_total,)
        ln(wavelength) and weighted, high-passed data of every order, packed.
    start : int64 (n_order + 1,)
    tvals : float64 (n_template_total,)
    tstart : int64 (n_order + 1,)
    tu0 : float64 (n_order,)
    h : float
        Template grid step in ln(wavelength).
    shifts : float64 (n_shift,)
        Trial ln(1 + z).

    Returns
    -------
    ccf : float64 (n_order, n_shift)
    """
    n_order = start.size - 1
    ccf = np.zeros((n_order, shifts.size))
    for o in prange(n_order):
        tv = tvals[tstart[o] : tstart[o + 1]]
        for j in range(shifts.size):
            acc = 0.0
            for i in range(start[o], start[o + 1]):
                v = _lerp_uniform(tv, tu0[o], h, x[i] - shifts[j])
                if v == v:
                    acc += y[i] * v
            ccf[o, j] = acc
    return ccf


@njit
def fit_normal_equations(t, tv, td, b, d, w, coef):
    """Normal equations of one Gauss-Newton step of the template fit of one order.

    Model ``m_i = b_i P(t_i) T_i`` with ``P = sum_k coef[k] L_k(t)`` (Legendre, t in [-1, 1]) and
    ``T_i`` the template at ``x_i - s``; unknowns are the coefficients and ``s = ln(1 + z)``, whose
    derivative is ``-b_i P(t_i) T'_i``.

    Parameters
    ----------
    t, tv, td, b, d, w : float64 (n,)
        Normalised pixel coordinate, template value and d/d(ln lambda) derivative at ``x - s``,
        blaze (or 1), data and weight (1 / variance; 0 for bad pixels).
    coef : float64 (degree + 1,)
        Current polynomial coefficients.

    Returns
    -------
    a : float64 (degree + 2, degree + 2)
        J^T W J.
    r : float64 (degree + 2,)
        J^T W (d - m).
    chi2 : float
        Weighted sum of squared residuals at the current parameters.
    """
    nk = coef.size
    npar = nk + 1
    a = np.zeros((npar, npar))
    r = np.zeros(npar)
    col = np.zeros(npar)
    leg = np.zeros(nk)
    chi2 = 0.0
    for i in range(t.size):
        if w[i] <= 0.0:
            continue
        # Legendre polynomials by recurrence
        leg[0] = 1.0
        if nk > 1:
            leg[1] = t[i]
        for k in range(2, nk):
            leg[k] = ((2 * k - 1) * t[i] * leg[k - 1] - (k - 1) * leg[k - 2]) / k
        p = 0.0
        for k in range(nk):
            p += coef[k] * leg[k]
        for k in range(nk):
            col[k] = b[i] * leg[k] * tv[i]
        col[nk] = -b[i] * p * td[i]
        res = d[i] - b[i] * p * tv[i]
        chi2 += w[i] * res * res
        for k in range(npar):
            r[k] += w[i] * col[k] * res
            for m in range(k, npar):
                a[k, m] += w[i] * col[k] * col[m]
    for k in range(npar):
        for m in range(k):
            a[k, m] = a[m, k]
    return a, r, chi2


@njit
def _interval(bp, lo, hi, u, k):
    """Interval k in [lo, hi - 1) of increasing breakpoints with bp[k] <= u < bp[k+1], clamped;
    walked from the guess k (pixels come in order, so the walk is a step or two)."""
    k = min(max(k, lo), hi - 2)
    while k > lo and bp[k] > u:
        k -= 1
    while k < hi - 2 and bp[k + 1] <= u:
        k += 1
    return k


@njit
def _pp_value(coef, k, dx):
    return ((coef[k, 0] * dx + coef[k, 1]) * dx + coef[k, 2]) * dx + coef[k, 3]


@njit
def _pp_integral(coef, cum, k, dx):
    """Integral of the piecewise cubic from the first breakpoint to bp[k] + dx."""
    return (
        cum[k]
        + (((0.25 * coef[k, 0] * dx + coef[k, 1] / 3.0) * dx + 0.5 * coef[k, 2]) * dx + coef[k, 3]) * dx
    )


@njit_parallel
def template_model(x, half, start, seg, bp, bstart, coef, cum, s, pixel_mean):
    """Template value and d/d(ln lambda) at every pixel of every order, shifted by s per order.

    The template segment ``seg[o]`` is a piecewise cubic in ``u = ln lambda``: on interval k,
    ``T(u) = sum_m coef[k, m] (u - bp[k])^(3 - m)``; ``cum[k]`` is its integral from the segment's
    first breakpoint to ``bp[k]``. With ``pixel_mean`` the value is the exact mean of T over
    ``[u - half, u + half]`` (from the antiderivative) and the derivative ``(T(u + half) - T(u - half))
    / (2 half)``, the derivative of that mean; otherwise T and T' at ``u = x - s``. NaN where the
    pixel (or its extent) leaves the segment.

    Parameters
    ----------
    x, half : float64 (n_total,)
        ln(wavelength) and pixel half-width in ln(wavelength) of every pixel, packed (``start``).
    start : int64 (n_order + 1,)
    seg : int64 (n_order,)
        Segment of each order (-1: none, all NaN).
    bp : float64 (n_bp_total,)
        Increasing breakpoints of every segment, packed (``bstart``, int64 (n_segment + 1,)).
    coef : float64 (n_bp_total, 4)
        Cubic coefficients of the interval starting at each breakpoint (the last row of a segment unused).
    cum : float64 (n_bp_total,)
    s : float64 (n_order,)
        Shift ln(1 + z) of each order.
    pixel_mean : bool

    Returns
    -------
    tv, td : float64 (n_total,)
    """
    n_total = x.size
    tv = np.empty(n_total)
    td = np.empty(n_total)
    for o in prange(start.size - 1):
        _model_order(x, half, start[o], start[o + 1], seg[o], bp, bstart, coef, cum, s[o], pixel_mean, tv, td)
    return tv, td


@njit
def _model_order(x, half, i0, i1, g, bp, bstart, coef, cum, s, pixel_mean, tv, td):
    """:func:`template_model` for the pixels i0:i1 of one order (segment g, shift s), into tv, td."""
    for i in range(i0, i1):
        tv[i] = np.nan
        td[i] = np.nan
    if g < 0:
        return
    lo = bstart[g]
    hi = bstart[g + 1]
    u_lo = bp[lo]
    u_hi = bp[hi - 1]
    ka = lo
    kb = lo
    for i in range(i0, i1):
        u = x[i] - s
        if pixel_mean:
            a = u - half[i]
            b = u + half[i]
            if a < u_lo or b > u_hi or not b > a:
                continue
            ka = _interval(bp, lo, hi, a, ka)
            kb = _interval(bp, lo, hi, b, max(ka, kb))
            fa = _pp_integral(coef, cum, ka, a - bp[ka])
            fb = _pp_integral(coef, cum, kb, b - bp[kb])
            tv[i] = (fb - fa) / (b - a)
            td[i] = (_pp_value(coef, kb, b - bp[kb]) - _pp_value(coef, ka, a - bp[ka])) / (b - a)
        else:
            if u < u_lo or u > u_hi:
                continue
            ka = _interval(bp, lo, hi, u, ka)
            dx = u - bp[ka]
            tv[i] = _pp_value(coef, ka, dx)
            td[i] = (3.0 * coef[ka, 0] * dx + 2.0 * coef[ka, 1]) * dx + coef[ka, 2]


@njit
def _cholesky_solve(a, r, n):
    """Solve the leading n x n block of the symmetric positive-definite a against r[:n] (Cholesky);
    NaNs if a is not positive definite."""
    low = np.zeros((n, n))
    out = np.full(n, np.nan)
    for j in range(n):
        acc = a[j, j]
        for k in range(j):
            acc -= low[j, k] * low[j, k]
        if not acc > 0.0:
            return out
        low[j, j] = np.sqrt(acc)
        for i in range(j + 1, n):
            acc = a[i, j]
            for k in range(j):
                acc -= low[i, k] * low[j, k]
            low[i, j] = acc / low[j, j]
    y = np.zeros(n)
    for i in range(n):
        acc = r[i]
        for k in range(i):
            acc -= low[i, k] * y[k]
        y[i] = acc / low[i, i]
    for i in range(n - 1, -1, -1):
        acc = y[i]
        for k in range(i + 1, n):
            acc -= low[k, i] * out[k]
        out[i] = acc / low[i, i]
    return out


@njit
def _gauss_newton(
    x,
    half,
    t,
    b,
    d,
    w,
    i0,
    i1,
    g,
    bp,
    bstart,
    coef,
    cum,
    s0,
    margin,
    pixel_mean,
    poly,
    s,
    max_iter,
    tol,
    tv,
    td,
):
    """Gauss-Newton steps of one order (pixels i0:i1, weights ``w``) from ``(poly, s)`` (poly updated in
    place) until ``|step of s| < tol``; returns (converged, s, the last step's normal matrix)."""
    npar = poly.size + 1
    a = np.zeros((npar, npar))
    for _ in range(max_iter):
        _model_order(x, half, i0, i1, g, bp, bstart, coef, cum, s, pixel_mean, tv, td)
        a, r, _ = fit_normal_equations(t[i0:i1], tv[i0:i1], td[i0:i1], b[i0:i1], d[i0:i1], w[i0:i1], poly)
        step = _cholesky_solve(a, r, npar)
        if not np.all(np.isfinite(step)):
            return False, s, a
        poly += step[: npar - 1]
        s += step[npar - 1]
        if abs(s - s0) > margin:
            return False, s, a
        if abs(step[npar - 1]) < tol:
            return True, s, a
    return False, s, a


@njit
def _clip_pixels(t, tv, b, d, w0, i0, i1, poly, clip, rejected):
    """Flag (in ``rejected[i0:i1]``) the pixels whose normalised residual ``(d - b P T) sqrt(w0)`` exceeds
    ``clip`` times max(1, 1.4826 x the median absolute residual); returns whether the set changed.
    ``tv`` holds the template at the fitted shift; pixels with ``w0 <= 0`` are never flagged."""
    nk = poly.size
    leg = np.zeros(nk)
    n = i1 - i0
    res = np.zeros(n)
    m = 0
    worst = 0.0
    for i in range(i0, i1):
        if w0[i] <= 0.0:
            continue
        leg[0] = 1.0
        if nk > 1:
            leg[1] = t[i]
        for k in range(2, nk):
            leg[k] = ((2 * k - 1) * t[i] * leg[k - 1] - (k - 1) * leg[k - 2]) / k
        p = 0.0
        for k in range(nk):
            p += poly[k] * leg[k]
        r = abs(d[i] - b[i] * p * tv[i]) * np.sqrt(w0[i])
        res[i - i0] = r
        worst = max(worst, r)
        m += 1
    changed = False
    if m == 0:
        return changed
    # the scale only matters once a residual exceeds clip (scale >= 1): most orders skip the median
    limit = clip
    if worst > clip:
        vals = np.empty(m)
        j = 0
        for i in range(i0, i1):
            if w0[i] > 0.0:
                vals[j] = res[i - i0]
                j += 1
        limit = clip * max(1.0, 1.4826 * np.median(vals))
    for i in range(i0, i1):
        flag = w0[i] > 0.0 and res[i - i0] > limit
        if flag != rejected[i]:
            rejected[i] = flag
            changed = True
    return changed


@njit_parallel
def fit_template_orders(
    x,
    half,
    t,
    b,
    d,
    w,
    start,
    seg,
    bp,
    bstart,
    coef,
    cum,
    active,
    s0,
    margin,
    pixel_mean,
    degree,
    max_iter,
    tol,
    clip,
    clip_iter,
):
    """Gauss-Newton fits of (Legendre continuum, shift s) of every order in one call, with iterative
    per-pixel outlier rejection.

    Per order: the continuum alone at ``s0`` (linear), then steps of the normal equations of
    :func:`fit_normal_equations` with the model of :func:`template_model` until ``|step of s| < tol``
    (converged) or ``|s - s0| > margin`` or a non-positive-definite system (failed). Then, up to
    ``clip_iter`` times: the normalised residuals ``|d - m| sqrt(w)`` of every weighted pixel against the
    fit, pixels beyond ``clip`` times max(1, 1.4826 x their median) rejected (weight 0; a pixel rejected
    earlier comes back when it is within the limit of the new fit), and the fit continued from its
    parameters; it stops when the rejected set does not change. The error of s is
    ``sqrt((J^T W J)^-1)[s, s]`` from the last step's matrix (rejected pixels left out).

    Parameters
    ----------
    x, half, t, b, d, w : float64 (n_total,)
        As :func:`template_model` and :func:`fit_normal_equations`, packed (``start``).
    seg : int64 (n_order,)
    bp, bstart, coef, cum :
        The template's pieces (:func:`template_model`).
    active : bool (n_order,)
        Orders to fit (others return NaN).
    s0, margin, tol : float
    pixel_mean : bool
    degree, max_iter : int
    clip : float
        Rejection threshold (normalised residuals); <= 0 turns rejection off.
    clip_iter : int
        Most rejection rounds per order.

    Returns
    -------
    s, sigma : float64 (n_order,)
        NaN where not converged.
    rejected : bool (n_total,)
        Pixels rejected by the final fit of their order.
    """
    n_order = start.size - 1
    npar = degree + 2
    s_out = np.full(n_order, np.nan)
    sig_out = np.full(n_order, np.nan)
    rejected = np.zeros(x.size, dtype=np.bool_)
    tv = np.empty(x.size)
    td = np.empty(x.size)
    wk = w.copy()  # working weights: 0 at rejected pixels
    e_last = np.zeros(npar)
    e_last[npar - 1] = 1.0
    for o in prange(n_order):
        if not active[o]:
            continue
        i0 = start[o]
        i1 = start[o + 1]
        g = seg[o]
        poly = np.zeros(degree + 1)
        _model_order(x, half, i0, i1, g, bp, bstart, coef, cum, s0, pixel_mean, tv, td)
        a, r, _ = fit_normal_equations(t[i0:i1], tv[i0:i1], td[i0:i1], b[i0:i1], d[i0:i1], w[i0:i1], poly)
        step = _cholesky_solve(a, r, npar - 1)
        if not np.all(np.isfinite(step)):
            continue
        poly += step
        converged, s, a = _gauss_newton(
            x, half, t, b, d, wk, i0, i1, g, bp, bstart, coef, cum, s0, margin, pixel_mean, poly, s0,
            max_iter, tol, tv, td,
        )  # fmt: skip
        if converged and clip > 0.0:
            for _ in range(clip_iter):
                # tv is the template at the shift of the last step's start, < tol from s: the residuals
                # of the final parameters up to ~tol x T' (1e-13 relative)
                if not _clip_pixels(t, tv, b, d, w, i0, i1, poly, clip, rejected):
                    break
                for i in range(i0, i1):
                    wk[i] = 0.0 if rejected[i] else w[i]
                converged, s, a = _gauss_newton(
                    x, half, t, b, d, wk, i0, i1, g, bp, bstart, coef, cum, s0, margin, pixel_mean, poly,
                    s, max_iter, tol, tv, td,
                )  # fmt: skip
                if not converged:
                    break
        if converged:
            # the covariance of the last step's matrix (s moved by < tol since)
            var = _cholesky_solve(a, e_last, npar)[npar - 1]
            if var > 0.0:
                s_out[o] = s
                sig_out[o] = np.sqrt(var)
    return s_out, sig_out, rejected


@njit
def _first_edge_above(edges, lo, hi, value):
    """Smallest index k in [lo, hi) with edges[k] > value (hi if none); edges increasing."""
    while lo < hi:
        mid = (lo + hi) // 2
        if edges[mid] > value:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit
def _hole_start(edges, e0, ne, lo, k):
    """Edge k with edges[k] <= lo < edges[k+1] (clamped to the order), by bisection when the guess k is
    negative, else walked from k (along a velocity grid a hole moves by a fraction of a pixel)."""
    if k < 0:
        return max(_first_edge_above(edges, e0, e0 + ne, lo) - 1, e0)
    while k > e0 and edges[k] > lo:
        k -= 1
    while k < e0 + ne - 2 and edges[k + 1] <= lo:
        k += 1
    return k


@njit
def _hole_sums(edges, e0, ne, p0, lo, hi, d, b, k):
    """(sum_i f_i d_i, sum_i f_i b_i) of the hole [lo, hi] inside one order (f_i: fraction in pixel i),
    starting at edge k (:func:`_hole_start`)."""
    width = hi - lo
    sd = 0.0
    sb = 0.0
    while k < e0 + ne - 1 and edges[k] < hi:
        a = max(lo, edges[k])
        c = min(hi, edges[k + 1])
        if c > a:
            frac = (c - a) / width
            i = p0 + (k - e0)
            sd += frac * d[i]
            sb += frac * b[i]
        k += 1
    return sd, sb


@njit
def _hole_add(edges, e0, ne, p0, lo, hi, scale, coeff, k):
    """coeff_i += scale * f_i for the pixels i under the hole [lo, hi], starting at edge k."""
    width = hi - lo
    while k < e0 + ne - 1 and edges[k] < hi:
        a = max(lo, edges[k])
        c = min(hi, edges[k + 1])
        if c > a:
            coeff[p0 + (k - e0)] += scale * (c - a) / width
        k += 1


@njit
def _mask_order(
    edges, estart, d, b, pstart, lline, hline, wline, lrange, zs, fixed, o, num, den, use_g, g, coeff
):
    """Accumulate the mask CCF of order o into num/den, or (use_g) the pixel coefficients of
    ``sum_j g[o, j] num[o, j]`` into coeff (fixed line set only)."""
    e0 = estart[o]
    ne = estart[o + 1] - e0  # n_pix + 1 edges
    p0 = pstart[o]
    elo = edges[e0]
    ehi = edges[e0 + ne - 1]
    zmin = zs.min()
    zmax = zs.max()
    zref = 0.5 * (zmin + zmax)
    for l in range(lrange[o, 0], lrange[o, 1]):
        wl = wline[l]
        k = -1
        if fixed:
            # one set of lines for the whole grid: holes inside the order at every trial z (a set
            # that changed along the grid would make the CCF asymmetric)
            if lline[l] * (1.0 + zmin) < elo or hline[l] * (1.0 + zmax) > ehi:
                continue
            # the line's weight is frozen at the grid centre: with a weight that followed the blaze
            # along the grid, lines of different depth would be mixed in z-dependent proportions
            lo = lline[l] * (1.0 + zref)
            k = _hole_start(edges, e0, ne, lo, k)
            _, sref = _hole_sums(edges, e0, ne, p0, lo, hline[l] * (1.0 + zref), d, b, k)
            if not sref > 0.0:
                continue
            wl *= sref
        for j in range(zs.size):
            f1 = 1.0 + zs[j]
            lo = lline[l] * f1
            hi = hline[l] * f1
            if not fixed:
                if lo < elo or hi > ehi:
                    continue
                k = _hole_start(edges, e0, ne, lo, k)
                sd, sb = _hole_sums(edges, e0, ne, p0, lo, hi, d, b, k)
                num[o, j] += wl * sd
                den[o, j] += wl * sb
                continue
            k = _hole_start(edges, e0, ne, lo, k)
            sd, sb = _hole_sums(edges, e0, ne, p0, lo, hi, d, b, k)
            if not sb > 0.0:
                continue
            if use_g:
                _hole_add(edges, e0, ne, p0, lo, hi, g[o, j] * wl / sb, coeff, k)
            else:
                num[o, j] += wl * sd / sb
                den[o, j] += wl


@njit_parallel
def mask_ccf(edges, estart, d, b, pstart, lline, hline, wline, lrange, zs, fixed):
    """Binary-mask CCF per order: box lines of relative width, pixel-overlap weighted.

    With ``S_d,l(z) = sum_i f_il(z) d_i`` and ``S_b,l(z) = sum_i f_il(z) b_i``, where ``f_il`` is the
    fraction of the hole ``[lline_l, hline_l] (1 + z)`` inside pixel i (pixel i spans
    ``edges[i], edges[i+1]`` of its order):

    - ``fixed``: each line contributes its blaze-normalised depth profile ``S_d / S_b`` with a weight
      ``W_l = w_l S_b,l(z_ref)`` frozen at the grid centre ``z_ref``: ``num[o, j] = sum_l W_l
      S_d,l / S_b,l`` and ``den[o, j] = sum_l W_l``, over the holes inside the order at every trial z
      (lines whose hole covers only bad pixels at some z are left out there).
    - not ``fixed`` (wide search): ``num = sum_l w_l S_d,l``, ``den = sum_l w_l S_b,l`` over the holes
      inside the order at each z.

    ``num / den`` is the normalised CCF.

    Parameters
    ----------
    edges : float64 (n_total_edges,)
        Increasing pixel-edge wavelengths, per order ``n_pix + 1`` values, packed (``estart``).
    estart : int64 (n_order + 1,)
    d, b : float64 (n_total,)
        Data and blaze (or continuum) of every pixel, packed (``pstart``); bad pixels have d = b = 0.
    pstart : int64 (n_order + 1,)
    lline, hline, wline : float64 (n_line,)
        Hole edges (same unit as ``edges``, rest frame) and weights.
    lrange : int64 (n_order, 2)
        Candidate lines [start, stop) of each order (a superset is fine).
    zs : float64 (n_z,)
        Trial redshifts.
    fixed : bool

    Returns
    -------
    num, den : float64 (n_order, n_z)
    """
    n_order = estart.size - 1
    num = np.zeros((n_order, zs.size))
    den = np.zeros((n_order, zs.size))
    nog = np.zeros((1, 1))
    nocoeff = np.zeros(1)
    for o in prange(n_order):
        _mask_order(
            edges,
            estart,
            d,
            b,
            pstart,
            lline,
            hline,
            wline,
            lrange,
            zs,
            fixed,
            o,
            num,
            den,
            False,
            nog,
            nocoeff,
        )
    return num, den


@njit_parallel
def mask_ccf_variance(edges, estart, b, var, pstart, lline, hline, wline, lrange, zs, g):
    """Variance of the linear functional ``sum_j g[o, j] num[o, j]`` of each order's fixed-set mask CCF.

    ``num`` is linear in the data: ``num[o, j] = sum_i c_ij d_i`` with ``c_ij = sum_l W_l f_il(z_j) /
    S_b,l(z_j)``; the variance is ``sum_i (sum_j g[o, j] c_ij)^2 var_i`` (pixels independent).

    Parameters
    ----------
    b, var : float64 (n_total,)
        Blaze (as given to :func:`mask_ccf`) and data variance, packed; 0 for bad pixels.
    g : float64 (n_order, n_z)
    (others as :func:`mask_ccf`, with ``fixed=True``)

    Returns
    -------
    variance : float64 (n_order,)
    """
    n_order = estart.size - 1
    out = np.zeros(n_order)
    coeff = np.zeros(var.size)
    dummy = np.zeros((n_order, zs.size))
    for o in prange(n_order):
        _mask_order(
            edges,
            estart,
            b,
            b,
            pstart,
            lline,
            hline,
            wline,
            lrange,
            zs,
            True,
            o,
            dummy,
            dummy,
            True,
            g,
            coeff,
        )
        acc = 0.0
        for i in range(pstart[o], pstart[o + 1]):
            acc += coeff[i] * coeff[i] * var[i]
        out[o] = acc
    return out


@njit_parallel
def fit_blocks(x, half, c, d, w, start, seg, bp, bstart, coef, cum, s0, margin, pixel_mean, max_iter, tol):
    """Gauss-Newton fits of ``m_i = c_i (aa + bb T(x_i - s))`` to every block in one call.

    Blocks are packed like orders (``start``); ``c_i`` is a known per-pixel factor (blaze times the
    ratio of the data's and the template's continua). Unknowns: additive level ``aa``, scale ``bb``
    and shift ``s = ln(1 + z)`` with the exact Jacobian ``c_i (1, T_i, -bb T'_i)``. Start: the linear
    (aa, bb) fit at ``s0``; steps until ``|step of s| < tol`` (converged) or ``|s - s0| > margin`` or a
    singular system (failed). Errors from the inverse of the last step's normal matrix (weights
    ``w = 1 / variance``, so it is the covariance).

    Parameters
    ----------
    x, half, c, d, w : float64 (n_total,)
        ln(wavelength), pixel half-width in ln(wavelength), factor, data, weight (0 = bad), packed.
    start : int64 (n_block + 1,)
    seg : int64 (n_block,)
        Template segment of each block (-1: skipped).
    bp, bstart, coef, cum :
        The template's pieces (:func:`template_model`).
    s0, margin, tol : float
    pixel_mean : bool
    max_iter : int

    Returns
    -------
    params : float64 (n_block, 3)
        (aa, bb, s); NaN where not converged.
    sigma : float64 (n_block, 3)
        Their standard errors.
    """
    nb = start.size - 1
    params = np.full((nb, 3), np.nan)
    sigma = np.full((nb, 3), np.nan)
    tv = np.empty(x.size)
    td = np.empty(x.size)
    for k in prange(nb):
        if seg[k] < 0:
            continue
        i0 = start[k]
        i1 = start[k + 1]
        aa = 0.0
        bb = 0.0
        s = s0
        converged = False
        a = np.zeros((3, 3))
        for it in range(max_iter + 1):
            _model_order(x, half, i0, i1, seg[k], bp, bstart, coef, cum, s, pixel_mean, tv, td)
            a = np.zeros((3, 3))
            r = np.zeros(3)
            col = np.zeros(3)
            for i in range(i0, i1):
                if w[i] <= 0.0 or not (tv[i] == tv[i]):
                    continue
                col[0] = c[i]
                col[1] = c[i] * tv[i]
                col[2] = -c[i] * bb * td[i]
                res = d[i] - c[i] * (aa + bb * tv[i])
                for p in range(3):
                    r[p] += w[i] * col[p] * res
                    for q in range(p, 3):
                        a[p, q] += w[i] * col[p] * col[q]
            for p in range(3):
                for q in range(p):
                    a[p, q] = a[q, p]
            if it == 0:
                # linear start: level and scale at s0
                step = _cholesky_solve(a, r, 2)
                if not np.all(np.isfinite(step)):
                    break
                aa += step[0]
                bb += step[1]
                continue
            step = _cholesky_solve(a, r, 3)
            if not np.all(np.isfinite(step)):
                break
            aa += step[0]
            bb += step[1]
            s += step[2]
            if abs(s - s0) > margin:
                break
            if abs(step[2]) < tol:
                converged = True
                break
        if converged:
            for p in range(3):
                e = np.zeros(3)
                e[p] = 1.0
                var = _cholesky_solve(a, e, 3)[p]
                sigma[k, p] = np.sqrt(var) if var > 0.0 else np.nan
            params[k, 0] = aa
            params[k, 1] = bb
            params[k, 2] = s
    return params, sigma


@njit
def banded_inverse_band(ab):
    """The band of the inverse of a symmetric positive-definite banded matrix from its Cholesky factor.

    With ``N = U^T U`` (``U`` upper triangular of bandwidth p, scipy's ``cholesky_banded`` storage
    ``ab[p + i - j, j] = U[i, j]``), ``S = N^-1`` satisfies ``U S = U^-T``, whose upper triangle is
    zero except the diagonal ``1 / U[i, i]`` (Takahashi's recursion). Row i of ``S`` within the band
    then needs only rows k > i: ``S[i, j] = (delta_ij / U[i, i] - sum_{k=i+1}^{i+p} U[i, k] S[k, j])
    / U[i, i]`` for j = i + p, ..., i, so the band costs O(n p^2) instead of the O(n^2) of columns.

    Parameters
    ----------
    ab : float64 (p + 1, n)
        Upper banded Cholesky factor (``scipy.linalg.cholesky_banded(..., lower=False)``).

    Returns
    -------
    band : float64 (n, p + 1)
        ``band[i, d] = S[i, i + d]`` (0 beyond the matrix).
    """
    p = ab.shape[0] - 1
    n = ab.shape[1]
    band = np.zeros((n, p + 1))
    for i in range(n - 1, -1, -1):
        uii = ab[p, i]
        kmax = min(i + p, n - 1)
        for j in range(kmax, i - 1, -1):
            acc = 1.0 / uii if j == i else 0.0
            for k in range(i + 1, kmax + 1):
                # S[k, j] from the band of row min(k, j) (both > i: already done, or j == i just below)
                if k <= j:
                    skj = band[k, j - k]
                else:
                    skj = band[j, k - j]
                acc -= ab[p + i - k, k] * skj
            band[i, j - i] = acc / uii
    return band


@njit
def _legendre_row(t, nk, leg):
    leg[0] = 1.0
    if nk > 1:
        leg[1] = t
    for k in range(2, nk):
        leg[k] = ((2 * k - 1) * t * leg[k - 1] - (k - 1) * leg[k - 2]) / k


@njit
def _continuum_row(y, ok, degree, iterations, lower, upper, stride, out):
    """:func:`continuum_rows` for one row, into out."""
    n = y.size
    nk = degree + 1
    ns = (n + stride - 1) // stride
    ts = np.empty(ns)
    ys = np.empty(ns)
    oks = np.empty(ns, dtype=np.bool_)
    step = 2.0 / (n - 1) if n > 1 else 0.0
    for j in range(ns):
        i = j * stride
        ts[j] = -1.0 + i * step if i < n - 1 else 1.0
        ys[j] = y[i]
        oks[j] = ok[i] and y[i] == y[i]
    if n == 1:
        ts[0] = -1.0
    keep = oks.copy()
    leg = np.zeros(nk)
    # the Legendre values of every sample once: the refits only change which samples are kept
    legs = np.empty((ns, nk))
    for j in range(ns):
        _legendre_row(ts[j], nk, leg)
        legs[j] = leg
    coef = np.zeros(nk)
    resid = np.empty(ns)
    have = False
    for _ in range(iterations + 1):
        nkeep = 0
        for j in range(ns):
            if keep[j]:
                nkeep += 1
        if nkeep < degree + 3:
            break
        a = np.zeros((nk, nk))
        r = np.zeros(nk)
        for j in range(ns):
            if not keep[j]:
                continue
            for p in range(nk):
                r[p] += legs[j, p] * ys[j]
                for q in range(p, nk):
                    a[p, q] += legs[j, p] * legs[j, q]
        for p in range(nk):
            for q in range(p):
                a[p, q] = a[q, p]
        sol = _cholesky_solve(a, r, nk)
        if not np.all(np.isfinite(sol)):
            break
        coef[:] = sol
        have = True
        mean = 0.0
        for j in range(ns):
            v = 0.0
            for p in range(nk):
                v += coef[p] * legs[j, p]
            resid[j] = ys[j] - v
            if keep[j]:
                mean += resid[j]
        mean /= nkeep
        ss = 0.0
        for j in range(ns):
            if keep[j]:
                ss += (resid[j] - mean) ** 2
        scale = np.sqrt(ss / nkeep)
        same = True
        for j in range(ns):
            new = oks[j] and resid[j] > -lower * scale and resid[j] < upper * scale
            if new != keep[j]:
                same = False
            keep[j] = new
        if same:
            break
    if not have:
        cnt = 0
        tmp = np.empty(n)
        for i in range(n):
            if ok[i] and y[i] == y[i]:
                tmp[cnt] = y[i]
                cnt += 1
        fill = np.median(tmp[:cnt]) if cnt > 0 else 1.0
        for i in range(n):
            out[i] = fill
        return
    for i in range(n):
        t = -1.0 + i * step if i < n - 1 else 1.0
        if n == 1:
            t = -1.0
        _legendre_row(t, nk, leg)
        v = 0.0
        for p in range(nk):
            v += coef[p] * leg[p]
        out[i] = v


@njit_parallel
def continuum_rows(y, ok, degree, iterations, lower, upper, stride):
    """The continuum rule of :mod:`nres.rv.continuum` for every row (order) of y, ``prange`` over rows.

    Per row: a Legendre fit of ``degree`` in t = linspace(-1, 1, n) to every ``stride``-th good point,
    refitted up to ``iterations`` times to the points with ``-lower std < residual < upper std`` (std of
    the kept points' residuals) until the kept set stops changing; normal equations solved by
    Cholesky. Fewer than ``degree + 3`` points: the median of the good points (1 if none).

    Parameters
    ----------
    y : float64 (n_row, n)
    ok : bool (n_row, n)
        Usable points (non-finite y are never used).
    degree, iterations, stride : int
    lower, upper : float

    Returns
    -------
    float64 (n_row, n)
    """
    out = np.empty(y.shape)
    for o in prange(y.shape[0]):
        _continuum_row(y[o], ok[o], degree, iterations, lower, upper, stride, out[o])
    return out


@njit
def continuum_row(y, ok, degree, iterations, lower, upper, stride):
    """:func:`continuum_rows` of one row (y, ok: (n,)), serial: a parallel launch costs more than the
    fit of one order on a loaded machine."""
    out = np.empty(y.size)
    _continuum_row(y, ok, degree, iterations, lower, upper, stride, out)
    return out


def _warmup():
    """Compile every kernel on tiny inputs."""
    x = np.linspace(0.0, 1e-3, 8)
    start = np.array([0, 8], dtype=np.int64)
    tv = np.ones(16)
    template_ccf(
        x, np.ones(8), start, tv, np.array([0, 16], dtype=np.int64), np.array([-1e-4]), 1e-4, np.zeros(2)
    )
    fit_normal_equations(
        np.linspace(-1, 1, 8), np.ones(8), np.ones(8), np.ones(8), np.ones(8), np.ones(8), np.ones(2)
    )
    bp = np.array([6.0, 6.1, 6.2])
    coef = np.ones((3, 4))
    bst = np.array([0, 3], dtype=np.int64)
    xs = np.full(8, 6.1)
    for pm in (True, False):
        template_model(
            xs, np.full(8, 1e-3), start, np.zeros(1, dtype=np.int64), bp, bst, coef, bp, np.zeros(1), pm
        )
    ones = np.ones(8)
    for pm in (True, False):
        fit_template_orders(
            xs,
            np.full(8, 1e-3),
            np.linspace(-1, 1, 8),
            ones,
            ones,
            ones,
            start,
            np.zeros(1, dtype=np.int64),
            bp,
            bst,
            coef,
            bp,
            np.ones(1, dtype=np.bool_),
            0.0,
            1e-4,
            pm,
            1,
            2,
            1e-13,
            5.0,
            3,
        )
    edges = np.linspace(500.0, 501.0, 9)
    estart = np.array([0, 9], dtype=np.int64)
    lines = np.array([500.4]), np.array([500.45]), np.array([1.0])
    lrange = np.array([[0, 1]], dtype=np.int64)
    mask_ccf(edges, estart, np.ones(8), np.ones(8), start, *lines, lrange, np.zeros(2), True)
    mask_ccf_variance(
        edges, estart, np.ones(8), np.ones(8), start, *lines, lrange, np.zeros(2), np.ones((1, 2))
    )
    for pm in (True, False):
        fit_blocks(
            xs,
            np.full(8, 1e-3),
            ones,
            ones,
            ones,
            start,
            np.zeros(1, dtype=np.int64),
            bp,
            bst,
            coef,
            bp,
            0.0,
            1e-4,
            pm,
            2,
            1e-13,
        )
    banded_inverse_band(np.array([[0.0, 0.5, 0.5], [1.0, 1.0, 1.0]]))
    continuum_rows(np.ones((2, 8)), np.ones((2, 8), dtype=np.bool_), 1, 2, 0.5, 3.0, 1)
    continuum_row(np.ones(8), np.ones(8, dtype=np.bool_), 1, 2, 0.5, 3.0, 1)
