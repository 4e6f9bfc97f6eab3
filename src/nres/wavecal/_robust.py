"""Weighted linear least squares with iterative robust clipping (fiber offsets and drift share it)."""

from __future__ import annotations

import numpy as np

from ..errors import FitError

__all__ = ["clipped_lstsq"]


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
