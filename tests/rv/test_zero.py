"""ZERO templates (Template.from_spectra): bias and scatter on simulated epochs, template mismatch,
the original's file layout, the date legacy option."""

import astropy.units as u
import numba
import numpy as np
import pytest
from astropy.nddata import VarianceUncertainty
from scipy.stats import chi2

from nres._jit import set_num_threads
from nres.doppler import C_M_S
from nres.rv import Template, barycentric_correction, measure, read_zero, write_zero
from nres.rv.zero import _epoch_z_b, pixel_mean_design
from nres.sim.extracted import simulate_extracted
from nres.sim.star import StellarSpectrum
from nres.spectrum import EchelleSpectrum

ORDERS = [80, 81, 82]
N_PIXEL = 1024
RV = 12.3 * u.km / u.s
# barycentric redshifts over a season (+-25 km/s): the 5 ZERO epochs and 20 others in between/around
Z_ZERO = np.array([-8.0e-5, -4.1e-5, 0.3e-5, 4.4e-5, 8.2e-5])
Z_OTHER = np.linspace(-8.4e-5, 8.4e-5, 20) + 0.13e-5


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():
    """Small fits: one numba thread (thread start-up dominates on the loaded machine)."""
    previous = numba.get_num_threads()
    set_num_threads(1)
    yield
    set_num_threads(previous)


def _epoch(z_b, orders=ORDERS, **kw):
    return simulate_extracted(seed=1, rv=RV, z_b=z_b, orders=orders, n_pixel=N_PIXEL, noiseless=True, **kw)


@pytest.fixture(scope="module")
def zero():
    epochs = [_epoch(z)[0] for z in Z_ZERO]
    return Template.from_spectra(epochs, z_b=Z_ZERO, rv=RV)


def test_pixel_mean_design_is_the_exact_mean():
    from scipy.interpolate import BSpline

    grid = np.linspace(0.0, 1.0, 30)
    t = np.concatenate([[0.0] * 4, grid[2:-2], [1.0] * 4])
    coef = np.random.default_rng(1).normal(size=t.size - 4)
    spl = BSpline(t, coef, 3)
    lo = np.random.default_rng(2).uniform(0.0, 0.9, 50)
    hi = lo + np.random.default_rng(3).uniform(0.001, 0.1, 50)
    anti = spl.antiderivative()
    exact = (anti(hi) - anti(lo)) / (hi - lo)
    np.testing.assert_allclose(pixel_mean_design(lo, hi, t) @ coef, exact, rtol=1e-10, atol=1e-12)


def test_zero_bias_noiseless(zero):
    # the bootstrap finds the epochs' (equal) RVs: 3e-10 in z is 9 cm/s, a third of the 0.3 m/s target
    # (measured 1.6e-10: the ends of the co-add, covered by one epoch each, pull that epoch slightly)
    np.testing.assert_allclose(zero.meta["z_star"], RV.to_value(u.m / u.s) / C_M_S, rtol=0, atol=3e-10)
    worst = 0.0
    for z in Z_OTHER:
        spec, truth = _epoch(z)
        r = measure(spec, zero, method="template", z_b=z)
        worst = max(worst, abs(r.rv.to_value(u.m / u.s) - C_M_S * truth.z_star))
    # target (issue 10): |bias| < 0.3 m/s on 20 epochs not in the ZERO; measured <= 0.075 m/s
    assert worst < 0.3, worst


def test_zero_scatter_within_photon_limit(capsys):
    """200 realisations: 5 noisy epochs -> ZERO -> one noisy epoch; one order keeps it fast."""
    order = [81]
    base = [_epoch(z, order) for z in Z_ZERO]
    target, truth = _epoch(2.1e-5, order)
    rn2 = truth.meta["read_noise"] ** 2
    # photon limit of the target epoch from the noiseless truth (finite difference of the simulator)
    sp = simulate_extracted(
        seed=1, rv=RV + 1 * u.m / u.s, z_b=2.1e-5, orders=order, n_pixel=N_PIXEL, noiseless=True
    )
    sm = simulate_extracted(
        seed=1, rv=RV - 1 * u.m / u.s, z_b=2.1e-5, orders=order, n_pixel=N_PIXEL, noiseless=True
    )
    dfdv = (sp[1].expected[0] - sm[1].expected[0]) / 2.0
    limit = 1.0 / np.sqrt(np.sum(dfdv**2 / (truth.expected[0] + rn2)))
    rng = np.random.default_rng(1010)

    def noisy(spec, tr):
        expected = tr.expected[0]
        var = expected + rn2
        d = expected + rng.normal(size=expected.shape) * np.sqrt(var)
        return EchelleSpectrum(
            d[None],
            uncertainty=VarianceUncertainty((np.clip(d, 0, None) + rn2)[None]),
            wavelength=spec.wavelength,
            orders=spec.orders,
            fibers=spec.fibers,
            blaze=spec.blaze,
        )

    n_real = 200
    rvs, errs = np.empty(n_real), np.empty(n_real)
    for k in range(n_real):
        tmpl = Template.from_spectra([noisy(*e) for e in base], z_b=Z_ZERO, rv=RV, iterations=0)
        r = measure(noisy(target, truth), tmpl, method="template", z_b=2.1e-5)
        rvs[k] = r.rv.to_value(u.m / u.s)
        errs[k] = r.rv_err_photon.to_value(u.m / u.s)
    scatter = np.std(rvs, ddof=1)
    bound = 1.2 * limit * np.sqrt(1 + 1 / 5)
    with capsys.disabled():
        print(
            f"\nZERO scatter {scatter:.2f} m/s, limit {limit:.2f}, bound {bound:.2f}, err {np.mean(errs):.2f}"
        )
    # target (issue 10), asserted as stated: scatter within 1.2 x limit x sqrt(1 + 1/5). For an ideal
    # method (true sigma = limit x sqrt(1 + 1/5)) the sample std of n = 200 exceeds 1.2 x sigma with
    # probability P(chi2_199 > 199 x 1.44) ~ 1e-5, below 1/1000: the bound itself is a fair test
    assert chi2.sf((n_real - 1) * 1.2**2, n_real - 1) < 1e-3
    assert scatter < bound, (scatter, limit, bound)  # measured 21.7 m/s (1.28 x limit; 1.19 x on seed 7)
    # the reported error (data + propagated template variance) matches the scatter within 15 %: the true
    # sigma lies in the sample std's 99.8 % interval, ~[0.87, 1.17] x scatter for n = 200 (measured
    # 18.6 m/s: the template's noise also perturbs the fit's derivative, which the error leaves out)
    lower = scatter * np.sqrt((n_real - 1) / chi2.ppf(0.999, n_real - 1))
    upper = scatter * np.sqrt((n_real - 1) / chi2.ppf(0.001, n_real - 1))
    assert lower / 1.15 < np.mean(errs) < upper * 1.15, (np.mean(errs), scatter)
    assert abs(np.mean(rvs) - RV.to_value(u.m / u.s)) < 4 * scatter / np.sqrt(n_real) + 0.3


def test_template_mismatch_reports_bias(capsys):
    """A ZERO of a star with broader lines (7.5 vs 5.5 km/s) measured on the default star: the bias is
    reported, not asserted zero (a symmetric broadening mismatch shifts nothing in principle; blends
    of unequal depth do)."""
    broad = StellarSpectrum(seed=1, line_fwhm=7.5 * u.km / u.s)
    epochs = [_epoch(z, template=broad)[0] for z in Z_ZERO]
    tmpl = Template.from_spectra(epochs, z_b=Z_ZERO, rv=RV, iterations=1)
    bias = []
    for z in Z_OTHER[::4]:
        spec, truth = _epoch(z)
        r = measure(spec, tmpl, method="template", z_b=z)
        bias.append(r.rv.to_value(u.m / u.s) - C_M_S * truth.z_star)
    with capsys.disabled():
        print(f"\ntemplate mismatch (7.5 vs 5.5 km/s lines): bias {np.mean(bias):+.2f} m/s", end="")
        print(f", spread {np.ptp(bias):.3f} m/s over 5 epochs")
    assert np.all(np.isfinite(bias))
    # measured: -6.8 m/s mean, drifting by 1.6 m/s with z_B (lines entering/leaving the order ends);
    # only a sanity bound here: metres per second, not kilometres
    assert np.all(np.abs(bias) < 100.0)


def test_zero_file_round_trip(zero, tmp_path):
    path = tmp_path / "zero.fits"
    write_zero(zero, path, header={"OBJECT": "SIM"})
    back = read_zero(path)
    ok = np.isfinite(zero.flux)
    np.testing.assert_array_equal(back.wavelength.value[ok], zero.wavelength.value[ok])
    np.testing.assert_allclose(back.flux[ok], zero.flux[ok], rtol=1e-6)  # float32 Star column
    assert back.meta["header"]["OBSTYPE"] == "TEMPLATE" and back.meta["header"]["NAVG"] == 5
    assert back.meta["header"]["REDSHIFT"] == pytest.approx(zero.meta["REDSHIFT"])
    spec, truth = _epoch(3e-5)
    r1 = measure(spec, zero, method="template", z_b=3e-5)
    r2 = measure(spec, back, method="template", z_b=3e-5)
    # float32 storage of the flux and variance: 0.05 m/s
    assert abs(r1.rv.to_value(u.m / u.s) - r2.rv.to_value(u.m / u.s)) < 0.05


def test_zero_date_legacy():
    spec, _ = _epoch(0.0, [81])
    meta = dict(spec.meta)
    meta.update({"RA": 26.0, "DEC": -15.9, "EXPTIME": 600.0, "MJD-OBS": 58400.1})
    spec = EchelleSpectrum(
        spec.data,
        uncertainty=spec.uncertainty,
        wavelength=spec.wavelength,
        orders=spec.orders,
        fibers=spec.fibers,
        meta=meta,
    )
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    target = SkyCoord(26.0, -15.9, unit="deg")
    mid = Time(58400.1, format="mjd", scale="utc") + 300 * u.s
    exact = _epoch_z_b(spec, "exact")
    early = _epoch_z_b(spec, "one_day_early")
    assert exact == pytest.approx(barycentric_correction(target, mid, "lsc").z, abs=1e-15)
    assert early == pytest.approx(barycentric_correction(target, mid - 1 * u.day, "lsc").z, abs=1e-15)
    # one day moves z_B by up to 0.46 km/s (idl-rv-ops.md 5.2); here by more than 1 m/s
    assert abs(exact - early) * C_M_S > 1.0
