"""Jitted kernels of nres.wavecal: pixel-integrated Gaussian line fits (Levenberg-Marquardt).

Kernels take contiguous float64/int64 arrays and scalars only; options come from nres._jit.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import njit

__all__ = ["fit_gaussians", "normal_equations", "vote_match_orders"]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
NPAR = 4  # amplitude (total electrons), centre (px), sigma (px), background (e-/px)


@njit
def _solve4(a, b, out):
    """Solve the 4x4 system a x = b by Gaussian elimination with partial pivoting; False if singular."""
    m = a.copy()
    v = b.copy()
    n = 4
    for c in range(n):
        p = c
        best = abs(m[c, c])
        for r in range(c + 1, n):
            if abs(m[r, c]) > best:
                best = abs(m[r, c])
                p = r
        if best == 0.0 or not math.isfinite(best):
            return False
        if p != c:
            for k in range(n):
                t = m[c, k]
                m[c, k] = m[p, k]
                m[p, k] = t
            t = v[c]
            v[c] = v[p]
            v[p] = t
        for r in range(c + 1, n):
            f = m[r, c] / m[c, c]
            for k in range(c, n):
                m[r, k] -= f * m[c, k]
            v[r] -= f * v[c]
    for c in range(n - 1, -1, -1):
        s = v[c]
        for k in range(c + 1, n):
            s -= m[c, k] * out[k]
        out[c] = s / m[c, c]
    return True


@njit
def _normal(flux, weight, lo, hi, p, nmat, grad):
    """Normal matrix J^T W J, gradient J^T W r and chi^2 of one line's window at parameters p."""
    for i in range(4):
        grad[i] = 0.0
        for j in range(4):
            nmat[i, j] = 0.0
    amp, mu, sig, bkg = p[0], p[1], p[2], p[3]
    chi2 = 0.0
    jac = np.empty(4)
    for k in range(lo, hi):
        w = weight[k]
        if w <= 0.0:
            continue
        a = (k - 0.5 - mu) / sig
        b = (k + 0.5 - mu) / sig
        pa = 0.5 * math.erfc(-a / _SQRT2)
        pb = 0.5 * math.erfc(-b / _SQRT2)
        da = _INV_SQRT2PI * math.exp(-0.5 * a * a)
        db = _INV_SQRT2PI * math.exp(-0.5 * b * b)
        r = flux[k] - (bkg + amp * (pb - pa))
        jac[0] = pb - pa
        jac[1] = amp * (da - db) / sig
        jac[2] = amp * (da * a - db * b) / sig
        jac[3] = 1.0
        chi2 += w * r * r
        for i in range(4):
            grad[i] += w * jac[i] * r
            for j in range(4):
                nmat[i, j] += w * jac[i] * jac[j]
    return chi2


@njit
def fit_gaussians(flux, weight, start, stop, init, max_iter, params, errors, chi2, status):
    """Fit ``bkg + A * integral of N(mu, sig) over each pixel`` to each line's window.

    Parameters
    ----------
    flux, weight : float64 (npix,)
        Concatenated data rows and inverse variances (weight 0 = ignored pixel). The pixel index
        ``k`` is the coordinate: pixel k spans [k - 0.5, k + 0.5].
    start, stop : int64 (n,)
        Window ``[start, stop)`` of each line in ``flux``.
    init : float64 (n, 4)
        Starting (A, mu, sig, bkg); mu in the same index coordinate.
    max_iter : int
        Levenberg-Marquardt iterations.
    params, errors : float64 (n, 4), out
        Fitted parameters and their standard errors from the inverse normal matrix (the weights
        are inverse variances, so no chi^2 rescaling).
    chi2 : float64 (n,), out
        chi^2 of the fit.
    status : int64 (n,), out
        0 converged; 1 not converged in max_iter; 2 singular or left its window / invalid width.
    """
    nmat = np.empty((4, 4))
    trial = np.empty((4, 4))
    grad = np.empty(4)
    grad_t = np.empty(4)
    step = np.empty(4)
    p = np.empty(4)
    q = np.empty(4)
    for n in range(start.size):
        lo, hi = start[n], stop[n]
        for i in range(4):
            p[i] = init[n, i]
        lam = 1e-3
        cur = _normal(flux, weight, lo, hi, p, nmat, grad)
        stat = 1
        for _it in range(max_iter):
            for i in range(4):
                for j in range(4):
                    trial[i, j] = nmat[i, j]
                trial[i, i] = nmat[i, i] * (1.0 + lam)
            if not _solve4(trial, grad, step):
                stat = 2
                break
            for i in range(4):
                q[i] = p[i] + step[i]
            if q[2] <= 0.05 or q[1] < lo - 0.5 or q[1] > hi - 0.5:
                lam *= 10.0
                if lam > 1e10:
                    stat = 2
                    break
                continue
            new = _normal(flux, weight, lo, hi, q, trial, grad_t)
            if new <= cur:
                small = abs(step[1]) < 1e-7 and (cur - new) <= 1e-10 * (cur + 1e-300)
                for i in range(4):
                    p[i] = q[i]
                cur = _normal(flux, weight, lo, hi, p, nmat, grad)
                lam = max(lam * 0.1, 1e-12)
                if small or abs(step[1]) < 1e-9:
                    stat = 0
                    break
            else:
                lam *= 10.0
                if lam > 1e10:
                    stat = 0 if abs(step[1]) < 1e-6 else 2
                    break
        for i in range(4):
            params[n, i] = p[i]
        chi2[n] = cur
        inv_col = np.empty(4)
        unit = np.zeros(4)
        ok = True
        for c in range(4):
            for i in range(4):
                unit[i] = 1.0 if i == c else 0.0
            if not _solve4(nmat, unit, inv_col):
                ok = False
                break
            errors[n, c] = math.sqrt(inv_col[c]) if inv_col[c] > 0.0 else np.nan
        if not ok:
            stat = 2
            for c in range(4):
                errors[n, c] = np.nan
        status[n] = stat


@njit
def normal_equations(basis, weight, y, nmat, rhs):
    """Weighted normal equations ``nmat = B^T W B`` and ``rhs = B^T W y`` (B: (n, p), W diagonal).

    A plain loop: multithreaded BLAS on a few-thousand-row matrix is slower than this on a busy
    machine, and the sums stay in a fixed order (reproducible to the bit).
    """
    n, p = basis.shape
    for i in range(p):
        rhs[i] = 0.0
        for j in range(p):
            nmat[i, j] = 0.0
    for k in range(n):
        w = weight[k]
        if w == 0.0:
            continue
        for i in range(p):
            bi = w * basis[k, i]
            rhs[i] += bi * y[k]
            for j in range(i, p):
                nmat[i, j] += bi * basis[k, j]
    for i in range(p):
        for j in range(i):
            nmat[i, j] = nmat[j, i]


@njit
def vote_match_orders(lam_obs, obs_start, obs_stop, lam_ref, ref_start, ref_stop, dw, ds, min_votes, out):
    """The original's pair-voting matcher (lineseg + matchline + uniqixg) for many orders at once.

    For order k the observed lines ``lam_obs[obs_start[k]:obs_stop[k]]`` (predicted nm, sorted) are
    matched to the list lines ``lam_ref[ref_start[k]:ref_stop[k]]`` (nm, the list's own order).
    Every unordered pair is described by its float32 mean and separation (as IDL's ``lineseg``); a
    list pair votes for (lower, lower) and (upper, upper) of each observed pair within ``dw`` in mean
    and ``ds`` in separation (float32 comparisons, as IDL); cells with at least max(min_votes, 2/3 of
    the order's largest count) votes are accepted; each observed line keeps the accepted list line
    nearest its predicted wavelength (the lowest list index on ties). ``out[i]`` receives the index
    into ``lam_ref`` of line i's match, or -1; orders with fewer than 2 observed or 3 list lines
    give -1 throughout (the caller applies the original's rules for them).

    Observed pairs are sorted by separation and each list pair visits only those within ``ds``
    of its own (a binary search), instead of all pairs: the same votes, ~100x fewer comparisons.
    """
    dw32 = np.float32(dw)
    ds32 = np.float32(ds)
    for k in range(obs_start.size):
        o0, o1, r0, r1 = obs_start[k], obs_stop[k], ref_start[k], ref_stop[k]
        no, nr = o1 - o0, r1 - r0
        for i in range(o0, o1):
            out[i] = -1
        if no < 2 or nr <= 2:
            continue
        npo = no * (no - 1) // 2
        mean_o = np.empty(npo)
        sep_o = np.empty(npo)
        lo_o = np.empty(npo, dtype=np.int64)
        hi_o = np.empty(npo, dtype=np.int64)
        c = 0
        for a in range(no):
            for b in range(a + 1, no):
                mean_o[c] = np.float32((lam_obs[o0 + b] + lam_obs[o0 + a]) / 2.0)
                sep_o[c] = np.float32(abs(lam_obs[o0 + b] - lam_obs[o0 + a]))
                lo_o[c] = a
                hi_o[c] = b
                c += 1
        order = np.argsort(sep_o, kind="mergesort")
        sep_sorted = sep_o[order]
        votes = np.zeros((nr, no), dtype=np.int64)
        for a in range(nr):
            for b in range(a + 1, nr):
                mean_r = np.float32((lam_ref[r0 + b] + lam_ref[r0 + a]) / 2.0)
                sep_r = np.float32(abs(lam_ref[r0 + b] - lam_ref[r0 + a]))
                # a window wider than ds in float64; the exact float32 test follows
                q0 = np.searchsorted(sep_sorted, sep_r - 2.0 * ds)
                q1 = np.searchsorted(sep_sorted, sep_r + 2.0 * ds, side="right")
                for q in range(q0, q1):
                    p = order[q]
                    if (
                        abs(np.float32(mean_o[p] - mean_r)) <= dw32
                        and abs(np.float32(sep_o[p] - sep_r)) <= ds32
                    ):
                        votes[a, lo_o[p]] += 1
                        votes[b, hi_o[p]] += 1
        vmax = 0
        for a in range(nr):
            for i in range(no):
                if votes[a, i] > vmax:
                    vmax = votes[a, i]
        thresh = max(float(min_votes), vmax * 2.0 / 3.0)
        for i in range(no):
            best = -1
            best_d = 0.0
            for a in range(nr):
                if votes[a, i] >= thresh:
                    dd = abs(lam_obs[o0 + i] - lam_ref[r0 + a])
                    if best < 0 or dd < best_d:
                        best = a
                        best_d = dd
            if best >= 0:
                out[o0 + i] = r0 + best


def _warmup():
    """Compile every kernel on tiny inputs."""
    k = np.arange(9, dtype=np.float64)
    flux = 10.0 + 1000.0 * np.exp(-0.5 * ((k - 4.2) / 1.2) ** 2)
    weight = 1.0 / (flux + 25.0)
    init = np.array([[3000.0, 4.0, 1.3, 10.0]])
    params, errors = np.empty((1, 4)), np.empty((1, 4))
    chi2, status = np.empty(1), np.empty(1, dtype=np.int64)
    fit_gaussians(flux, weight, np.array([0]), np.array([9]), init, 20, params, errors, chi2, status)
    basis = np.ones((3, 2))
    normal_equations(basis, np.ones(3), np.ones(3), np.empty((2, 2)), np.empty(2))
    lam = np.array([500.0, 500.4, 501.1, 501.5, 502.0, 502.2, 503.0])
    vote_match_orders(
        lam,
        np.array([0]),
        np.array([7]),
        lam + 0.001,
        np.array([0]),
        np.array([7]),
        0.3,
        0.015,
        5,
        np.empty(7, dtype=np.int64),
    )
