"""nres.rv.measure on the simulator's extracted spectra: bias (noiseless) and scatter (noise)."""

import astropy.units as u
import numba
import numpy as np
import pytest
from astropy.nddata import VarianceUncertainty

from nres._jit import set_num_threads
from nres.doppler import C_M_S
from nres.errors import InvalidParameterError
from nres.rv import LineMask, Template, measure
from nres.sim.extracted import simulate_extracted
from nres.sim.star import StellarSpectrum
from nres.spectrum import EchelleSpectrum

ORDERS = [80, 81, 82]


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():
    """Hundreds of fits of 3 x 1024 pixels: one numba thread (on a loaded 2-core machine the threads'
    start and join cost 4-75x the work, measured). The kernels' parallel paths are tested in
    test_kernels.py."""
    previous = numba.get_num_threads()
    set_num_threads(1)
    yield
    set_num_threads(previous)


N_PIXEL = 1024
Z_B = 1.0e-5  # injected barycentric redshift (3 km/s); the truth carries z_obs


def _template(star, spec, oversample=6):
    """The noiseless star on a grid `oversample` x finer than the pixels, covering each order +-1 nm."""
    lam = spec.wavelength.to_value(u.nm)[0]
    grids = [np.linspace(lo.min() - 1.0, lo.max() + 1.0, oversample * N_PIXEL) for lo in lam]
    grid = np.array(grids) * u.nm
    return Template(grid, star.flux(grid), wavelength_medium="vacuum", wavelength_frame="barycentric")


@pytest.fixture(scope="module")
def noiseless():
    """Noiseless spectra at -100, 0, +100 km/s; the template and a mask from the truth."""
    out = {}
    for v in (-100.0, 0.0, 100.0):
        spec, truth = simulate_extracted(
            seed=1, rv=v * u.km / u.s, z_b=Z_B, orders=ORDERS, n_pixel=N_PIXEL, noiseless=True
        )
        out[v] = (spec, truth)
    return out


def _shifted(spec, frac):
    """The same spectrum with wavelengths moved by a sub-pixel fraction (a sub-pixel phase)."""
    lam = spec.wavelength.to_value(u.nm)
    step = np.gradient(lam, axis=-1)
    return lam + frac * step


@pytest.mark.parametrize("v", [-100.0, 0.0, 100.0])
def test_template_bias_noiseless(noiseless, v):
    spec, truth = noiseless[v]
    tmpl = _template(truth.template, spec)
    for phase in (0.0, 0.25, 0.5):
        if phase:
            # sub-pixel phase: re-simulate with the wavelength grid moved by a fraction of a pixel
            spec, truth = simulate_extracted(
                seed=1,
                rv=v * u.km / u.s,
                z_b=Z_B,
                orders=ORDERS,
                n_pixel=N_PIXEL,
                noiseless=True,
                wavelength=_shifted(noiseless[v][0], phase)[0] * u.nm,
            )
        r = measure(spec, tmpl, method="template", z_b=Z_B)
        # target: |bias| < 0.1 m/s (issue 4) on noiseless data, in both frames
        assert abs(r.rv_observed.to_value(u.m / u.s) - C_M_S * truth.z_obs) < 0.1
        assert abs(r.rv.to_value(u.m / u.s) - C_M_S * truth.z_star) < 0.1
        assert r.barycentric_correction.to_value(u.m / u.s) == pytest.approx(C_M_S * Z_B, rel=1e-12)


def _isolated_mask():
    """A star and the mask of its lines with no neighbour within 45 km/s (see test_mask_bias_noiseless)."""
    star = StellarSpectrum(seed=2, n_lines=1500)
    lam = star.lines["wavelength"].to_value(u.nm)
    gap = np.diff(lam) / lam[1:] * C_M_S
    isolated = np.concatenate([[True], gap > 45e3]) & np.concatenate([gap > 45e3, [True]])
    mask = LineMask(
        star.lines["wavelength"][isolated], star.lines["depth"][isolated], wavelength_medium="vacuum"
    )
    return star, mask


@pytest.mark.parametrize("v", [-100.0, 0.0, 100.0])
def test_mask_bias_noiseless(v):
    # the mask holds the true centres of the lines with no neighbour within 45 km/s (more than the
    # 20 km/s CCF half-window plus 3 line widths), so every line's CCF is symmetric about the
    # injected shift; blends would add a template-dependent zero point instead
    star, mask = _isolated_mask()
    for phase in (0.0, 0.25, 0.5):
        kw = {}
        if phase:
            base, _ = simulate_extracted(
                seed=2,
                rv=v * u.km / u.s,
                z_b=Z_B,
                orders=ORDERS,
                n_pixel=N_PIXEL,
                noiseless=True,
                template=star,
            )
            kw["wavelength"] = _shifted(base, phase)[0] * u.nm
        spec, truth = simulate_extracted(
            seed=2,
            rv=v * u.km / u.s,
            z_b=Z_B,
            orders=ORDERS,
            n_pixel=N_PIXEL,
            noiseless=True,
            template=star,
            **kw,
        )
        r = measure(spec, mask, method="mask", z_b=Z_B)
        # target: |bias| < 1 m/s for the mask CCF (issue 4). Measured after freezing each line's
        # weight at the grid centre: |bias| <= 0.15 m/s at -100/0/+100 km/s and phases 0, 1/4, 1/2,
        # 3/4 (it was 1.8 m/s at +100 km/s when the weights followed the blaze slope along the grid).
        # 1 m/s is the limit, > 6x the measured worst case, so the test is not at the edge
        assert abs(r.rv_observed.to_value(u.m / u.s) - C_M_S * truth.z_obs) < 1.0
        # each order's velocity too (measured <= 0.35 m/s; each order has fewer lines, same limit)
        per_order = r.orders["rv"].to_value(u.m / u.s) - C_M_S * truth.z_obs
        assert np.all(np.abs(per_order) < 1.0), per_order
        fwhm = r.ccf["fwhm"][0].to_value(u.km / u.s)
        assert 5.0 < fwhm < 15.0  # R = 53000 (5.7 km/s) and 5.5 km/s lines: ~8 km/s
        assert 0 < r.ccf["contrast"][0] < 1


def test_template_scatter_matches_photon_limit(noiseless):
    """200 noise realisations at S/N ~100: scatter vs the photon limit and vs rv_err_photon."""
    spec0, truth = noiseless[0.0]
    tmpl = _template(truth.template, spec0)
    expected = truth.expected[0]
    rn2 = truth.meta["read_noise"] ** 2
    var = expected + rn2  # the true per-pixel variance (Poisson + read noise)
    # photon limit from the noiseless truth: sigma_v^-2 = sum (d F / d v)^2 / var, dF/dv by a
    # symmetric finite difference of the simulator itself (+-1 m/s: truncation ~1e-9 relative)
    sp, tp = simulate_extracted(
        seed=1, rv=1e-3 * u.km / u.s, z_b=Z_B, orders=ORDERS, n_pixel=N_PIXEL, noiseless=True
    )
    sm, tm = simulate_extracted(
        seed=1, rv=-1e-3 * u.km / u.s, z_b=Z_B, orders=ORDERS, n_pixel=N_PIXEL, noiseless=True
    )
    dfdv = (tp.expected[0] - tm.expected[0]) / 2.0
    limit = 1.0 / np.sqrt(np.sum(dfdv**2 / var))
    rng = np.random.default_rng(20240)
    n_real = 240
    rvs, errs = np.empty(n_real), np.empty(n_real)
    for k in range(n_real):
        noisy = expected + rng.normal(size=expected.shape) * np.sqrt(var)
        # the variance a pipeline would estimate from the noisy data (Poisson + read noise)
        est_var = np.clip(noisy, 0, None) + rn2
        spec = EchelleSpectrum(
            noisy[None],
            uncertainty=VarianceUncertainty(est_var[None]),
            wavelength=spec0.wavelength,
            orders=spec0.orders,
            fibers=spec0.fibers,
            blaze=spec0.blaze,
        )
        r = measure(spec, tmpl, method="template", z_b=Z_B)
        rvs[k] = r.rv_observed.to_value(u.m / u.s)
        errs[k] = r.rv_err_photon.to_value(u.m / u.s)
    scatter = np.std(rvs, ddof=1)
    # Pass criteria for an ideal estimator (scatter = limit): with n = 240 the sample std has a
    # relative standard error 1/sqrt(2(n-1)) = 4.6 %, so 1.1 x limit is +2.2 sigma (fails 1.4 % of
    # seeds). To keep the false-failure rate < 1/1000 we require scatter < 1.1 x limit using the
    # upper 99.9 % point of the chi-square: scatter * sqrt((n-1)/chi2_{0.001}(n-1)) is the lower
    # confidence bound of the true sigma, and it must be below 1.1 x limit.
    from scipy.stats import chi2

    lower = scatter * np.sqrt((n_real - 1) / chi2.ppf(0.999, n_real - 1))
    assert lower < 1.1 * limit, (scatter, limit)
    assert scatter > 0.85 * limit  # and not below the photon limit (3.2 sigma below 1.0 x limit)
    # rv_err_photon within 10 % of the true scatter: its own spread is tiny (same pixels, ~0.1 %),
    # the sample std carries the 4.6 % error: 10 % is 2.2 sigma; tested against the limit (exact)
    # and against the sample scatter with the same confidence bound as above
    assert abs(np.mean(errs) / limit - 1) < 0.10
    upper = scatter * np.sqrt((n_real - 1) / chi2.ppf(0.001, n_real - 1))
    assert lower / 1.1 < np.mean(errs) < upper * 1.1
    # and no bias from noise-weighted variance estimates: mean within 4 standard errors
    assert abs(np.mean(rvs) - C_M_S * truth.z_obs) < 4 * scatter / np.sqrt(n_real) + 0.1


def test_mask_error_matches_scatter():
    """240 noise realisations at S/N ~100: the mask method's rv_err_photon vs the RV scatter."""
    star, mask = _isolated_mask()
    spec0, truth = simulate_extracted(
        seed=2, rv=0.0 * u.km / u.s, z_b=Z_B, orders=ORDERS, n_pixel=N_PIXEL, noiseless=True, template=star
    )
    expected = truth.expected[0]
    rn2 = truth.meta["read_noise"] ** 2
    var = expected + rn2
    rng = np.random.default_rng(7)
    n_real = 240
    rvs, errs = np.empty(n_real), np.empty(n_real)
    for k in range(n_real):
        noisy = expected + rng.normal(size=expected.shape) * np.sqrt(var)
        spec = EchelleSpectrum(
            noisy[None],
            uncertainty=VarianceUncertainty((np.clip(noisy, 0, None) + rn2)[None]),
            wavelength=spec0.wavelength,
            orders=spec0.orders,
            fibers=spec0.fibers,
            blaze=spec0.blaze,
        )
        r = measure(spec, mask, method="mask", z_b=Z_B)
        rvs[k] = r.rv_observed.to_value(u.m / u.s)
        errs[k] = r.rv_err_photon.to_value(u.m / u.s)
    from scipy.stats import chi2

    scatter = np.std(rvs, ddof=1)
    # Criterion: the reported error (mean over realisations; its own spread is ~1 %) equals the true
    # sigma within 10 %. The sample std of n = 240 has a 4.6 % relative standard error, so we compare
    # with the 99.8 % two-sided confidence interval of the true sigma from the chi-square
    # ([lower, upper] ~ [0.88, 1.16] x scatter), widened by the 10 %: an error estimate that is right
    # fails < 1/500 of seeds; one 30 % or more off (e.g. a missing factor in the propagation) fails.
    # Measured: 28.3 m/s reported vs 29.8 m/s scatter (ratio 0.95, 1.1 sigma of the sample std).
    lower = scatter * np.sqrt((n_real - 1) / chi2.ppf(0.999, n_real - 1))
    upper = scatter * np.sqrt((n_real - 1) / chi2.ppf(0.001, n_real - 1))
    assert lower / 1.1 < np.mean(errs) < upper * 1.1, (np.mean(errs), scatter)
    # no bias from noise: the mean within 4 standard errors (+ the 0.15 m/s noiseless bias)
    assert abs(np.mean(rvs) - C_M_S * truth.z_obs) < 4 * scatter / np.sqrt(n_real) + 0.15


def test_measure_validates_inputs(noiseless):
    spec, truth = noiseless[0.0]
    tmpl = _template(truth.template, spec)
    with pytest.raises(InvalidParameterError, match="method"):
        measure(spec, tmpl, method="fft")
    with pytest.raises(InvalidParameterError, match="LineMask"):
        measure(spec, tmpl, method="mask")
    with pytest.raises(InvalidParameterError, match="fiber"):
        measure(spec, tmpl, fiber=2, z_b=0.0)
    with pytest.raises(InvalidParameterError, match="RA/DEC"):
        measure(spec, tmpl)  # barycentric=True, no header target, no z_b
    r = measure(spec, tmpl, barycentric=False)
    assert np.isnan(r.rv.value) and np.isfinite(r.rv_observed.value)
