"""The joint-extraction kernels against plain numpy twins (dense least squares per column)."""

import numpy as np

from nres.extract._extract_kernels import _joint_extract, _joint_profile_samples, _render_model


def _pv(prof, t, k, f, grid0, gstep, d):
    """Profile of trace t at offsets d: linear in the grid (0 outside), blocks k, k+1 mixed by f."""
    grid = grid0 + gstep * np.arange(prof.shape[2])
    d = np.atleast_1d(np.asarray(d, dtype=float))
    inside = (d >= grid[0]) & (d <= grid[-1])
    a = np.interp(d, grid, prof[t, k])
    if f != 0.0:
        a = a * (1 - f) + np.interp(d, grid, prof[t, k + 1]) * f
    return np.where(inside, a, 0.0)


def joint_twin(data, var0, good, centers, prof, blk_k, blk_f, grid0, gstep, half, n_iter, kappa, max_reject):
    """Dense numpy version of _joint_extract (same rules, np.linalg for the normal equations)."""
    ntr, nx = centers.shape
    ny = data.shape[0]
    flux = np.full((ntr, nx), np.nan)
    fvar = np.full((ntr, nx), np.nan)
    pcover = np.zeros((ntr, nx))
    nrej = np.zeros((ntr, nx), dtype=int)
    rejected = np.zeros(data.shape, dtype=bool)
    for i in range(nx):
        tid = np.flatnonzero(np.isfinite(centers[:, i]))
        if tid.size == 0:
            continue
        tid = tid[np.argsort(centers[tid, i], kind="stable")]
        cc = centers[tid, i]
        k, f = blk_k[i], blk_f[i]
        jlo = np.maximum(np.floor(cc - half + 0.5).astype(int), 0)
        jhi = np.minimum(np.ceil(cc + half - 0.5).astype(int), ny - 1)
        rows = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(jlo, jhi, strict=True)]))
        rows = rows[good[rows, i]]
        if rows.size == 0:
            continue
        P = np.stack([_pv(prof, t, k, f, grid0, gstep, rows - c) for t, c in zip(tid, cc, strict=True)], 1)
        v0 = var0[0, 0] if var0.shape == (1, 1) else var0[rows, i]
        d = data[rows, i]
        own = [(rows >= a) & (rows <= b) for a, b in zip(jlo, jhi, strict=True)]
        active = np.zeros(tid.size, bool)
        fl = np.zeros(tid.size)
        for u, t in enumerate(tid):
            full = np.arange(int(np.floor(cc[u] - half + 0.5)), int(np.ceil(cc[u] + half - 0.5)) + 1)
            ptot = _pv(prof, t, k, f, grid0, gstep, full - cc[u]).sum()
            sel = own[u] & (P[:, u] > 0)
            if P[sel, u].sum() > 0 and ptot > 0:
                active[u] = True
                pcover[t, i] = P[sel, u].sum() / ptot
                fl[u] = d[sel].sum() / P[sel, u].sum()
        P[:, ~active] = 0.0
        use = np.ones(rows.size, bool)
        for r in range(max_reject + 1):
            for _ in range(n_iter):
                v = v0 + np.maximum(P @ fl, 0.0)
                A = P[use][:, active] / v[use, None] ** 0.5
                fl[active] = np.linalg.solve(A.T @ A, A.T @ (d[use] / v[use] ** 0.5))
            new = 0
            for u in np.flatnonzero(active):
                m = P @ fl
                z = (d - m) ** 2 / (v0 + np.maximum(m, 0.0))
                cand = np.flatnonzero(own[u] & use & (z > kappa**2))
                if cand.size and r < max_reject:
                    q = cand[np.argmax(z[cand])]
                    use[q] = False
                    rejected[rows[q], i] = True
                    nrej[tid[u], i] += 1 if d[q] > m[q] else 1000
                    new += 1
            if new == 0:
                break
        v = v0 + np.maximum(P @ fl, 0.0)
        A = P[use][:, active] / v[use, None] ** 0.5
        cov = np.linalg.inv(A.T @ A)
        flux[tid[active], i] = fl[active]
        fvar[tid[active], i] = np.diag(cov)
    return flux, fvar, pcover, nrej, rejected


def _scene(seed=3):
    """Three traces 7 px apart whose profiles (extent +-9 px, 3 % wings) overlap, noise, two hits."""
    rng = np.random.default_rng(seed)
    ny, nx = 40, 30
    grid0, gstep = -9.0, 0.05
    g = grid0 + gstep * np.arange(361)
    core = lambda s: np.exp(-0.5 * (g / s) ** 2)  # noqa: E731
    prof = np.stack([[0.97 * core(1.3) / core(1.3).sum() + 0.03 * core(4.0) / core(4.0).sum()] * 2] * 3)
    prof[:, 1] = np.roll(prof[:, 0], 3, axis=-1)  # a second block, shifted, to exercise the mixing
    prof /= prof.sum(axis=-1, keepdims=True) * gstep
    x = np.arange(nx)
    centers = np.stack([12.3 + 0.05 * x, 19.1 + 0.05 * x, 26.4 + 0.04 * x])
    centers[2, 5] = np.nan  # a trace missing in one column
    flux = np.stack([800 + 10 * x, 300 + 0 * x, 1500 - 5 * x]).astype(float)
    blk_k = np.zeros(nx, dtype=np.int64)
    blk_f = np.ascontiguousarray(x / (nx - 1.0))
    img = _render_model(ny, centers, flux, prof, blk_k, blk_f, grid0, gstep)
    data = img + rng.normal(0, 1, img.shape) * np.sqrt(25 + img)
    data[19, 7] += 4000.0  # cosmic ray in trace 1
    data[12, 20] += 2500.0  # cosmic ray in trace 0
    good = np.ones(data.shape, dtype=bool)
    good[26, 11] = False
    return data, good, centers, prof, blk_k, blk_f, grid0, gstep, flux


def test_joint_extract_matches_dense_twin():
    data, good, centers, prof, blk_k, blk_f, grid0, gstep, _ = _scene()
    var0 = np.full((1, 1), 25.0)
    rej = np.zeros(data.shape, dtype=bool)
    args = (data, var0, good, centers, prof, blk_k, blk_f, grid0, gstep, 3.5, 3, 5.0, 3)
    flux, fvar, pcov, contam, own, nrej, status = _joint_extract(*args, rej)
    t_flux, t_fvar, t_pcov, t_nrej, t_rej = joint_twin(*args)
    # same arithmetic in a different order (band LDL^T vs LAPACK): round-off only
    np.testing.assert_allclose(flux, t_flux, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fvar, t_fvar, rtol=1e-9)
    np.testing.assert_allclose(pcov, t_pcov, rtol=1e-12)
    np.testing.assert_array_equal(nrej, t_nrej)
    np.testing.assert_array_equal(rej, t_rej)
    assert rej[19, 7] and rej[12, 20]
    assert np.all(status[np.isfinite(centers)] == 0)
    assert np.isnan(flux[2, 5]) and np.isfinite(flux[:2, 5]).all()
    # the traces do overlap: each aperture holds its neighbours' light
    assert np.nanmin(contam[1] / own[1]) > 1e-3


def test_joint_extract_noiseless_and_separated_traces():
    data, good, centers, prof, blk_k, blk_f, grid0, gstep, flux = _scene()
    img = _render_model(data.shape[0], centers, flux, prof, blk_k, blk_f, grid0, gstep)
    rej = np.zeros(img.shape, dtype=bool)
    out = _joint_extract(
        img, np.full((1, 1), 25.0), good, centers, prof, blk_k, blk_f, grid0, gstep, 3.5, 3, 5.0, 3, rej
    )
    ok = np.isfinite(centers)
    # noiseless overlapping traces: the fluxes rendered, to round-off
    np.testing.assert_allclose(out[0][ok], flux[ok], rtol=1e-10)
    assert not rej.any()


def test_render_model_and_profile_samples_match_twins():
    data, good, centers, prof, blk_k, blk_f, grid0, gstep, flux = _scene()
    ny, nx = data.shape
    model = _render_model(ny, centers, flux, prof, blk_k, blk_f, grid0, gstep)
    twin = np.zeros((ny, nx))
    rows = np.arange(ny)
    for t in range(centers.shape[0]):
        for i in range(nx):
            if np.isfinite(centers[t, i]):
                twin[:, i] += flux[t, i] * _pv(
                    prof, t, blk_k[i], blk_f[i], grid0, gstep, rows - centers[t, i]
                )
    np.testing.assert_allclose(model, twin, rtol=1e-12, atol=1e-12)

    blk = (np.arange(nx) >= nx // 2).astype(np.int64)
    ngrid, rmax, rsym, pfloor = prof.shape[2], 8.0, 4.0, 1e-6
    sv, sw = _joint_profile_samples(
        data, model, good, centers, flux, prof, blk_k, blk_f, blk, 2, grid0, gstep, ngrid, rmax, rsym, pfloor
    )
    tv, tw = np.zeros_like(sv), np.zeros_like(sw)
    for t in range(centers.shape[0]):
        for i in range(nx):
            c, fl = centers[t, i], flux[t, i]
            if not np.isfinite(c):
                continue
            for j in range(max(int(np.ceil(c - rmax)), 0), min(int(np.floor(c + rmax)), ny - 1) + 1):
                if not good[j, i]:
                    continue
                d = j - c
                pd, pm = (_pv(prof, t, blk_k[i], blk_f[i], grid0, gstep, v)[0] for v in (d, -d))
                oth = model[j, i] - fl * pd
                o = fl * max(pd, pm, pfloor)
                w = o * o / (o * o + oth * oth)
                for dd in (d, -d) if abs(d) > rsym else (d,):
                    g = (dd - grid0) / gstep
                    i0 = int(np.floor(g))
                    if 0 <= i0 < ngrid - 1:
                        u = g - i0
                        for n, a in ((i0, 1 - u), (i0 + 1, u)):
                            tv[t, blk[i], n] += a * w * (data[j, i] - oth) / fl
                            tw[t, blk[i], n] += a * w
    np.testing.assert_allclose(sv, tv, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sw, tw, rtol=1e-10, atol=1e-12)


def test_spline_kernel_matches_scipy_lsq_spline():
    from scipy.interpolate import BSpline, make_lsq_spline

    from nres.extract._extract_kernels import _spline_smooth

    rng = np.random.default_rng(5)
    grid = np.linspace(-6.0, 6.0, 301)
    knots = np.r_[[-6.0] * 4, np.linspace(-6, 6, 25)[1:-1], [6.0] * 4]
    values = np.exp(-0.5 * grid**2)[None, :] + rng.normal(0, 0.01, (3, grid.size))
    weights = rng.uniform(0.1, 2.0, (3, grid.size))
    weights[1, 100:110] = 0.0  # unused nodes
    design = BSpline.design_matrix(grid, knots, 3).tocsr()
    first = np.ascontiguousarray(design.indices[design.indptr[:-1]], dtype=np.int64)
    bvals = np.ascontiguousarray(design.data.reshape(grid.size, 4))
    out, ok = _spline_smooth(values, weights, first, bvals, design.shape[1])
    assert ok.all()
    for r in range(3):
        use = weights[r] > 0
        ref = make_lsq_spline(grid[use], values[r, use], knots, k=3, w=np.sqrt(weights[r, use]))(grid)
        # normal equations (LDL^T) vs scipy's QR: round-off of a well-conditioned fit
        np.testing.assert_allclose(out[r], ref, rtol=0, atol=1e-10)
    # a row with no samples cannot be fitted and says so
    out, ok = _spline_smooth(values[:1], np.zeros((1, grid.size)), first, bvals, design.shape[1])
    assert not ok[0]
