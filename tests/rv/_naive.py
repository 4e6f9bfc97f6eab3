"""Slow numpy references (twins) of the nres.rv kernels, for tests only."""

import numpy as np


def template_ccf(x, y, start, tvals, tstart, tu0, h, shifts):
    n_order = start.size - 1
    out = np.zeros((n_order, shifts.size))
    for o in range(n_order):
        tv = tvals[tstart[o] : tstart[o + 1]]
        grid = tu0[o] + h * np.arange(tv.size)
        xs, ys = x[start[o] : start[o + 1]], y[start[o] : start[o + 1]]
        for j, s in enumerate(shifts):
            q = xs - s
            inside = (q >= grid[0]) & (q < grid[-1])
            out[o, j] = np.sum(ys[inside] * np.interp(q[inside], grid, tv))
    return out


def fit_normal_equations(t, tv, td, b, d, w, coef):
    leg = np.polynomial.legendre.legvander(t, coef.size - 1)
    p = leg @ coef
    jac = np.column_stack([b[:, None] * leg * tv[:, None], -b * p * td])
    keep = w > 0
    jw = jac[keep] * w[keep, None]
    res = (d - b * p * tv)[keep]
    return jw.T @ jac[keep], jw.T @ res, float(np.sum(w[keep] * res**2))


def mask_ccf(edges, estart, d, b, pstart, lline, hline, wline, lrange, zs, fixed=True):
    n_order = estart.size - 1
    num = np.zeros((n_order, zs.size))
    den = np.zeros((n_order, zs.size))
    for o in range(n_order):
        e = edges[estart[o] : estart[o + 1]]
        dd, bb = d[pstart[o] : pstart[o + 1]], b[pstart[o] : pstart[o + 1]]
        lo_all, hi_all = lline[lrange[o, 0] : lrange[o, 1]], hline[lrange[o, 0] : lrange[o, 1]]
        w_all = wline[lrange[o, 0] : lrange[o, 1]]
        for j, z in enumerate(zs):
            zmin, zmax = (zs.min(), zs.max()) if fixed else (z, z)
            ok = (lo_all * (1 + zmin) >= e[0]) & (hi_all * (1 + zmax) <= e[-1])
            lo, hi, w = lo_all[ok] * (1 + z), hi_all[ok] * (1 + z), w_all[ok]
            # overlap of every hole with every pixel
            ov = np.clip(
                np.minimum(hi[:, None], e[None, 1:]) - np.maximum(lo[:, None], e[None, :-1]), 0, None
            )
            frac = ov / (hi - lo)[:, None]
            num[o, j] = np.sum(w[:, None] * frac * dd[None, :])
            den[o, j] = np.sum(w[:, None] * frac * bb[None, :])
    return num, den
