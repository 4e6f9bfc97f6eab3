"""The template method's wide starting search (+-400 km/s) is robust to one misleading order.

The pipeline hit two cases where the summed coarse CCF locked onto a wrong peak: an order whose
spectrum sits at another velocity (a wrong wavelength solution) and is brighter than the rest, and a
continuum misfit at a blaze edge with a tiny variance. Reproduced on simulated spectra (5 orders,
S/N 50): before the fix the first raised FitError ("no order gave a velocity") and the second
returned +148 km/s for a star at -40 km/s.
"""

import copy

import astropy.units as u
import numpy as np
import pytest

from nres.doppler import C_M_S
from nres.flags import Flag
from nres.rv import LineMask, Template, measure
from nres.rv.measure import _consensus
from nres.sim.extracted import simulate_extracted
from nres.sim.star import StellarSpectrum

ORDERS = [80, 81, 82, 83, 84]
N_PIXEL = 1024
Z_B = 1.0e-5
RV_STAR = -40.0 * u.km / u.s


@pytest.fixture(scope="module")
def case():
    spec, truth = simulate_extracted(seed=3, rv=RV_STAR, z_b=Z_B, orders=ORDERS, n_pixel=N_PIXEL, snr=50)
    lam = spec.wavelength.to_value(u.nm)[0]
    grid = np.array([np.linspace(lo.min() - 1.0, lo.max() + 1.0, 6 * N_PIXEL) for lo in lam]) * u.nm
    tmpl = Template(
        grid, truth.template.flux(grid), wavelength_medium="vacuum", wavelength_frame="barycentric"
    )
    other, _ = simulate_extracted(
        seed=4, rv=150 * u.km / u.s, z_b=Z_B, orders=ORDERS, n_pixel=N_PIXEL, snr=500
    )
    clean = measure(spec, tmpl, method="template", z_b=Z_B)
    return spec, truth, tmpl, other, clean


def _check(r, truth, clean):
    v = r.rv_observed.to_value(u.m / u.s)
    err = r.rv_err_photon.to_value(u.m / u.s)
    # one order less (or a few edge pixels less) than the clean measurement: the result agrees with
    # the truth within 5 sigma of its own error (S/N 50 on 5 x 1024 pixels: ~15 m/s) -- a wrong peak
    # would be off by >= 2 km/s (the coarse grid step), i.e. > 100 sigma
    ref = C_M_S * truth.z_obs
    tol = 5.0 * err
    assert abs(v - ref) < tol, (v, ref, tol)
    assert abs(v - clean.rv_observed.to_value(u.m / u.s)) < tol


def test_clean_spectrum_reference(case):
    _, truth, _, _, clean = case
    _check(clean, truth, clean)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_bright_order_at_another_velocity_is_rejected(case, scale):
    spec, truth, tmpl, other, clean = case
    bad = copy.deepcopy(spec)
    bad.data[0, 2] = other.data[0, 2] * scale  # order 82 at +150 km/s, S/N 500 x sqrt(scale)
    bad.uncertainty.array[0, 2] = other.uncertainty.array[0, 2] * scale**2
    r = measure(bad, tmpl, method="template", z_b=Z_B)
    _check(r, truth, clean)
    assert int(r.orders["flags"][2]) & int(Flag.OUTLIER | Flag.NO_WEIGHT)  # the bad order is not used


def test_blaze_edge_with_tiny_variance_does_not_move_the_start(case):
    spec, truth, tmpl, _, clean = case
    bad = copy.deepcopy(spec)
    bad.data[0, 1, :80] *= np.linspace(0.0, 1.0, 80) ** 3  # flux falls to 0 at the edge ...
    bad.uncertainty.array[0, 1, :80] = 1e-3  # ... with a (wrongly) tiny variance
    r = measure(bad, tmpl, method="template", z_b=Z_B)
    _check(r, truth, clean)


def test_consensus_of_gaussian_ccfs():
    """Analytic per-order CCFs: 4 unit Gaussians at shifts 49-51 and one 1000x taller at 150 (the
    normalisation alone cannot tell them apart: each order votes)."""
    grid = np.arange(200.0)
    g = lambda c, a: a * np.exp(-0.5 * ((grid - c) / 3.0) ** 2)  # noqa: E731
    per = np.array([g(50, 1.0), g(51, 1.0), g(49, 1.0), g(50, 2.0), g(150, 1000.0)])
    assert int(np.argmax(per.sum(0))) == 150  # the plain sum is dominated by the bright order
    _, agree, peak = _consensus(per, max_offset=3)
    assert peak == 50
    assert agree.tolist() == [True, True, True, True, False]


def test_mask_method_start_ignores_a_bright_order_at_another_velocity():
    """The mask method's coarse CCF (+-400 km/s, 2 km/s grid) combines per-order dips the same way."""
    star = StellarSpectrum(seed=2, n_lines=1500)
    mask = LineMask(star.lines["wavelength"], star.lines["depth"], wavelength_medium="vacuum")
    kw = {"z_b": Z_B, "orders": ORDERS, "n_pixel": N_PIXEL, "template": star}
    spec, truth = simulate_extracted(seed=3, rv=RV_STAR, snr=50, **kw)
    other, _ = simulate_extracted(seed=4, rv=150 * u.km / u.s, snr=500, **kw)
    bad = copy.deepcopy(spec)
    bad.data[0, 2] = other.data[0, 2] * 30.0
    bad.uncertainty.array[0, 2] = other.uncertainty.array[0, 2] * 900.0
    r = measure(bad, mask, method="mask", z_b=Z_B)
    v = r.rv_observed.to_value(u.m / u.s)
    # the wrong peak is 190 km/s away; the right one within 5 sigma (+ the mask's blend zero point,
    # < 100 m/s for this unselected line list: a wrong start would be > 2 km/s off)
    assert abs(v - C_M_S * truth.z_obs) < 5.0 * r.rv_err_photon.to_value(u.m / u.s) + 100.0


def test_combine_rejects_edge_orders_on_both_sides():
    """Per-order RVs of a demo exposure (m/s, observed frame): orders 79 and 88 at the window's edges
    ~700 m/s off on either side, order 83 2.2 km/s off, order 86 unmeasured. The weighted mean carried
    79 and 88 through the rejection (result -14663 m/s); the six consistent orders give -14751 m/s."""
    from nres.rv.measure import _combine

    v = np.array([-14063.58, -14740.19, -14755.28, -14752.16, -12500.05, -14734.32, -14766.99, np.nan,
                  -14757.61, -15490.12])  # fmt: skip
    e = np.array([4.46, 5.17, 4.84, 4.83, 5.84, 4.64, 4.67, np.nan, 7.05, 9.27])
    mean, _, _, used = _combine(np.log1p(v / C_M_S), e / C_M_S, 5.0)
    assert used.tolist() == [False, True, True, True, False, True, True, False, True, False]
    good = used
    w = 1.0 / e[good] ** 2
    expected = np.sum(w * v[good]) / np.sum(w)  # hand check: the inverse-variance mean of the six
    assert abs(C_M_S * np.expm1(mean) - expected) < 0.01  # ln(1+z) vs z: < 1e-3 m/s here
