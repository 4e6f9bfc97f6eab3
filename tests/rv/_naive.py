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


def _overlap(e, lo, hi):
    """Fraction of every hole [lo, hi] in every pixel (edges e): (n_hole, n_pixel)."""
    ov = np.clip(np.minimum(hi[:, None], e[None, 1:]) - np.maximum(lo[:, None], e[None, :-1]), 0, None)
    return ov / (hi - lo)[:, None]


def mask_ccf(edges, estart, d, b, pstart, lline, hline, wline, lrange, zs, fixed=True):
    n_order = estart.size - 1
    num = np.zeros((n_order, zs.size))
    den = np.zeros((n_order, zs.size))
    zref = 0.5 * (zs.min() + zs.max())
    for o in range(n_order):
        e = edges[estart[o] : estart[o + 1]]
        dd, bb = d[pstart[o] : pstart[o + 1]], b[pstart[o] : pstart[o + 1]]
        lo_all, hi_all = lline[lrange[o, 0] : lrange[o, 1]], hline[lrange[o, 0] : lrange[o, 1]]
        w_all = wline[lrange[o, 0] : lrange[o, 1]]
        if fixed:
            ok = (lo_all * (1 + zs.min()) >= e[0]) & (hi_all * (1 + zs.max()) <= e[-1])
            lo, hi, w = lo_all[ok], hi_all[ok], w_all[ok]
            sref = _overlap(e, lo * (1 + zref), hi * (1 + zref)) @ bb
            lo, hi, w = lo[sref > 0], hi[sref > 0], w[sref > 0] * sref[sref > 0]
            for j, z in enumerate(zs):
                frac = _overlap(e, lo * (1 + z), hi * (1 + z))
                sd, sb = frac @ dd, frac @ bb
                k = sb > 0
                num[o, j] = np.sum(w[k] * sd[k] / sb[k])
                den[o, j] = np.sum(w[k])
            continue
        for j, z in enumerate(zs):
            ok = (lo_all * (1 + z) >= e[0]) & (hi_all * (1 + z) <= e[-1])
            frac = _overlap(e, lo_all[ok] * (1 + z), hi_all[ok] * (1 + z))
            num[o, j] = np.sum(w_all[ok] * (frac @ dd))
            den[o, j] = np.sum(w_all[ok] * (frac @ bb))
    return num, den


def template_model(x, half, start, seg, splines, s, pixel_mean):
    """Twin of the jitted piecewise-cubic model, from scipy's B-splines (value, derivative and
    antiderivative), not from the packed polynomial pieces."""
    tv = np.full(x.size, np.nan)
    td = np.full(x.size, np.nan)
    for o in range(start.size - 1):
        if seg[o] < 0:
            continue
        spl = splines[seg[o]]
        lo, hi = spl.t[0], spl.t[-1]
        sl = slice(start[o], start[o + 1])
        u = x[sl] - s[o]
        if pixel_mean:
            a, b = u - half[sl], u + half[sl]
            inside = (a >= lo) & (b <= hi)
            anti = spl.antiderivative()
            val = (anti(b) - anti(a)) / (b - a)
            der = (spl(b) - spl(a)) / (b - a)
        else:
            inside = (u >= lo) & (u <= hi)
            val, der = spl(u), spl(u, nu=1)
        tv[sl] = np.where(inside, val, np.nan)
        td[sl] = np.where(inside, der, np.nan)
    return tv, td


def fit_template_orders(
    x, half, t, b, d, w, start, seg, splines, active, s0, margin, pixel_mean, degree, max_iter, tol,
    clip=0.0, clip_iter=0,
):  # fmt: skip
    """Twin of the fused Gauss-Newton kernel: scipy-spline model, numpy normal equations and solves;
    the per-pixel rejection re-evaluates the model at the converged shift (the kernel reuses the last
    step's, < tol away)."""
    n_order = start.size - 1
    s_out = np.full(n_order, np.nan)
    sig_out = np.full(n_order, np.nan)
    rejected = np.zeros(x.size, dtype=bool)
    for o in range(n_order):
        if not active[o]:
            continue
        sl = slice(start[o], start[o + 1])
        one = np.array([0, start[o + 1] - start[o]])

        def model(s, sl=sl, one=one, o=o):
            return template_model(x[sl], half[sl], one, seg[o : o + 1], splines, [s], pixel_mean)

        def gauss_newton(s, poly, ww, sl=sl):
            for _ in range(max_iter):
                tv, td = model(s)
                a, r, _ = fit_normal_equations(t[sl], tv, td, b[sl], d[sl], ww, poly)
                step = np.linalg.solve(a, r)
                poly = poly + step[:-1]
                s += step[-1]
                if abs(s - s0) > margin:
                    return False, s, poly, a
                if abs(step[-1]) < tol:
                    return True, s, poly, a
            return False, s, poly, a

        tv, td = model(s0)
        a, r, _ = fit_normal_equations(t[sl], tv, td, b[sl], d[sl], w[sl], np.zeros(degree + 1))
        poly = np.linalg.solve(a[:-1, :-1], r[:-1])
        ok, s, poly, a = gauss_newton(s0, poly, w[sl])
        rej = np.zeros(start[o + 1] - start[o], dtype=bool)
        if ok and clip > 0:
            for _ in range(clip_iter):
                p = np.polynomial.legendre.legval(t[sl], poly)
                res = np.abs(d[sl] - b[sl] * p * model(s)[0]) * np.sqrt(np.clip(w[sl], 0, None))
                fitted = w[sl] > 0
                scale = max(1.0, 1.4826 * np.median(res[fitted]))
                new = fitted & (res > clip * scale)
                if np.array_equal(new, rej):
                    break
                rej = new
                ok, s, poly, a = gauss_newton(s, poly, np.where(rej, 0.0, w[sl]))
                if not ok:
                    break
        if ok:
            s_out[o] = s
            sig_out[o] = np.sqrt(np.linalg.inv(a)[-1, -1])
            rejected[sl] = rej
    return s_out, sig_out, rejected


def banded_inverse_band(ab):
    """Twin of the Takahashi band: the dense inverse of U^T U, its upper band."""
    p, n = ab.shape[0] - 1, ab.shape[1]
    upper = np.zeros((n, n))
    for d in range(p + 1):
        idx = np.arange(n - d)
        upper[idx, idx + d] = ab[p - d, d:]
    inv = np.linalg.inv(upper.T @ upper)
    band = np.zeros((n, p + 1))
    for d in range(p + 1):
        band[: n - d, d] = np.diagonal(inv, d)
    return band


def continuum(flux, good=None, *, degree=3, iterations=6, lower=0.5, upper=3.0, stride=1):
    """Twin of the continuum rule (nres.rv.continuum): numpy Legendre least squares."""
    y = np.asarray(flux, dtype=np.float64)
    ok = np.isfinite(y) if good is None else np.asarray(good, dtype=bool) & np.isfinite(y)
    n = y.size
    t = np.linspace(-1.0, 1.0, n)
    ts, ys, oks = t[::stride], y[::stride], ok[::stride]
    keep = oks.copy()
    coef = None
    for _ in range(iterations + 1):
        if keep.sum() < degree + 3:
            break
        coef = np.polynomial.legendre.legfit(ts[keep], ys[keep], degree)
        resid = ys - np.polynomial.legendre.legval(ts, coef)
        scale = np.std(resid[keep])
        new = oks & (resid > -lower * scale) & (resid < upper * scale)
        if np.array_equal(new, keep):
            break
        keep = new
    if coef is None:
        return np.full(n, np.nanmedian(y[ok]) if ok.any() else 1.0)
    return np.polynomial.legendre.legval(t, coef)
