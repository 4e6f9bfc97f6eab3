"""Weighted linear least squares with iterative robust clipping (fiber offsets and drift share it),
and the two error components line-centre errors leave out (the solver and the fiber offsets share them).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..errors import FitError

__all__ = ["clipped_lstsq", "variance_components", "grouped_normal", "SCATTER_P"]

#: Significance below which the scatter of the per-order mean residuals is taken as a shared
#: per-order error (false alarm once in a thousand fits of pure line noise).
SCATTER_P = 1e-3


def clipped_lstsq(design, y, err, weight, *, clip, max_iter, min_used, who):
    """Fit ``y ~ design @ coef`` with ``weight``, leaving out points beyond ``clip`` robust errors.

    Parameters
    ----------
    design : ndarray (n, p)
        Design matrix.
    y, err, weight : ndarray (n,)
        Data, their standard errors (for the normalised residuals) and the fit weights (usually
        ``1 / err**2``).
    clip : float
        Points with ``|residual| / err > clip * max(1, robust sigma)`` are not used; the robust
        sigma is 1.4826 x the median absolute normalised residual of the used points.
    max_iter : int
        Fit-and-clip iterations; stops earlier when the used set no longer changes.
    min_used : int
        Fewer used points after a clip raise :class:`FitError`.
    who : str
        Name of the calling function, for the error message.

    Returns
    -------
    coef : ndarray (p,)
        Coefficients fitted to the returned ``used`` points.
    used : ndarray of bool (n,)
    resid : ndarray (n,)
        ``y - design @ coef`` for every point.
    """
    used = np.ones(y.size, dtype=bool)

    def fit(keep):
        sw = np.sqrt(weight * keep)
        coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
        return coef, y - design @ coef

    coef, resid = fit(used)
    for _ in range(max_iter):
        norm = resid / err
        robust = 1.4826 * np.median(np.abs(norm[used]))
        new = np.abs(norm) <= clip * max(robust, 1.0)
        if np.array_equal(new, used):
            break
        if new.sum() < min_used:
            msg = f"{who}: only {int(new.sum())} points survive clipping (need {min_used})"
            raise FitError(msg)
        used = new
        coef, resid = fit(used)  # the coefficients always belong to the returned used set
    return coef, used, resid


def variance_components(resid, w, group, k, n_par):
    """(line variance scale, shared per-group variance) from the residuals of a fit.

    ``resid`` (n,) residuals with inverse variances ``w`` in groups ``group`` (orders); the fit
    spent ``n_par`` parameters, ``k`` of them on the group level (order degree + 1). When the
    group means ``rbar_g`` scatter significantly more than their errors say (p < ``SCATTER_P``),
    the scale is the within-group chi^2 per degree of freedom (``n - G - (n_par - k)``, never
    below 1; it does not see group offsets) and the group variance tau^2 the method-of-moments
    solution of ``sum_g rbar_g^2 / (1 / W_g + tau^2) = G - k`` (``W_g``: a group's summed weight
    after the scale). Otherwise tau^2 = 0 and the scale is the ordinary chi^2/dof (never below 1).
    """
    groups, inv = np.unique(group, return_inverse=True)
    n, n_g = resid.size, groups.size
    total = max(1.0, float(np.sum(w * resid**2)) / (n - n_par)) if n > n_par else 1.0
    wsum = np.bincount(inv, weights=w, minlength=n_g)
    mean = np.bincount(inv, weights=w * resid, minlength=n_g) / np.maximum(wsum, 1e-300)
    within = float(np.sum(w * (resid - mean[inv]) ** 2))
    dof = n - n_g - (n_par - k)
    scale = max(1.0, within / dof) if dof > 0 else 1.0
    big_w = wsum / scale
    target = n_g - k
    if target < 1:
        return total, 0.0

    def q(t2):
        return float(np.sum(mean**2 / (1.0 / big_w + t2)))

    # a group scatter only when the group means disagree significantly (p < 1e-3 of chi^2 with
    # G - k degrees of freedom): otherwise the usual total chi^2/dof scales the line variances
    if q(0.0) <= target or stats.chi2.sf(q(0.0), target) > SCATTER_P:
        return total, 0.0
    lo, hi = 0.0, float(np.max(mean**2)) * n_g + 1e-300
    for _ in range(100):  # q decreases monotonically in tau^2: bisection
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if q(mid) > target else (lo, mid)
    return scale, 0.5 * (lo + hi)


def grouped_normal(nmat, rhs, basis, w, y, group, group_var):
    """Normal equations of generalised least squares with a shared offset per group.

    The data covariance is ``diag(1 / w) + group_var * J_g`` within each group g (``J_g``: all
    ones), i.e. the points of a group (the lines of one order) also share an offset of variance
    ``group_var``. By Woodbury each group's block of the weighted normal equations ``nmat``,
    ``rhs`` (from ``basis``, ``w``, ``y``) loses ``v_g v_g^T / (1 / group_var + W_g)`` and
    ``v_g (w_g . y_g) / (1 / group_var + W_g)``, with ``v_g = B_g^T w_g``, ``W_g = sum w_g``.
    Returns new ``(nmat, rhs)``.
    """
    nmat, rhs = np.array(nmat, dtype=np.float64), np.array(rhs, dtype=np.float64)
    if not group_var > 0:
        return nmat, rhs
    for g in np.unique(group):
        sel = group == g
        v = basis[sel].T @ w[sel]
        shrink = 1.0 / (1.0 / group_var + float(np.sum(w[sel])))
        nmat -= shrink * np.outer(v, v)
        rhs -= shrink * v * float(w[sel] @ y[sel])
    return nmat, rhs
