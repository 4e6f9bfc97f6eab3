"""Jitted kernels of nres.wavecal: pixel-integrated Gaussian line fits (Levenberg-Marquardt).

Kernels take contiguous float64/int64 arrays and scalars only; options come from nres._jit.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import njit

__all__ = ["fit_gaussians", "normal_equations"]

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
