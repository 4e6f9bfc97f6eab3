"""Each nres.rv kernel against its numpy twin (tests/rv/_naive.py) on seeded random inputs."""

from . import _naive
import numpy as np
import pytest

from nres.rv import _kernels


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
