"""IDL primitives the original RV code depends on (idl-rv-ops.md 15), in plain numpy (private).

Only the legacy paths (``mgbcc``, ``lsqblkfit2``, the block combination) use these; they are
vectorised and cheap (one order at a time), so they are not numba kernels.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "smooth",
    "deriv",
    "interpol_quadratic",
    "interpol_lsquadratic",
    "interpol_lslinear",
    "median",
    "quartile",
]


def smooth(y, width):
    """IDL ``SMOOTH(y, w)``: centred boxcar mean; an even width becomes w + 1; the first and last
    ``w // 2`` samples are copied unchanged."""
    y = np.asarray(y, dtype=np.float64)
    w = int(width)
    if w % 2 == 0:
        w += 1
    half = w // 2
    out = y.copy()
    if w <= 1 or y.size < w:
        return out
    csum = np.concatenate([[0.0], np.cumsum(y)])
    out[half : y.size - half] = (csum[w:] - csum[:-w]) / w
    return out


def deriv(y):
    """IDL ``DERIV(y)`` (one argument): centred differences, 3-point one-sided formulas at the ends."""
    y = np.asarray(y, dtype=np.float64)
    d = np.empty_like(y)
    d[1:-1] = 0.5 * (y[2:] - y[:-2])
    d[0] = 0.5 * (-3.0 * y[0] + 4.0 * y[1] - y[2])
    d[-1] = 0.5 * (3.0 * y[-1] - 4.0 * y[-2] + y[-3])
    return d


def _locate(x, u):
    """IDL VALUE_LOCATE for increasing x: index i with x[i] <= u < x[i+1] (-1 below, n-1 above)."""
    return np.searchsorted(x, u, side="right") - 1


def interpol_quadratic(v, x, u):
    """IDL ``INTERPOL(v, x, u, /QUADRATIC)``: the parabola through points s-1, s, s+1, with s the
    interval index clamped to [1, n-2] (extrapolates with the edge neighbourhood)."""
    v, x, u = (np.asarray(a, dtype=np.float64) for a in (v, x, u))
    s = np.clip(_locate(x, u), 1, x.size - 2)
    x0, x1, x2 = x[s - 1], x[s], x[s + 1]
    y0, y1, y2 = v[s - 1], v[s], v[s + 1]
    # Lagrange form of the exact parabola
    return (
        y0 * (u - x1) * (u - x2) / ((x0 - x1) * (x0 - x2))
        + y1 * (u - x0) * (u - x2) / ((x1 - x0) * (x1 - x2))
        + y2 * (u - x0) * (u - x1) / ((x2 - x0) * (x2 - x1))
    )


def interpol_lsquadratic(v, x, u):
    """IDL ``INTERPOL(v, x, u, /LSQUADRATIC)``: least-squares parabola through the 4 points s-1..s+2,
    with s the interval index clamped to [1, n-3]."""
    v, x, u = (np.asarray(a, dtype=np.float64) for a in (v, x, u))
    s = np.clip(_locate(x, u), 1, x.size - 3)
    idx = s[:, None] + np.arange(-1, 3)[None, :]
    xx = x[idx] - x[s][:, None]  # local coordinates keep the normal equations well conditioned
    yy = v[idx]
    # normal equations of y = a + b t + c t^2 for each point's 4 samples (closed-form 3x3 per row)
    p = [np.sum(xx**k, axis=1) for k in range(5)]
    q = [np.sum(yy * xx**k, axis=1) for k in range(3)]
    a = np.stack(
        [
            np.stack([p[0], p[1], p[2]], axis=-1),
            np.stack([p[1], p[2], p[3]], axis=-1),
            np.stack([p[2], p[3], p[4]], axis=-1),
        ],
        axis=-2,
    )
    coef = np.linalg.solve(a, np.stack(q, axis=-1)[..., None])[..., 0]
    t = u - x[s]
    return coef[:, 0] + coef[:, 1] * t + coef[:, 2] * t * t


def interpol_lslinear(v, x, u):
    """``INTERPOL(v, x, u, /LSQUADRATIC)`` as GDL 1.0.1 computes it: a least-squares *straight line*
    through the same 4 points s-1..s+2 (s clamped to [1, n-3]). Matches the GDL reference outputs to
    float32 precision; IDL documents a parabola (:func:`interpol_lsquadratic`)."""
    v, x, u = (np.asarray(a, dtype=np.float64) for a in (v, x, u))
    s = np.clip(_locate(x, u), 1, x.size - 3)
    idx = s[:, None] + np.arange(-1, 3)[None, :]
    xx = x[idx] - x[s][:, None]
    yy = v[idx]
    sx, sy = xx.sum(axis=1), yy.sum(axis=1)
    sxx, sxy = (xx * xx).sum(axis=1), (xx * yy).sum(axis=1)
    slope = (4.0 * sxy - sx * sy) / (4.0 * sxx - sx * sx)
    return (sy - slope * sx) / 4.0 + slope * (u - x[s])


def median(y):
    """IDL ``MEDIAN(y)`` without /EVEN: for even n the upper of the two middle values."""
    y = np.sort(np.asarray(y, dtype=np.float64).ravel())
    return float(y[y.size // 2])


def quartile(y):
    """The original's ``quartile``: (median, lower, upper, dq) with lower = median of values < med,
    upper = median of values >= med, dq = upper - lower (0 with fewer than 3 values)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    med = median(y)
    if y.size < 3:
        return med, med, med, 0.0
    lower = median(y[y < med]) if np.any(y < med) else med
    upper = median(y[y >= med])
    return med, lower, upper, upper - lower
