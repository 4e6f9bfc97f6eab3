"""Per-pixel outlier rejection of the template fit (measure(..., pixel_clip=...)): no bias on clean
data, spikes rejected and reported, and a rejected fraction of pure Gaussian noise that follows k."""

import astropy.units as u
import numba
import numpy as np
import pytest
from astropy.nddata import VarianceUncertainty
from scipy.special import erfc

from nres._jit import set_num_threads
from nres.doppler import C_M_S
from nres.errors import InvalidParameterError
from nres.rv import Template, measure
from nres.sim.extracted import simulate_extracted
from nres.spectrum import EchelleSpectrum

ORDERS = [80, 81, 82]
N_PIXEL = 1024
Z_B = 1.0e-5


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():
    """Tens of fits of 3 x 1024 pixels: one numba thread (thread start/join costs more than the work on
    a loaded 2-core machine; the kernel's parallel path is tested in test_kernels.py)."""
    previous = numba.get_num_threads()
    set_num_threads(1)
    yield
    set_num_threads(previous)


@pytest.fixture(scope="module")
def clean():
    """A noiseless spectrum at +20 km/s and the star as a template (6x oversampled, +-1 nm)."""
    spec, truth = simulate_extracted(
        seed=3, rv=20.0 * u.km / u.s, z_b=Z_B, orders=ORDERS, n_pixel=N_PIXEL, noiseless=True
    )
    lam = spec.wavelength.to_value(u.nm)[0]
    grid = np.array([np.linspace(row.min() - 1.0, row.max() + 1.0, 6 * N_PIXEL) for row in lam]) * u.nm
    tmpl = Template(
        grid, truth.template.flux(grid), wavelength_medium="vacuum", wavelength_frame="barycentric"
    )
    return spec, truth, tmpl


def _with_data(spec, data):
    return EchelleSpectrum(
        data, uncertainty=VarianceUncertainty(spec.variance.copy()), flags=spec.flags,
        wavelength=spec.wavelength, orders=spec.orders, fibers=spec.fibers, pixel=spec.pixel,
        blaze=spec.blaze, meta=spec.meta,
    )  # fmt: skip


def _noisy(spec, seed):
    """The noiseless spectrum plus Gaussian noise of exactly its variance."""
    rng = np.random.default_rng(seed)
    return _with_data(spec, spec.data + np.sqrt(spec.variance) * rng.normal(size=spec.data.shape))


def _rv(spec, tmpl, **kw):
    return measure(spec, tmpl, method="template", z_b=Z_B, **kw)


def test_noiseless_bias_unchanged(clean):
    """Noiseless data: nothing is rejected and the RV is the unclipped fit's (< 0.01 m/s; both within
    0.1 m/s of the truth, the template method's noiseless target)."""
    spec, truth, tmpl = clean
    on, off = _rv(spec, tmpl), _rv(spec, tmpl, pixel_clip=None)
    assert on.meta["n_pixels_rejected"] == 0 and off.meta["n_pixels_rejected"] == 0
    assert np.all(on.orders["n_rejected"] == 0)
    assert abs((on.rv - off.rv).to_value(u.m / u.s)) < 0.01
    assert abs(on.rv.to_value(u.m / u.s) - C_M_S * truth.z_star) < 0.1


def test_spikes_rejected_and_reported(clean):
    """Five pixels at 20x the continuum in one order (a cosmic ray kept by a one-frame master): with the
    default rejection they are the rejected pixels and the RV is the clean spectrum's within its photon
    error; without it the order is pulled (shown, so the test can fail)."""
    spec, _, tmpl = clean
    noisy = _noisy(spec, 11)
    clean_rv = _rv(noisy, tmpl)
    data = np.array(noisy.data)
    o = 1  # order 81
    cols = np.array([200, 201, 480, 655, 900])
    data[0, o, cols] = 20.0 * np.median(spec.data[0, o])
    spiked = _with_data(noisy, data)
    on, off = _rv(spiked, tmpl), _rv(spiked, tmpl, pixel_clip=None)
    rejected = on.meta["pixel_rejected"]
    assert rejected.shape == (len(ORDERS), N_PIXEL)
    np.testing.assert_array_equal(np.flatnonzero(rejected[o]), cols)
    assert not rejected[[0, 2]].any() and on.meta["n_pixels_rejected"] == 5
    assert on.orders["n_rejected"].tolist() == [0, 5, 0]
    err = clean_rv.rv_err_photon.to_value(u.m / u.s)
    assert abs((on.rv - clean_rv.rv).to_value(u.m / u.s)) < err
    # the spikes left in: order 81's own RV moves by many of its errors (or the order is clipped)
    row = off.orders[o]
    moved = abs((row["rv"] - clean_rv.orders[o]["rv"]).to_value(u.m / u.s))
    assert moved > 5.0 * clean_rv.orders[o]["rv_err"].to_value(u.m / u.s)
    assert "n_rejected" not in measure(spiked, tmpl, method="ccf", z_b=Z_B).orders.colnames  # template only


def _rule_fraction(k, n, trials=4000, seed=0):
    """Expected rejected fraction of the rule on pure N(0, 1) residuals of ``n`` pixels per order: the
    limit is k x max(1, 1.4826 x median |r|), so the order's noisy robust scale (+-3.6 % at n = 1024)
    raises it in half the orders. Monte Carlo of the stated rule in numpy (not the kernel)."""
    z = np.random.default_rng(seed).normal(size=(trials, n))
    scale = np.maximum(1.0, 1.4826 * np.median(np.abs(z), axis=1, keepdims=True))
    return float((np.abs(z) > k * scale).mean())


def test_gaussian_noise_rejected_fraction_follows_k(clean):
    """Pure Gaussian noise of the stated variance, 40 realisations (122880 pixels): k=5 rejects nothing
    (expected 0.07 pixels) and leaves the RV unchanged; k=3 rejects the rule's fraction of the noise:
    0.88 x the two-sided tail erfc(3 / sqrt 2) = 0.27 % (the order's robust scale raises the limit),
    within 4 binomial standard deviations (~17 pixels of ~290)."""
    spec, _, tmpl = clean
    n_rej5 = n_rej3 = n_pix = 0
    for seed in range(40):
        noisy = _noisy(spec, 100 + seed)
        on = _rv(noisy, tmpl)
        n_rej5 += on.meta["n_pixels_rejected"]
        if seed < 5:
            assert on.rv == _rv(noisy, tmpl, pixel_clip=None).rv  # nothing rejected: the same fit
        n_rej3 += _rv(noisy, tmpl, pixel_clip=3.0).meta["n_pixels_rejected"]
        n_pix += noisy.data.size  # every pixel is fitted (template +-1 nm beyond each order)
    assert n_rej5 == 0
    expected = n_pix * _rule_fraction(3.0, N_PIXEL)
    assert 0.8 < expected / (n_pix * erfc(3.0 / np.sqrt(2.0))) < 0.95  # the scale's effect, as stated
    assert abs(n_rej3 - expected) < 4.0 * np.sqrt(expected), (n_rej3, expected)


def test_pixel_clip_validated(clean):
    spec, _, tmpl = clean
    with pytest.raises(InvalidParameterError, match="pixel_clip"):
        _rv(spec, tmpl, pixel_clip=-1.0)
    with pytest.raises(InvalidParameterError, match="pixel_clip_iterations"):
        _rv(spec, tmpl, pixel_clip_iterations=-1)
    assert _rv(spec, tmpl, pixel_clip=0.0).meta["n_pixels_rejected"] == 0  # 0 = off, as None
