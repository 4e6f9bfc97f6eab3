"""Jitted kernels of nres.extract part 2: profile evaluation, box and optimal extraction.

Plain contiguous arrays in, arrays out. Images are (ny, nx) as on the detector: a trace's loop over
columns reads the same few rows of consecutive columns, which stays in cache without a transpose.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit, njit_parallel

#: status bits returned per (trace, column)
ST_EDGE = 1  # aperture leaves the frame, or no centre
ST_MASKED = 2  # at least one masked pixel inside the aperture (box sum incomplete)
ST_NO_WEIGHT = 4  # no usable pixel / zero profile weight


@njit
def _profile_value(prof, t, k, f, grid0, gstep, d):
    """Profile of trace t at offset d (px), blocks k and k+1 mixed with fraction f."""
    ng = prof.shape[2]
    g = (d - grid0) / gstep
    if g < 0.0 or g > ng - 1.0:
        return 0.0
    i0 = int(np.floor(g))
    if i0 >= ng - 1:
        i0 = ng - 2
    u = g - i0
    a = prof[t, k, i0] * (1.0 - u) + prof[t, k, i0 + 1] * u
    if f == 0.0:
        return a
    b = prof[t, k + 1, i0] * (1.0 - u) + prof[t, k + 1, i0 + 1] * u
    return a * (1.0 - f) + b * f


@njit
def _box_column(data, good, i, c, half):
    """Fractional-edge box sum of column i of ``data`` (ny, nx) over rows [c - half, c + half].

    Returns (sum, weight of good pixels, total weight, m1, m2, jlo, jhi); m1/m2 are the first
    moment about c and the rms width of the good pixels. jlo > jhi when the aperture leaves the column.
    """
    ny = data.shape[0]
    lo = c - half
    hi = c + half
    jlo = int(np.floor(lo + 0.5))
    jhi = int(np.ceil(hi - 0.5))
    if jlo < 0 or jhi > ny - 1:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 1, 0
    s = 0.0
    wg = 0.0
    wt = 0.0
    s1 = 0.0
    s2 = 0.0
    for j in range(jlo, jhi + 1):
        w = min(j + 0.5, hi) - max(j - 0.5, lo)
        if w <= 0.0:
            continue
        wt += w
        if good[j, i]:
            v = w * data[j, i]
            s += v
            wg += w
            s1 += v * (j - c)
            s2 += v * (j - c) * (j - c)
    m1 = 0.0
    m2 = 0.0
    if s > 0.0:
        m1 = s1 / s
        m2 = np.sqrt(max(s2 / s - m1 * m1, 0.0))
    return s, wg, wt, m1, m2, jlo, jhi


@njit_parallel
def _extract(
    data,
    var,
    var0,
    good,
    centers,
    prof,
    blk_k,
    blk_f,
    grid0,
    gstep,
    half,
    optimal,
    n_iter,
    kappa,
    max_reject,
    rejected,
):
    """Box and (optionally) optimal extraction of every trace in every column.

    Parameters
    ----------
    data, var : (ny, nx) float64
        Image (e-) and its variance (box errors); read only where ``good``.
    var0 : (ny, nx) or (1, 1) float64
        Model variance floor (read noise^2 + dark + background) per pixel, or one value for all.
    good : (ny, nx) bool
        Usable pixels.
    centers : (ntr, nx) float64
        Trace centre (window rows) per column; NaN = skip.
    prof : (ntr, nblock, ngrid) float64
        Profile per block sampled at offsets ``grid0 + gstep * k`` (value of a pixel centred there,
        for unit total flux).
    blk_k : (nx,) int64, blk_f : (nx,) float64
        Block index and fraction of the next block, per column.
    half : float
        Aperture half height (px).
    optimal : bool
        Also run the optimal extraction.
    n_iter : int
        Model-variance iterations per fit.
    kappa : float
        Rejection threshold (sigma); max_reject: most pixels rejected per column.
    rejected : (ny, nx) bool
        Output: set True at rejected pixels (only ever set, so traces may share it).

    Returns
    -------
    flux, fvar, box, bvar, m1, m2, pcover : (ntr, nx) float64
        Optimal flux and variance (NaN if not run), box sum and variance, moments, and the profile
        weight of the good aperture pixels over the aperture's whole profile weight.
    nrej, status : (ntr, nx) int64
        Rejected pixels (positive outliers counted, negative ones add 1000) and status bits.
    """
    ntr, nx = centers.shape
    const_v0 = var0.shape[0] == 1 and var0.shape[1] == 1
    flux = np.full((ntr, nx), np.nan)
    fvar = np.full((ntr, nx), np.nan)
    box = np.full((ntr, nx), np.nan)
    bvar = np.full((ntr, nx), np.nan)
    m1o = np.full((ntr, nx), np.nan)
    m2o = np.full((ntr, nx), np.nan)
    pcover = np.zeros((ntr, nx))
    nrej = np.zeros((ntr, nx), dtype=np.int64)
    status = np.zeros((ntr, nx), dtype=np.int64)
    nap = int(2.0 * half + 3.0)
    for t in prange(ntr):
        p = np.empty(nap)
        d = np.empty(nap)
        v0 = np.empty(nap)
        use = np.empty(nap, dtype=np.bool_)
        for i in range(nx):
            c = centers[t, i]
            if not np.isfinite(c):
                status[t, i] = ST_EDGE
                continue
            s, wg, wt, m1, m2, jlo, jhi = _box_column(data, good, i, c, half)
            if jlo > jhi:
                status[t, i] = ST_EDGE
                continue
            vs = 0.0
            for j in range(jlo, jhi + 1):
                w = min(j + 0.5, c + half) - max(j - 0.5, c - half)
                if w > 0.0 and good[j, i]:
                    vs += w * w * var[j, i]
            if wg < wt:
                status[t, i] |= ST_MASKED
            if wg <= 0.0:
                status[t, i] |= ST_NO_WEIGHT
                continue
            box[t, i] = s
            bvar[t, i] = vs
            m1o[t, i] = m1
            m2o[t, i] = m2
            if not optimal:
                continue
            k = blk_k[i]
            f = blk_f[i]
            n = jhi - jlo + 1
            ptot = 0.0
            pgood = 0.0
            sd = 0.0
            for q in range(n):
                j = jlo + q
                p[q] = _profile_value(prof, t, k, f, grid0, gstep, j - c)
                use[q] = good[j, i] and p[q] > 0.0
                v0[q] = var0[0, 0] if const_v0 else var0[j, i]
                d[q] = data[j, i]
                ptot += p[q]
                if use[q]:
                    pgood += p[q]
                    sd += d[q]
            if pgood <= 0.0:
                status[t, i] |= ST_NO_WEIGHT
                continue
            pcover[t, i] = pgood / ptot
            fl = sd / pgood  # start: the box estimate over the good pixels, scaled by their profile
            b = 0.0
            for _r in range(max_reject + 1):
                for _it in range(n_iter):
                    a = 0.0
                    b = 0.0
                    for q in range(n):
                        if use[q]:
                            v = v0[q] + max(fl * p[q], 0.0)
                            a += p[q] * d[q] / v
                            b += p[q] * p[q] / v
                    if b <= 0.0:
                        break
                    fl = a / b
                if b <= 0.0:
                    break
                worst = -1
                zmax = kappa * kappa
                for q in range(n):
                    if use[q]:
                        v = v0[q] + max(fl * p[q], 0.0)
                        r = d[q] - fl * p[q]
                        z = r * r / v
                        if z > zmax:
                            zmax = z
                            worst = q
                if worst < 0 or _r == max_reject:
                    break
                j = jlo + worst
                use[worst] = False
                rejected[j, i] = True
                if d[worst] > fl * p[worst]:
                    nrej[t, i] += 1
                else:
                    nrej[t, i] += 1000
            if b <= 0.0:
                status[t, i] |= ST_NO_WEIGHT
                continue
            # final variance from the converged model
            b = 0.0
            for q in range(n):
                if use[q]:
                    j = jlo + q
                    b += p[q] * p[q] / (v0[q] + max(fl * p[q], 0.0))
            flux[t, i] = fl
            fvar[t, i] = 1.0 / b
    return flux, fvar, box, bvar, m1o, m2o, pcover, nrej, status


@njit
def _profile_samples(data, good, centers, flux, blk, nblock, grid0, gstep, ngrid, rmax):
    """Accumulate normalised profile samples of every trace per block on an offset grid.

    data, good : (ny, nx) flat image; centers : (ntr, nx) window rows (NaN = skip);
    flux : (ntr, nx) normalising flux per column (<= 0 = skip); blk : (nx,) int64 block of each
    column (-1 = skip). Each good pixel within ``rmax`` of the centre adds ``data / flux`` at
    offset d = j - c, split linearly between the two nearest grid nodes: :func:`_sample_profiles`
    unweighted (no profile, no model, no mirrored wings).

    Returns
    -------
    sv, sw : (ntr, nblock, ngrid) float64
        Weighted sums of the samples and of their weights.
    """
    no_prof = np.zeros((1, 1, 2))
    return _sample_profiles(
        data, data, good, centers, flux, no_prof, blk, np.zeros(1), blk, nblock, grid0, gstep, ngrid, rmax,
        np.inf, 0.0, False,
    )  # fmt: skip


# ----- method="idl": the original's profile + derivative fit (extract.pro / extlstsq.pro) -----------
@njit
def _idl_shift_profile(p, orddy, out):
    """The original's 4-tap y-shift of a box profile ``p`` (W,) by ``orddy`` px into ``out`` (W,).

    Average of two 3-point Lagrange interpolants; ``out[k] ~ p(k - orddy)``; rows of ``p`` outside
    0..W-1 count as zero (the original padded two zero rows on each side).
    """
    w = p.shape[0]
    q = int(np.floor(orddy))
    s = q - orddy  # in (-1, 0]
    t = s + 1.0
    l0m = s * (s - 1.0) / 2.0
    l1m = -(s + 1.0) * (s - 1.0)
    l2m = s * (s + 1.0) / 2.0
    l0p = t * (t - 1.0) / 2.0
    l1p = -(t + 1.0) * (t - 1.0)
    l2p = t * (t + 1.0) / 2.0
    for k in range(w):
        r = k - 1 - q
        pm1 = p[r - 1] if 0 <= r - 1 < w else 0.0
        p0 = p[r] if 0 <= r < w else 0.0
        p1 = p[r + 1] if 0 <= r + 1 < w else 0.0
        p2 = p[r + 2] if 0 <= r + 2 < w else 0.0
        summ = p0 * l0m + p1 * l1m + p2 * l2m
        sump = pm1 * l0p + p0 * l1p + p1 * l2p
        out[k] = 0.5 * (summ + sump)


@njit
def _idl_deriv(y, out):
    """IDL DERIV of equally spaced samples: centred inside, 3-point one-sided at the ends."""
    n = y.shape[0]
    for k in range(1, n - 1):
        out[k] = 0.5 * (y[k + 1] - y[k - 1])
    out[0] = 0.5 * (-3.0 * y[0] + 4.0 * y[1] - y[2])
    out[n - 1] = 0.5 * (3.0 * y[n - 1] - 4.0 * y[n - 2] + y[n - 3])


@njit_parallel
def _idl_fit(ebox, vbox, prof, blk_k, blk_f, orddy, valid, profile_weights):
    """Per (trace, column) weighted fit of ``a S + b S' + c S''`` to the box pixels.

    Parameters
    ----------
    ebox, vbox : (ntr, W, nx) float64
        Box pixels (row k = bottom + k) and their variance.
    prof : (ntr, nblock, W) float64
        Box profiles per block (sum 1), centred on row (W - 1) / 2.
    blk_k : (nx,) int64, blk_f : (nx,) float64
        Block index and fraction of block k + 1 per column.
    orddy : (ntr, nx) float64
        Shift (px) of the profile within its box per column.
    valid : (ntr, nx) bool
        Columns to fit (others return zeros).
    profile_weights : bool
        True: least-squares weights S^2 / max(V, 1) (the original); False: 1 / V (V > 0).

    Returns
    -------
    a, b, c : (ntr, nx) float64
        Coefficients of S, S' and S'' (all 0 where the normal matrix is singular or not valid).
    var_a : (ntr, nx) float64
        Variance of ``a`` propagated from ``vbox`` through the weighted fit (sandwich form).
    singular : (ntr, nx) bool
    """
    ntr, w, nx = ebox.shape
    a_out = np.zeros((ntr, nx))
    b_out = np.zeros((ntr, nx))
    c_out = np.zeros((ntr, nx))
    v_out = np.zeros((ntr, nx))
    sing = np.zeros((ntr, nx), dtype=np.bool_)
    for t in prange(ntr):
        p = np.empty(w)
        s0 = np.empty(w)
        s1 = np.empty(w)
        s2 = np.empty(w)
        wt = np.empty(w)
        for i in range(nx):
            if not valid[t, i]:
                continue
            k0 = blk_k[i]
            f = blk_f[i]
            for k in range(w):
                p[k] = prof[t, k0, k] * (1.0 - f) + prof[t, k0 + 1, k] * f if f != 0.0 else prof[t, k0, k]
            _idl_shift_profile(p, orddy[t, i], s0)
            _idl_deriv(s0, s1)
            _idl_deriv(s1, s2)
            a00 = a01 = a02 = a11 = a12 = a22 = 0.0
            y0 = y1 = y2 = 0.0
            for k in range(w):
                v = vbox[t, k, i]
                if profile_weights:
                    wt[k] = s0[k] * s0[k] / max(v, 1.0)
                else:
                    wt[k] = 1.0 / v if v > 0.0 else 0.0
                e = ebox[t, k, i]
                a00 += s0[k] * s0[k] * wt[k]
                a01 += s0[k] * s1[k] * wt[k]
                a02 += s0[k] * s2[k] * wt[k]
                a11 += s1[k] * s1[k] * wt[k]
                a12 += s1[k] * s2[k] * wt[k]
                a22 += s2[k] * s2[k] * wt[k]
                y0 += s0[k] * e * wt[k]
                y1 += s1[k] * e * wt[k]
                y2 += s2[k] * e * wt[k]
            # Cramer's rule on the symmetric 3x3 normal matrix
            c00 = a11 * a22 - a12 * a12
            c01 = a02 * a12 - a01 * a22
            c02 = a01 * a12 - a02 * a11
            det = a00 * c00 + a01 * c01 + a02 * c02
            if det == 0.0 or not np.isfinite(det):
                sing[t, i] = True
                continue
            c11 = a00 * a22 - a02 * a02
            c12 = a01 * a02 - a00 * a12
            c22 = a00 * a11 - a01 * a01
            a_out[t, i] = (c00 * y0 + c01 * y1 + c02 * y2) / det
            b_out[t, i] = (c01 * y0 + c11 * y1 + c12 * y2) / det
            c_out[t, i] = (c02 * y0 + c12 * y1 + c22 * y2) / det
            # var(a) = sum_k (w_k r.f_k)^2 V_k with r the first row of the inverse
            r0 = c00 / det
            r1 = c01 / det
            r2 = c02 / det
            va = 0.0
            for k in range(w):
                g = wt[k] * (r0 * s0[k] + r1 * s1[k] + r2 * s2[k])
                va += g * g * max(vbox[t, k, i], 0.0)
            v_out[t, i] = va
    return a_out, b_out, c_out, v_out, sing


# ----- joint extraction of overlapping traces ---------------------------------------------------------
@njit
def _band_ldl(nb, n, kb, lb, dd):
    """LDL^T of a symmetric band matrix: ``nb[i, k] = N[i, i - k]`` (k = 0..kb) -> ``lb[i, k] =
    L[i, i - k]`` (unit diagonal) and ``dd[i] = D[i]``. Returns False if a pivot is not positive."""
    for i in range(n):
        for k in range(kb, 0, -1):
            j = i - k
            if j < 0:
                continue
            s = nb[i, k]
            for m in range(max(i - kb, j - kb, 0), j):
                s -= lb[i, i - m] * lb[j, j - m] * dd[m]
            lb[i, k] = s / dd[j]
        s = nb[i, 0]
        for m in range(max(i - kb, 0), i):
            s -= lb[i, i - m] * lb[i, i - m] * dd[m]
        if not s > 0.0:
            return False
        dd[i] = s
        lb[i, 0] = 1.0
    return True


@njit
def _band_solve(lb, dd, n, kb, rhs, x):
    """Solve ``L D L^T x = rhs`` with the factors of :func:`_band_ldl`."""
    for i in range(n):
        s = rhs[i]
        for m in range(max(i - kb, 0), i):
            s -= lb[i, i - m] * x[m]
        x[i] = s
    for i in range(n):
        x[i] /= dd[i]
    for i in range(n - 1, -1, -1):
        s = x[i]
        for m in range(i + 1, min(i + kb, n - 1) + 1):
            s -= lb[m, m - i] * x[m]
        x[i] = s


@njit
def _band_inverse_diag(lb, dd, n, kb, sb, out):
    """Diagonal of ``N^-1`` from its LDL^T factors (Takahashi's recurrence on the band only).

    ``sb`` (n, kb + 1) is scratch for the band of the inverse, ``sb[i, k] = S[i, i - k]``.
    """
    for i in range(n - 1, -1, -1):
        top = min(i + kb, n - 1)
        for j in range(top, i, -1):
            s = 0.0
            for m in range(i + 1, top + 1):
                # S[j, m] from the band (|j - m| <= kb since both lie in (i, i + kb])
                s -= lb[m, m - i] * (sb[j, j - m] if j >= m else sb[m, m - j])
            sb[j, j - i] = s
        s = 1.0 / dd[i]
        for m in range(i + 1, top + 1):
            s -= lb[m, m - i] * sb[m, m - i]
        sb[i, 0] = s
        out[i] = s


@njit
def _joint_column(
    i, dcolumn, vcolumn, gcolumn, centers, order, prof, k, f, grid0, gstep, hi_ext, half, n_iter, kappa,
    max_reject, rejected, flux, fvar, pcover, contam, own, nrej, status, tid, cc, jlo, jhi,
    qlo, qhi, active, fl, vdiag, rows, first, count, use, pv, band, rhs, dcol, vcol,
):  # fmt: skip
    """One column of :func:`_joint_extract`, in the caller's scratch arrays (sized for every trace);
    ``order`` (ntr,) int64 is a permutation of the traces close to their order in y; ``dcolumn``,
    ``vcolumn``, ``gcolumn`` (ny,) are column i of the data, the variance floor and the good mask.

    ``band`` (4, ntr, K) holds the normal matrix, its L factor and the inverse's band; ``pv`` (rows,
    K) the profile values. Returns 0, or the band width K needed when ``pv`` is too narrow (nothing
    is written then).
    """
    ntr = centers.shape[0]
    ny = dcolumn.shape[0]
    # traces with a centre in this column, sorted by it (insertion sort over ``order``, the
    # traces' y order near this column: nearly sorted already)
    na = 0
    for o in range(ntr):
        t = order[o]
        c = centers[t, i]
        if np.isfinite(c):
            u = na
            while u > 0 and cc[u - 1] > c:
                cc[u] = cc[u - 1]
                tid[u] = tid[u - 1]
                u -= 1
            cc[u] = c
            tid[u] = t
            na += 1
    if na == 0:
        return 0
    # own rows (clipped to the frame) and the union of them over the column, in increasing rows
    npx = 0
    last = -1
    for u in range(na):
        jlo[u] = max(int(np.floor(cc[u] - half + 0.5)), 0)
        jhi[u] = min(int(np.ceil(cc[u] + half - 0.5)), ny - 1)
        for j in range(max(jlo[u], last + 1), jhi[u] + 1):
            if gcolumn[j]:
                rows[npx] = j
                dcol[npx] = dcolumn[j]
                vcol[npx] = vcolumn[j]
                npx += 1
        last = max(last, jhi[u])
    if npx == 0:
        for u in range(na):
            status[tid[u], i] |= ST_NO_WEIGHT
        return 0
    # contributors of each row: a contiguous range of the sorted traces (two pointers)
    a = 0
    b = 0
    kmax = 1
    for q in range(npx):
        j = rows[q]
        while a < na and cc[a] < j - hi_ext:
            a += 1
        if b < a:
            b = a
        while b < na and cc[b] <= j - grid0:
            b += 1
        first[q] = a
        count[q] = b - a
        kmax = max(kmax, b - a)
    if kmax > pv.shape[1]:
        return kmax
    # profile values trace by trace: consecutive rows step the profile grid by a constant
    ng = prof.shape[2]
    inv = 1.0 / gstep
    q0 = 0
    for q in range(npx):
        use[q] = True
    for u in range(na):
        t = tid[u]
        while q0 < npx and first[q0] + count[q0] <= u:
            q0 += 1
        for q in range(q0, npx):
            if first[q] > u:
                break
            g = (rows[q] - cc[u] - grid0) * inv
            val = 0.0
            if 0.0 <= g <= ng - 1.0:
                i0 = min(int(g), ng - 2)
                w1 = g - i0
                val = prof[t, k, i0] + w1 * (prof[t, k, i0 + 1] - prof[t, k, i0])
                if f != 0.0:
                    vb = prof[t, k + 1, i0] + w1 * (prof[t, k + 1, i0 + 1] - prof[t, k + 1, i0])
                    val += f * (vb - val)
            pv[q, u - first[q]] = val
    # own pixel ranges in the row list (both sorted: one sweep), coverage, activity, start values
    q = 0
    for u in range(na):
        while q < npx and rows[q] < jlo[u]:
            q += 1
        qlo[u] = q
    q = 0
    for u in range(na):
        while q < npx and rows[q] <= jhi[u]:
            q += 1
        qhi[u] = q
    for u in range(na):
        # the aperture's whole profile weight: the good rows' values are in pv already
        ptot = 0.0
        q = qlo[u]
        for j in range(int(np.floor(cc[u] - half + 0.5)), int(np.ceil(cc[u] + half - 0.5)) + 1):
            if q < qhi[u] and rows[q] == j:
                m = u - first[q]
                if 0 <= m < count[q]:
                    ptot += pv[q, m]
                q += 1
            else:
                ptot += _profile_value(prof, tid[u], k, f, grid0, gstep, j - cc[u])
        pgood = 0.0
        sd = 0.0
        for q in range(qlo[u], qhi[u]):
            m = u - first[q]
            if 0 <= m < count[q] and pv[q, m] > 0.0:
                pgood += pv[q, m]
                sd += dcol[q]
        active[u] = pgood > 0.0 and ptot > 0.0
        fl[u] = 0.0
        if active[u]:
            pcover[tid[u], i] = pgood / ptot
            fl[u] = sd / pgood
    # inactive traces leave the model
    for q in range(npx):
        for m in range(count[q]):
            if not active[first[q] + m]:
                pv[q, m] = 0.0
    kb = kmax - 1
    nb = band[0]
    lb = band[1]
    sb = band[2]
    dd = band[3, :, 0]
    ok = True
    for r in range(max_reject + 1):
        for _it in range(n_iter):
            _joint_normal(dcol, vcol, first, count, use, pv, fl, npx, na, kb, nb, rhs)
            for u in range(na):
                if not active[u] or nb[u, 0] <= 0.0:
                    active[u] = False
                    _decouple(nb, u, na, kb)
                    rhs[u] = 0.0
            ok = _band_ldl(nb, na, kb, lb, dd)
            if not ok:
                break
            _band_solve(lb, dd, na, kb, rhs, fl)
        if not ok:
            break
        nnew = 0
        for u in range(na):
            if not active[u]:
                continue
            worst = -1
            zmax = kappa * kappa
            for q in range(qlo[u], qhi[u]):
                if not use[q]:
                    continue
                j = rows[q]
                mod = 0.0
                for m in range(count[q]):
                    mod += fl[first[q] + m] * pv[q, m]
                v = vcol[q] + max(mod, 0.0)
                z = (dcol[q] - mod) ** 2 / v
                if z > zmax:
                    zmax = z
                    worst = q
            if worst >= 0 and r < max_reject:
                use[worst] = False
                j = rows[worst]
                rejected[j, i] = True
                mod = 0.0
                for m in range(count[worst]):
                    mod += fl[first[worst] + m] * pv[worst, m]
                nrej[tid[u], i] += 1 if dcol[worst] > mod else 1000
                nnew += 1
        if nnew == 0:
            break
    if not ok:
        for u in range(na):
            status[tid[u], i] |= ST_NO_WEIGHT
        return 0
    # variance from the converged model
    _joint_normal(dcol, vcol, first, count, use, pv, fl, npx, na, kb, nb, rhs)
    for u in range(na):
        if not active[u] or nb[u, 0] <= 0.0:
            _decouple(nb, u, na, kb)
    if not _band_ldl(nb, na, kb, lb, dd):
        for u in range(na):
            status[tid[u], i] |= ST_NO_WEIGHT
        return 0
    _band_inverse_diag(lb, dd, na, kb, sb, vdiag)
    for u in range(na):
        t = tid[u]
        if not active[u]:
            status[t, i] |= ST_NO_WEIGHT
            continue
        flux[t, i] = fl[u]
        fvar[t, i] = vdiag[u]
        # the other traces' light inside the box aperture (good pixels, fractional edges)
        cn = 0.0
        ow = 0.0
        for q in range(qlo[u], qhi[u]):
            j = rows[q]
            w = min(j + 0.5, cc[u] + half) - max(j - 0.5, cc[u] - half)
            if w <= 0.0:
                continue
            for m in range(count[q]):
                uu = first[q] + m
                if uu == u:
                    ow += w * fl[uu] * pv[q, m]
                else:
                    cn += w * fl[uu] * pv[q, m]
        contam[t, i] = cn
        own[t, i] = ow
    return 0


@njit
def _joint_normal(dcol, vcol, first, count, use, pv, fl, npx, na, kb, nb, rhs):
    """Band of the weighted normal matrix (model variance from the fluxes ``fl``) and its rhs."""
    for u in range(na):
        rhs[u] = 0.0
        for m in range(kb + 1):
            nb[u, m] = 0.0
    for q in range(npx):
        if not use[q]:
            continue
        mod = 0.0
        for m in range(count[q]):
            mod += fl[first[q] + m] * pv[q, m]
        v = vcol[q] + max(mod, 0.0)
        dv = dcol[q] / v
        for m in range(count[q]):
            u = first[q] + m
            pw = pv[q, m] / v
            rhs[u] += pv[q, m] * dv
            for l in range(m + 1):
                nb[u, m - l] += pw * pv[q, l]


@njit
def _decouple(nb, u, na, kb):
    """Make unknown u independent with unit diagonal (its flux is then 0)."""
    for m in range(kb + 1):
        nb[u, m] = 0.0
    for m in range(1, kb + 1):
        if u + m < na:
            nb[u + m, m] = 0.0
    nb[u, 0] = 1.0


@njit_parallel
def _joint_extract(
    data,
    var0,
    good,
    centers,
    prof,
    blk_k,
    blk_f,
    grid0,
    gstep,
    half,
    n_iter,
    kappa,
    max_reject,
    rejected,
):
    """Optimal extraction fitting, column by column, the fluxes of all traces at once.

    Each trace's own pixels are the rows touching ``[c - half, c + half]``; every trace whose profile
    (offsets ``grid0 .. grid0 + (ngrid - 1) gstep``) reaches a pixel contributes to its model
    ``m_j = sum_t f_t P_t(j - c_t)``. The fluxes minimise ``sum_j (d_j - m_j)^2 / V_j`` over the union
    of the own pixels, ``V_j = var0_j + max(m_j, 0)`` (model variance, ``n_iter`` reweighted solves of
    the banded normal equations); then the worst own pixel of each trace beyond ``kappa`` sigma is
    rejected and the column refitted, at most ``max_reject`` times. Traces that do not overlap give
    exactly the single-trace Horne estimate.

    Parameters are those of :func:`_extract` (``half`` the aperture half height).

    Returns
    -------
    flux, fvar, pcover : (ntr, nx) float64
        Fluxes, their variance (diagonal of the inverse normal matrix), and the profile weight of the
        good own pixels over the whole aperture's.
    contam, own : (ntr, nx) float64
        Light of the other traces' model inside the trace's box aperture (fractional edge rows, good
        pixels), and the trace's own model light there.
    nrej, status : (ntr, nx) int64
        Rejected pixels (positive outliers counted, negative ones add 1000); ST_NO_WEIGHT bits.
    """
    ntr, nx = centers.shape
    ny = data.shape[0]
    ng = prof.shape[2]
    hi_ext = grid0 + (ng - 1) * gstep
    const_v0 = var0.shape[0] == 1 and var0.shape[1] == 1
    flux = np.full((ntr, nx), np.nan)
    fvar = np.full((ntr, nx), np.nan)
    pcover = np.zeros((ntr, nx))
    contam = np.full((ntr, nx), np.nan)
    own = np.full((ntr, nx), np.nan)
    nrej = np.zeros((ntr, nx), dtype=np.int64)
    status = np.zeros((ntr, nx), dtype=np.int64)
    nap = int(2.0 * half + 3.0)
    # columns in chunks: each chunk allocates its scratch once (allocation inside a prange loop
    # serialises the threads on the allocator)
    nchunk = min(nx, 64)
    for ch in prange(nchunk):
        tid_all = np.empty(ntr, dtype=np.int64)
        cc_all = np.empty(ntr)
        jlo_all = np.empty(ntr, dtype=np.int64)
        jhi_all = np.empty(ntr, dtype=np.int64)
        qlo_all = np.empty(ntr, dtype=np.int64)
        qhi_all = np.empty(ntr, dtype=np.int64)
        active_all = np.empty(ntr, dtype=np.bool_)
        fl_all = np.empty(ntr)
        vdiag_all = np.empty(ntr)
        rows_all = np.empty(ntr * nap, dtype=np.int64)
        first_all = np.empty(ntr * nap, dtype=np.int64)
        count_all = np.empty(ntr * nap, dtype=np.int64)
        use_all = np.empty(ntr * nap, dtype=np.bool_)
        cap_k = 4
        pv_all = np.empty((ntr * nap, cap_k))
        band_all = np.empty((4, ntr, cap_k))
        rhs_all = np.empty(ntr)
        dcol_all = np.empty(ntr * nap)
        vcol_all = np.empty(ntr * nap)
        dT = np.empty((8, ny))
        vT = np.empty((8, ny))
        gT = np.empty((8, ny), dtype=np.bool_)
        i_lo = ch * nx // nchunk
        i_hi = (ch + 1) * nx // nchunk
        # the traces' order in y hardly changes along x: the chunk's first column's order
        order = np.argsort(centers[:, (i_lo + i_hi) // 2])
        for i_b in range(i_lo, i_hi, 8):
            nb_cols = min(8, i_hi - i_b)
            # 8 columns at a time copied row by row (contiguous reads) into column scratch: the
            # fits then walk contiguous columns instead of a 32 kB stride per row
            for j in range(ny):
                for c in range(nb_cols):
                    dT[c, j] = data[j, i_b + c]
                    gT[c, j] = good[j, i_b + c]
                    vT[c, j] = var0[0, 0] if const_v0 else var0[j, i_b + c]
            for c in range(nb_cols):
                i = i_b + c
                for _try in range(2):
                    need = _joint_column(
                        i, dT[c], vT[c], gT[c], centers, order, prof, blk_k[i], blk_f[i], grid0, gstep,
                        hi_ext, half, n_iter, kappa, max_reject, rejected, flux, fvar, pcover, contam, own,
                        nrej, status, tid_all, cc_all, jlo_all, jhi_all, qlo_all, qhi_all, active_all, fl_all,
                        vdiag_all, rows_all, first_all, count_all, use_all, pv_all, band_all, rhs_all,
                        dcol_all, vcol_all,
                    )  # fmt: skip
                    if need == 0:
                        break
                    # more traces overlap a pixel than the scratch holds: widen it and redo the column
                    cap_k = need
                    pv_all = np.empty((ntr * nap, cap_k))
                    band_all = np.empty((4, ntr, cap_k))
    return flux, fvar, pcover, contam, own, nrej, status


@njit_parallel
def _render_model(ny, centers, flux, prof, blk_k, blk_f, grid0, gstep):
    """Model image (ny, nx): the sum over traces of ``flux[t, i] P_t(j - c)`` wherever the profile
    reaches (NaN centres or fluxes are skipped). Parallel over blocks of 8 columns, each rendered
    into contiguous column scratch and copied out row by row."""
    ntr, nx = centers.shape
    ng = prof.shape[2]
    hi_ext = grid0 + (ng - 1) * gstep
    out = np.zeros((ny, nx))
    nblk = (nx + 7) // 8
    for bb in prange(nblk):
        i_b = bb * 8
        nb_cols = min(8, nx - i_b)
        col = np.zeros((8, ny))
        for c in range(nb_cols):
            i = i_b + c
            k = blk_k[i]
            f = blk_f[i]
            for t in range(ntr):
                cen = centers[t, i]
                fl = flux[t, i]
                if not (np.isfinite(cen) and np.isfinite(fl)):
                    continue
                j0 = max(int(np.ceil(cen + grid0)), 0)
                j1 = min(int(np.floor(cen + hi_ext)), ny - 1)
                for j in range(j0, j1 + 1):
                    col[c, j] += fl * _profile_value(prof, t, k, f, grid0, gstep, j - cen)
        for j in range(ny):
            for c in range(nb_cols):
                out[j, i_b + c] = col[c, j]
    return out


@njit
def _joint_profile_samples(
    data, model, good, centers, flux, prof, blk_k, blk_f, blk, nblock, grid0, gstep, ngrid, rmax, rsym, pfloor
):
    """Profile samples of every trace with the other traces' model light removed.

    As :func:`_profile_samples`, each good pixel within ``rmax`` of a trace gives the sample
    ``(data - model + own) / flux`` at offset ``d = j - c`` (own = the trace's share of ``model``,
    recomputed from ``prof`` with blocks ``blk_k``/``blk_f``), split between the two nearest nodes of
    the output grid ``grid0 + gstep * n`` (n < ngrid, the grid of ``prof``); ``blk`` (nx,) assigns
    columns to output blocks. A sample's weight ``o^2 / (o^2 + r^2)`` (o = flux times the larger of
    the trace's profile at d and -d, at least ``pfloor``; r = the other traces' model light) keeps
    pixels dominated by a neighbour's light from deciding the profile. Beyond ``rsym`` px the wings are
    taken as symmetric: each sample also counts at -d, so a wing hidden under a neighbour's light is
    measured from its clean side. :func:`_sample_profiles` weighted.
    """
    return _sample_profiles(
        data, model, good, centers, flux, prof, blk_k, blk_f, blk, nblock, grid0, gstep, ngrid, rmax, rsym,
        pfloor, True,
    )  # fmt: skip


@njit_parallel
def _sample_profiles(
    data, model, good, centers, flux, prof, blk_k, blk_f, blk, nblock, grid0, gstep, ngrid, rmax, rsym,
    pfloor, weighted,
):  # fmt: skip
    """The body of :func:`_profile_samples` (``weighted=False``: weight 1, sample ``data / flux``, and
    ``model``, ``prof``, ``blk_k``, ``blk_f``, ``pfloor`` unused) and of :func:`_joint_profile_samples`
    (``weighted=True``). Parallel over traces (independent outputs).

    The grid split is written out here, not in a helper taking the sum arrays: called per pixel, such
    a helper made the unweighted loop 3x slower (measured) although numba inlined it.
    """
    ntr, nx = centers.shape
    ny = data.shape[0]
    sv = np.zeros((ntr, nblock, ngrid))
    sw = np.zeros((ntr, nblock, ngrid))
    for t in prange(ntr):
        for i in range(nx):
            c = centers[t, i]
            fl = flux[t, i]
            b = blk[i]
            if b < 0 or not np.isfinite(c) or not fl > 0.0:
                continue
            jlo = max(int(np.ceil(c - rmax)), 0)
            jhi = min(int(np.floor(c + rmax)), ny - 1)
            for j in range(jlo, jhi + 1):
                if not good[j, i]:
                    continue
                d = j - c
                if weighted:
                    pd = _profile_value(prof, t, blk_k[i], blk_f[i], grid0, gstep, d)
                    pm = _profile_value(prof, t, blk_k[i], blk_f[i], grid0, gstep, -d)
                    own = fl * pd
                    oth = model[j, i] - own
                    o = fl * max(pd, pm, pfloor)
                    w = o * o / (o * o + oth * oth)
                    v = (data[j, i] - oth) / fl
                else:
                    w = 1.0  # exact: the products below equal the unweighted ones
                    v = data[j, i] / fl
                for side in range(2):
                    dd = d if side == 0 else -d
                    if side == 1 and abs(d) <= rsym:
                        break
                    g = (dd - grid0) / gstep
                    i0 = int(np.floor(g))
                    if i0 < 0 or i0 >= ngrid - 1:
                        continue
                    u = g - i0
                    sv[t, b, i0] += (1.0 - u) * w * v
                    sw[t, b, i0] += (1.0 - u) * w
                    sv[t, b, i0 + 1] += u * w * v
                    sw[t, b, i0 + 1] += u * w
    return sv, sw


@njit_parallel
def _spline_smooth(values, weights, first, bvals, ncoef):
    """Weighted least-squares cubic spline of each row of ``values`` (nf, ng) on fixed knots.

    ``first`` (ng,) int64: index of the first of the 4 B-splines non-zero at node g, ``bvals``
    (ng, 4) their values there; ``weights`` (nf, ng) multiply the squared residuals (0 = unused node).
    The banded normal equations are solved by LDL^T. Parallel over rows (independent fits).

    Returns
    -------
    out : (nf, ng) float64
        The fitted splines at the nodes (0 where the fit failed).
    ok : (nf,) bool
        False where the normal matrix was not positive definite (too few samples).
    """
    nf, ng = values.shape
    out = np.zeros((nf, ng))
    ok = np.zeros(nf, dtype=np.bool_)
    for r in prange(nf):
        nb = np.zeros((ncoef, 4))
        rhs = np.zeros(ncoef)
        for g in range(ng):
            w = weights[r, g]
            if not w > 0.0:
                continue
            i0 = first[g]
            for a in range(4):
                ba = bvals[g, a] * w
                rhs[i0 + a] += ba * values[r, g]
                for b in range(a + 1):
                    nb[i0 + a, a - b] += ba * bvals[g, b]
        lb = np.zeros((ncoef, 4))
        dd = np.ones(ncoef)
        c = np.zeros(ncoef)
        if not _band_ldl(nb, ncoef, 3, lb, dd):
            continue
        _band_solve(lb, dd, ncoef, 3, rhs, c)
        ok[r] = True
        for g in range(ng):
            s = 0.0
            for a in range(4):
                s += bvals[g, a] * c[first[g] + a]
            out[r, g] = s
    return out, ok


@njit_parallel
def _inter_order_mask(ny, centers, half):
    """(ny, nx) bool: True where ``|row - centre| > half`` for every finite centre of the column.

    Only the few rows around each centre are visited (the full-frame comparison per trace was a
    4096 x 4096 pass per trace); the same comparison decides each visited row, so the result is
    identical to the dense test. Columns are independent: prange over them.
    """
    ntr, nx = centers.shape
    far = np.ones((ny, nx), dtype=np.bool_)
    for x in prange(nx):
        for t in range(ntr):
            c = centers[t, x]
            if not np.isfinite(c):
                continue
            lo = max(int(np.floor(c - half)) - 1, 0)
            hi = min(int(np.ceil(c + half)) + 1, ny - 1)
            for r in range(lo, hi + 1):
                if abs(r - c) <= half:
                    far[r, x] = False
    return far


def _warmup():
    """Compile every kernel on tiny inputs."""
    y = np.arange(30.0)
    col = 100.0 * np.exp(-0.5 * ((y - 15.2) / 1.5) ** 2) / (np.sqrt(2 * np.pi) * 1.5)
    data = np.ascontiguousarray(np.tile(col, (4, 1)).T)
    good = np.ones(data.shape, dtype=np.bool_)
    var0 = np.full(data.shape, 25.0)
    centers = np.full((1, 4), 15.2)
    grid = np.arange(-8.0, 8.01, 0.5)
    prof = np.exp(-0.5 * (grid / 1.5) ** 2)[None, None, :] / (np.sqrt(2 * np.pi) * 1.5)
    prof = np.ascontiguousarray(np.repeat(prof, 2, axis=1))
    rej = np.zeros(data.shape, dtype=np.bool_)
    _extract(
        data,
        var0 + data,
        var0,
        good,
        centers,
        prof,
        np.zeros(4, dtype=np.int64),
        np.zeros(4),
        -8.0,
        0.5,
        5.25,
        True,
        2,
        5.0,
        2,
        rej,
    )
    _profile_samples(
        data, good, centers, np.full((1, 4), 100.0), np.zeros(4, dtype=np.int64), 1, -8.0, 0.5, grid.size, 7.0
    )
    _box_column(data, good, 0, 15.2, 5.25)
    w = 11
    pbox = np.exp(-0.5 * ((np.arange(w) - 5.0) / 1.5) ** 2)
    pbox = np.ascontiguousarray(np.broadcast_to(pbox / pbox.sum(), (1, 2, w)))
    ebox = np.ascontiguousarray(np.broadcast_to(100.0 * pbox[0, 0][None, :, None], (1, w, 4)))
    for pw in (True, False):
        _idl_fit(
            ebox,
            ebox + 25.0,
            pbox,
            np.zeros(4, dtype=np.int64),
            np.zeros(4),
            np.full((1, 4), 0.2),
            np.ones((1, 4), dtype=np.bool_),
            pw,
        )
    _profile_value(prof, 0, 0, 0.5, -8.0, 0.5, 0.3)
    _spline_smooth(
        np.ones((2, 5)), np.ones((2, 5)), np.array([0, 0, 1, 1, 1], dtype=np.int64), np.full((5, 4), 0.25), 5
    )
    # two overlapping traces for the joint kernels
    cen2 = np.ascontiguousarray(np.vstack([centers, centers - 6.0]))
    prof2 = np.ascontiguousarray(np.vstack([prof, prof]))
    bk, bf = np.zeros(4, dtype=np.int64), np.zeros(4)
    _joint_extract(data, var0 + data, good, cen2, prof2, bk, bf, -8.0, 0.5, 3.0, 2, 5.0, 1, rej)
    model = _render_model(data.shape[0], cen2, np.full((2, 4), 100.0), prof2, bk, bf, -8.0, 0.5)
    _joint_profile_samples(
        data,
        model,
        good,
        cen2,
        np.full((2, 4), 100.0),
        prof2,
        bk,
        bf,
        bk,
        1,
        -8.0,
        0.5,
        grid.size,
        7.0,
        4.0,
        1e-6,
    )
    _inter_order_mask(30, np.ascontiguousarray(np.vstack([centers, np.full((1, 4), np.nan)])), 5.25)
