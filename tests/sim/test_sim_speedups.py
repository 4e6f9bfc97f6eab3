"""The simulator's speed-ups change nothing that matters: caches are bit-for-bit, the star's
one-pass exposure integration stays within its documented error, new kernels match numpy twins."""

import astropy.units as u
import numpy as np
import pytest

from nres import instrument
from nres.doppler import C_M_S
from nres.errors import InvalidParameterError
from nres.sim import SimConfig, _cache, _kernels, simulate
from nres.sim.doppler import (
    barycentric_z_samples,
    default_target,
    exposure_samples,
    mean_doppler_factor,
)
from nres.sim.scattered import CELL, interpolate_grid
from nres.sim.star import StellarSpectrum

WIN = {"orders": (80, 81), "columns": (1900, 2156)}
CLEAN = SimConfig(cosmic_rate=0.0, n_bad_columns=0, n_hot_pixels=0)


# ----- caches -----------------------------------------------------------------------------------
def test_cached_defaults_equal_explicit_uncached_inputs():
    """Explicit traces/model/line list/target bypass every cache; the frame must be identical."""
    _cache.clear()
    first, t1 = simulate("TARGET", seed=4, window=WIN)  # fills the caches
    again, t2 = simulate("TARGET", seed=4, window=WIN)  # served from them
    explicit, t3 = simulate(
        "TARGET",
        seed=4,
        window=t1.window,
        traces=instrument.reference_traces("lsc"),
        model=instrument.PhysicalModel.for_site("lsc", mjd=58400.5),
        line_list=instrument.thar_lines("redman"),
        target=default_target(),
    )
    for other in (again, explicit):
        np.testing.assert_array_equal(other.data, first.data)
        np.testing.assert_array_equal(other.uncertainty.array, first.uncertainty.array)
    np.testing.assert_array_equal(t3.scattered_light, t1.scattered_light)
    np.testing.assert_array_equal(t3.z_b_samples, t1.z_b_samples)
    np.testing.assert_array_equal(t3.geometry["traces"].center(t1.x), t1.geometry["traces"].center(t1.x))
    assert t3.z_b == t1.z_b and np.any(t1.scattered_light > 0)
    # a returned z_B array is the caller's: mutating it leaves the cache intact
    t2.z_b_samples[:] = 0.0
    _, t4 = simulate("TARGET", seed=4, window=WIN)
    np.testing.assert_array_equal(t4.z_b_samples, t1.z_b_samples)


def test_cache_keys_separate_dates():
    _, a = simulate("TARGET", seed=1, window=WIN, mjd=58400.5)
    _, b = simulate("TARGET", seed=1, window=WIN, mjd=58500.5)
    assert a.z_b != b.z_b


# ----- one-pass integration of the star over the exposure ---------------------------------------
def _sampled(star, edges, w, d):
    return sum(wi * star.flux_integrated(edges * u.nm, z=di - 1.0) for wi, di in zip(w, d, strict=True))


@pytest.mark.parametrize("lam0", [400.0, 800.0])
def test_moments_integration_matches_per_sample_average(lam0):
    """A one-hour exposure at a date/site where z_B moves by ~90 m/s (the worst realistic case)."""
    star = StellarSpectrum(seed=1)
    edges = lam0 + (np.arange(2049) - 1024) * lam0 / 53000 / 2.2  # ~2.2 px per resolution element
    mjd, flux = exposure_samples(58400.3, 3600.0, 10, seed=1)
    zb = barycentric_z_samples(default_target(), mjd, instrument.site_location("lsc"))
    w = flux / flux.sum()
    d = (1.0 + 1e-4) / (1.0 + zb)
    assert np.ptp(d) * C_M_S > 80.0  # the span this test is about
    factor, spread = mean_doppler_factor(zb, flux, 1e-4)
    ref = _sampled(star, edges, w, d)
    one = star.flux_integrated(edges * u.nm, z=factor - 1.0, spread=spread)
    unbroadened = star.flux_integrated(edges * u.nm, z=factor - 1.0)
    # radial-velocity error by the linearised template estimator dv = sum(dF F') / sum(F'^2)
    deriv = (
        star.flux_integrated(edges * u.nm, z=factor * (1 + 1 / C_M_S) - 1.0)
        - star.flux_integrated(edges * u.nm, z=factor * (1 - 1 / C_M_S) - 1.0)
    ) / 2.0
    rv_err = np.sum((one - ref) * deriv) / np.sum(deriv**2)
    # documented: < 2e-5 m/s (measured 1.5e-5 at both wavelengths); the issue allows 1e-3 m/s
    assert abs(rv_err) < 2e-5
    # flux: measured < 3e-9 of the continuum; photon noise at S/N 1000 is 1e-3
    assert np.max(np.abs(one - ref)) < 1e-8
    # the broadening is what makes it exact: without it the error is > 10x larger
    assert np.max(np.abs(unbroadened - ref)) > 10 * np.max(np.abs(one - ref))


def test_spread_is_the_average_over_gaussian_doppler_factors():
    """Exact reference: a dense quadrature (step 0.004 sigma out to 8 sigma) over a Gaussian
    distribution of Doppler factors; the integrand varies on 0.2 sigma (line width / spread)."""
    star = StellarSpectrum(seed=2, n_lines=20, wavelength_range=[500.0, 500.5] * u.nm)
    edges = np.linspace(500.0, 500.5, 301) * u.nm
    factor, spread = 1.0 + 3e-5, 4e-5  # 12 km/s rms: broad enough to matter at 1e-2
    xs = np.linspace(-8.0, 8.0, 4001)
    weights = np.exp(-0.5 * xs**2)
    weights /= weights.sum()
    ref = sum(
        wk * star.flux_integrated(edges, z=factor * (1 + spread * xk) - 1.0)
        for xk, wk in zip(xs, weights, strict=True)
    )
    got = star.flux_integrated(edges, z=factor - 1.0, spread=spread)
    # exact but for the line width's own scaling with D, correlated with the shift: a term of order
    # depth * spread (measured 7e-6 here; ~1e-8 for the ~3e-8 spreads of real exposures)
    assert np.max(np.abs(got - ref)) < spread
    assert np.max(np.abs(star.flux_integrated(edges, z=factor - 1.0) - ref)) > 1e-2


def test_mean_doppler_factor_analytic():
    zb = np.array([0.0, 1e-4])
    factor, spread = mean_doppler_factor(zb, np.array([3.0, 1.0]), 0.0)
    d = np.array([1.0, 1.0 / 1.0001])
    mean = 0.75 * d[0] + 0.25 * d[1]
    assert factor == pytest.approx(mean, rel=1e-15)
    assert spread == pytest.approx(np.sqrt(0.75 * 0.25) * (d[0] - d[1]) / mean, rel=1e-9)


def test_simulate_star_integrations_agree():
    cfg = {"cosmic_rate": 0.0, "n_bad_columns": 0, "n_hot_pixels": 0}
    _, a = simulate(
        "TARGET", seed=2, window=WIN, noiseless=True, exptime=3600.0, mjd=58400.3, config=SimConfig(**cfg)
    )
    _, b = simulate(
        "TARGET",
        seed=2,
        window=WIN,
        noiseless=True,
        exptime=3600.0,
        mjd=58400.3,
        config=SimConfig(**cfg, star_integration="samples"),
    )
    rows = np.flatnonzero(a.expected[0].any(axis=1))
    star_a, star_b = a.expected[0][rows], b.expected[0][rows]
    assert rows.size >= 2 and np.all(star_a > 0)
    # relative error bound of the one-pass integration (see the test above), with margin
    np.testing.assert_allclose(star_a, star_b, rtol=1e-8, atol=0)
    np.testing.assert_array_equal(a.expected[1], b.expected[1])  # ThAr untouched


def test_bad_star_integration_is_refused():
    with pytest.raises(InvalidParameterError, match="star_integration"):
        simulate("TARGET", window=WIN, config=SimConfig(star_integration="exact"))


# ----- kernels vs numpy twins -------------------------------------------------------------------
def bilinear_ref(grid, y0, y1, x0, x1):
    nodes = (np.arange(grid.shape[0]) + 0.5) * CELL - 0.5
    eye = np.eye(nodes.size)
    wy = np.stack([np.interp(np.arange(y0, y1, dtype=float), nodes, eye[k]) for k in range(nodes.size)], 1)
    wx = np.stack([np.interp(np.arange(x0, x1, dtype=float), nodes, eye[k]) for k in range(nodes.size)], 1)
    return wy @ grid @ wx.T


def test_bilinear_grid_matches_twin_and_crops():
    rng = np.random.default_rng(3)
    grid = rng.uniform(0.0, 100.0, (64, 64))
    for win in [(0, 90, 4000, 4096), (1000, 1130, 2017, 2300), (4050, 4096, 0, 40)]:
        np.testing.assert_allclose(interpolate_grid(grid, win), bilinear_ref(grid, *win), rtol=1e-13, atol=0)
    big = interpolate_grid(grid, (900, 1300, 1500, 2100))
    np.testing.assert_array_equal(interpolate_grid(grid, (917, 1011, 1533, 1601)), big[17:111, 33:101])


def respond_ref(e, gain, saturate, maxlin, nl):
    sat_e, lin_e = saturate * gain, maxlin * gain
    excess = np.clip(e - lin_e, 0.0, None)
    out = np.where(e > lin_e, lin_e + excess * (1.0 - nl * np.minimum(excess / (sat_e - lin_e), 1.0)), e)
    saturated = out >= sat_e
    return np.minimum(out, sat_e), (e > lin_e) & ~saturated, saturated


def test_respond_kernel_matches_twin():
    from nres.sim.detector import respond

    e = np.random.default_rng(1).uniform(-50.0, 1.2e5, (37, 53))
    got = respond(e, gain=1.0, saturate=1.0e5, maxlin=8.0e4, nonlinearity=0.05)
    ref = respond_ref(e, 1.0, 1.0e5, 8.0e4, 0.05)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r)
    assert got[1].any() and got[2].any() and (~got[1] & ~got[2]).any()
    e1 = np.linspace(0.0, 1.2e5, 7)  # 1-D input keeps its shape
    np.testing.assert_array_equal(
        respond(e1, gain=1.0, saturate=1e5, maxlin=8e4, nonlinearity=0.05)[0],
        respond_ref(e1, 1.0, 1e5, 8e4, 0.05)[0],
    )
    _kernels.respond(
        np.zeros((1, 1)),
        1.0,
        2.0,
        0.0,
        np.empty((1, 1)),
        np.empty((1, 1), np.bool_),
        np.empty((1, 1), np.bool_),
    )
