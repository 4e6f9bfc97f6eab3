"""Each nres.rv kernel against its numpy twin (tests/rv/_naive.py) on seeded random inputs."""

import astropy.units as u
import numpy as np
import pytest

from nres.rv import Template, _kernels

from . import _naive


@pytest.mark.parametrize("seed", [1, 2])
def test_template_ccf_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    sizes = [50, 73]
    x = np.concatenate([np.sort(rng.uniform(6.2, 6.21, n)) for n in sizes])
    y = rng.normal(size=x.size)
    start = np.array([0, 50, 123], dtype=np.int64)
    h = 2e-5
    tv = rng.normal(size=1200)
    tstart = np.array([0, 600, 1200], dtype=np.int64)
    tu0 = np.array([6.199, 6.2])
    shifts = np.linspace(-5e-4, 5e-4, 17)
    got = _kernels.template_ccf(x, y, start, tv, tstart, tu0, h, shifts)
    want = _naive.template_ccf(x, y, start, tv, tstart, tu0, h, shifts)
    # the fractional grid position (x - s - u0) / h loses ~ eps * 6.2 / 2e-5 = 7e-11 to rounding
    # (np.interp and the kernel round differently); times |T| ~ 3 and ~100 terms: < 1e-8
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_fit_normal_equations_matches_numpy(degree):
    rng = np.random.default_rng(degree)
    n = 200
    t = np.linspace(-1, 1, n)
    args = [rng.uniform(0.5, 1.5, n) for _ in range(4)]  # tv, td, b, d
    w = rng.uniform(0, 2, n)
    w[::7] = 0.0
    coef = rng.normal(size=degree + 1)
    got = _kernels.fit_normal_equations(t, *args, w, coef)
    want = _naive.fit_normal_equations(t, *args, w, coef)
    for g, v in zip(got, want, strict=True):
        np.testing.assert_allclose(g, v, rtol=1e-11, atol=1e-11)


def _model_inputs(rng):
    """A two-segment template and three orders: increasing, decreasing (ln lambda) and no segment;
    a few pixels of each order fall off its segment's ends."""
    lam = np.array([np.linspace(500.0, 501.0, 400), np.linspace(501.0, 502.0, 400)])
    flux = 1.0 + 0.3 * np.sin(40.0 * lam) + 0.01 * rng.normal(size=lam.shape)
    tmpl = Template(lam * u.nm, flux)
    x = np.concatenate(
        [
            np.log(np.linspace(499.99, 500.9, 60)),
            np.log(np.linspace(502.01, 501.1, 50)),  # decreasing, first pixels beyond the end
            np.log(np.linspace(500.2, 500.4, 10)),
        ]
    )
    start = np.array([0, 60, 110, 120], dtype=np.int64)
    seg = np.array([0, 1, -1], dtype=np.int64)
    half = 0.5 * np.abs(np.gradient(x))
    s = np.array([1e-5, -2e-5, 0.0])
    return tmpl, x, half, start, seg, s


@pytest.mark.parametrize("pixel_mean", [False, True])
def test_template_model_matches_scipy_splines(pixel_mean):
    tmpl, x, half, start, seg, s = _model_inputs(np.random.default_rng(3))
    tv, td = _kernels.template_model(x, half, start, seg, *tmpl._pieces, s, pixel_mean)
    tv2, td2 = _naive.template_model(x, half, start, seg, tmpl._splines, s, pixel_mean)
    np.testing.assert_array_equal(np.isnan(tv), np.isnan(tv2))
    np.testing.assert_array_equal(np.isnan(td), np.isnan(td2))
    assert np.isnan(tv[110:]).all() and np.isfinite(tv[:60]).sum() > 50 and np.isfinite(tv[60:110]).sum() > 40
    ok = np.isfinite(tv2)
    # u = ln(lambda) ~ 6.2 is rounded to 1.4e-15; the twin differences scipy's antiderivative (|A| ~ 1e-2)
    # and values (|T'| <= 2e4) over a pixel of 2 half ~ 4e-6, which amplifies that rounding to
    # ~1e-11 in T and ~1e-5 in T' (both ~1e-9 of their scale); the kernel itself differences exact sums
    np.testing.assert_allclose(tv[ok], tv2[ok], rtol=0, atol=1e-9)
    np.testing.assert_allclose(td[ok], td2[ok], rtol=0, atol=1e-9 * np.abs(td2[ok]).max())


def test_template_model_pixel_mean_of_a_cubic_is_exact():
    """A cubic in u is reproduced by the spline; its pixel mean and the mean's derivative are analytic."""
    u0 = np.log(500.5)
    c = np.array([1.0, 30.0, -2e4, 5e6])  # 1 + 30 du - 2e4 du^2 + 5e6 du^3, |du| <= 1e-3

    def poly(du):
        return c[0] + c[1] * du + c[2] * du**2 + c[3] * du**3

    def anti(du):
        return c[0] * du + c[1] * du**2 / 2 + c[2] * du**3 / 3 + c[3] * du**4 / 4

    lam = np.linspace(500.0, 501.0, 200)
    tmpl = Template(lam * u.nm, poly(np.log(lam) - u0))
    x = np.log(np.linspace(500.1, 500.9, 300))
    half = np.full(x.size, 1.3e-6)
    start = np.array([0, x.size], dtype=np.int64)
    s = np.array([2e-5])
    tv, td = _kernels.template_model(x, half, start, np.zeros(1, dtype=np.int64), *tmpl._pieces, s, True)
    a, b = x - s[0] - half - u0, x - s[0] + half - u0
    # the analytic mean differences a quartic (|anti| ~ 1e-3) over 2.6e-6: rounding ~1e-13 relative; the
    # interpolating spline reproduces the cubic to ~1e-12 (its fit is a linear solve)
    np.testing.assert_allclose(tv, (anti(b) - anti(a)) / (b - a), rtol=0, atol=1e-9)
    np.testing.assert_allclose(td, (poly(b) - poly(a)) / (b - a), rtol=0, atol=1e-6)


@pytest.mark.parametrize("pixel_mean", [False, True])
def test_fit_template_orders_recovers_shift_and_matches_numpy(pixel_mean):
    """Noiseless orders made from the template shifted by known s and a known continuum: the fused
    fit recovers s, and its s and error match the twin's step-by-step numpy fit."""
    tmpl, x, half, start, seg, _ = _model_inputs(np.random.default_rng(4))
    x, half = x[:110], half[:110]  # the two orders with a segment; a third, inactive order below
    s_true = np.array([3e-6, -5e-6])
    one = np.array([0, 60, 110], dtype=np.int64)
    tv, _ = _naive.template_model(x, half, one, seg[:2], tmpl._splines, s_true, pixel_mean)
    t = np.concatenate([np.linspace(-1, 1, 60), np.linspace(-1, 1, 50)])
    b = 1.0 + 0.2 * t
    poly = 1000.0 * (1.0 + 0.1 * t - 0.05 * t**2)
    d = np.where(np.isfinite(tv), b * poly * tv, 0.0)
    w = np.where(np.isfinite(tv), 1.0 / np.abs(d + 100.0), 0.0)
    # append an inactive order of 10 pixels
    x, half, t, b, d, w = (np.concatenate([v, v[:10]]) for v in (x, half, t, b, d, w))
    active = np.array([True, True, False])
    args = (x, half, t, b, d, w, start, seg)
    opts = (active, 0.0, 1e-4, pixel_mean, 2, 30, 1e-13)
    s, sig, rej = _kernels.fit_template_orders(*args, *tmpl._pieces, *opts, 5.0, 3)
    s2, sig2, rej2 = _naive.fit_template_orders(*args, tmpl._splines, *opts)
    assert not rej.any()  # an exact model: no residual, nothing rejected
    assert np.isnan(s[2]) and np.isnan(sig[2]) and np.isnan(s2[2])
    # the model is exact (same spline, same pixel means; the kernel's values agree with the twin's to
    # ~1e-10 relative, which moves s by ~1e-10 x pixel ~ 1e-16): recovery to 1e-13 in s (3e-5 m/s),
    # the iteration tolerance
    np.testing.assert_allclose(s[:2], s_true, rtol=0, atol=1e-13)
    np.testing.assert_allclose(s[:2], s2[:2], rtol=0, atol=1e-13)
    # the error: the same normal matrix up to the model's ~1e-9 relative derivative differences
    np.testing.assert_allclose(sig[:2], sig2[:2], rtol=1e-7)


@pytest.mark.parametrize("pixel_mean", [False, True])
def test_fit_template_orders_pixel_rejection_matches_numpy(pixel_mean):
    """Noisy orders with spikes: the kernel's per-pixel rejection rejects exactly the twin's pixels (the
    spikes; a 5-sigma limit and 60/50 Gaussian pixels leave the noise alone) and gives its s."""
    rng = np.random.default_rng(8)
    tmpl, x, half, start, seg, _ = _model_inputs(rng)
    x, half = x[:110], half[:110]
    one = np.array([0, 60, 110], dtype=np.int64)
    tv, _ = _naive.template_model(x, half, one, seg[:2], tmpl._splines, np.array([3e-6, -5e-6]), pixel_mean)
    t = np.concatenate([np.linspace(-1, 1, 60), np.linspace(-1, 1, 50)])
    b = 1.0 + 0.2 * t
    truth = np.where(np.isfinite(tv), b * 1e5 * tv, 0.0)  # S/N ~ 300: the fits converge
    sigma = np.sqrt(truth + 100.0)
    d = truth + sigma * rng.normal(size=truth.size)
    spikes = np.array([10, 11, 30, 75, 90])  # 20 and 50 sigma up, 30 sigma down
    d[spikes] += np.array([20.0, 50.0, -30.0, 20.0, 50.0]) * sigma[spikes]
    w = np.where(np.isfinite(tv), 1.0 / sigma**2, 0.0)
    args = (x, half, t, b, d, w, one, seg[:2])
    opts = (np.array([True, True]), 0.0, 1e-4, pixel_mean, 2, 30, 1e-13)
    s, sig, rej = _kernels.fit_template_orders(*args, *tmpl._pieces, *opts, 5.0, 3)
    s2, sig2, rej2 = _naive.fit_template_orders(*args, tmpl._splines, *opts, 5.0, 3)
    np.testing.assert_array_equal(np.flatnonzero(rej), spikes)
    np.testing.assert_array_equal(rej, rej2)
    # same pixels, same data: the fits agree to the model's ~1e-10 relative differences (~1e-15 in s)
    np.testing.assert_allclose(s, s2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sig, sig2, rtol=1e-7)
    # off: nothing rejected, and the spikes pull the fit (the clipped fit is the one without them)
    s_off, _, rej_off = _kernels.fit_template_orders(*args, *tmpl._pieces, *opts, 0.0, 3)
    assert not rej_off.any()
    w_clean = w.copy()
    w_clean[spikes] = 0.0
    s_clean, _, _ = _kernels.fit_template_orders(
        x, half, t, b, d, w_clean, one, seg[:2], *tmpl._pieces, *opts, 0.0, 0
    )
    np.testing.assert_allclose(s, s_clean, rtol=0, atol=1e-13)
    assert np.all(np.abs(s_off - s_clean) > 3.0 * sig)


def test_mask_ccf_matches_numpy_and_variance_is_exact():
    rng = np.random.default_rng(5)
    e1 = np.sort(rng.uniform(500, 501, 41))
    e2 = np.linspace(501, 502, 31)
    edges = np.concatenate([e1, e2])
    estart = np.array([0, 41, 72], dtype=np.int64)
    d = rng.uniform(0.5, 1.0, 70)
    b = rng.uniform(0.8, 1.2, 70)
    d[12:15] = b[12:15] = 0.0  # bad pixels: holes partly (or wholly) on them
    d[50] = b[50] = 0.0
    pstart = np.array([0, 40, 70], dtype=np.int64)
    centre = np.sort(rng.uniform(499.9, 502.1, 30))
    lo, hi = centre - 0.004, centre + 0.004
    w = rng.uniform(0.1, 1, 30)
    lrange = np.array([[0, 30], [0, 30]], dtype=np.int64)
    zs = np.linspace(-3e-5, 3e-5, 9)
    for fixed in (True, False):
        num, den = _kernels.mask_ccf(edges, estart, d, b, pstart, lo, hi, w, lrange, zs, fixed)
        n2, d2 = _naive.mask_ccf(edges, estart, d, b, pstart, lo, hi, w, lrange, zs, fixed)
        # overlap sums of ~40 terms: summation order only, 1e-12 relative
        np.testing.assert_allclose(num, n2, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(den, d2, rtol=1e-12, atol=1e-14)
    # variance of sum_j g_j num_j: num is linear in d, so it equals sum_i (d num . g / d d_i)^2 var_i,
    # computed here by finite differences on the numpy twin (exact for a linear map)
    g = rng.normal(size=(2, zs.size))
    var = rng.uniform(0.1, 1, 70)
    got = _kernels.mask_ccf_variance(edges, estart, b, var, pstart, lo, hi, w, lrange, zs, g)
    want = np.zeros(2)
    for i in range(70):
        dd = np.zeros(70)
        dd[i] = 1.0
        ni, _ = _naive.mask_ccf(edges, estart, dd, b, pstart, lo, hi, w, lrange, zs)
        want += (np.sum(g * ni, axis=1)) ** 2 * var[i]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_warmup_runs():
    _kernels._warmup()


@pytest.mark.parametrize("bw", [1, 3])
def test_banded_inverse_band_matches_dense_inverse(bw):
    from scipy.linalg import cholesky_banded

    rng = np.random.default_rng(bw)
    n = 40
    dense = np.zeros((n, n))
    for d in range(bw + 1):
        vals = rng.uniform(-1, 1, n - d)
        dense += np.diag(vals, d) + (np.diag(vals, -d) if d else 0)
    dense += np.eye(n) * (2.0 * bw + 2.0)  # diagonally dominant: positive definite
    ab = np.zeros((bw + 1, n))
    for d in range(bw + 1):
        ab[bw - d, d:] = np.diagonal(dense, d)
    chol = cholesky_banded(ab)
    got = _kernels.banded_inverse_band(chol)
    np.testing.assert_allclose(got, _naive.banded_inverse_band(chol), rtol=0, atol=1e-12)
    # and the band of the true inverse (condition ~3: 1e-12 absolute on O(0.1) entries)
    inv = np.linalg.inv(dense)
    for d in range(bw + 1):
        np.testing.assert_allclose(got[: n - d, d], np.diagonal(inv, d), rtol=0, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 4])
def test_continuum_rows_matches_numpy(stride):
    rng = np.random.default_rng(stride)
    n = 700
    x = np.linspace(-1, 1, n)
    rows = []
    for k in range(3):
        cont = 100.0 * (1 + 0.3 * x * (k - 1) - 0.2 * x**2)
        lines = np.ones(n)
        for c in rng.uniform(-1, 1, 20):
            lines *= 1 - 0.5 * np.exp(-0.5 * ((x - c) / 0.01) ** 2)
        rows.append(cont * lines + rng.normal(size=n))
    y = np.array(rows)
    ok = rng.uniform(size=y.shape) > 0.1
    ok[2] = False
    ok[2, :4] = True  # too few points: the median of the good ones
    y[1, 5] = np.nan
    got = _kernels.continuum_rows(y, ok, 3, 6, 0.5, 3.0, stride)
    for k in range(3):
        want = _naive.continuum(y[k], ok[k], degree=3, stride=stride)
        # Cholesky normal equations vs lstsq of the same Legendre fit (condition ~10): 1e-10 relative
        np.testing.assert_allclose(got[k], want, rtol=1e-10)


def test_continuum_row_equals_rows():
    rng = np.random.default_rng(9)
    y = rng.normal(50.0, 1.0, (2, 300))
    ok = rng.uniform(size=y.shape) > 0.2
    both = _kernels.continuum_rows(y, ok, 3, 6, 0.5, 3.0, 2)
    for k in range(2):
        np.testing.assert_array_equal(_kernels.continuum_row(y[k], ok[k], 3, 6, 0.5, 3.0, 2), both[k])
