"""StellarSpectrum: analytic lines, exact Doppler shifts and pixel integrals."""

import astropy.units as u
import numpy as np
import pytest
from scipy.integrate import simpson
from scipy.special import erf

from nres.errors import InvalidParameterError
from nres.sim import _kernels
from nres.sim.star import StellarSpectrum

FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


@pytest.fixture(scope="module")
def star():
    return StellarSpectrum(seed=3)


# ----- numpy reference twins of the kernels --------------------------------------------------------
def star_flux_ref(lam, wl, amp, sig):
    return 1.0 - np.sum(amp[None] * np.exp(-0.5 * ((lam[:, None] - wl[None]) / sig[None]) ** 2), axis=1)


def star_mean_ref(lo, hi, wl, amp, sig):
    term = (
        amp
        * sig
        * np.sqrt(np.pi / 2)
        * (erf((hi[:, None] - wl) / (np.sqrt(2) * sig)) - erf((lo[:, None] - wl) / (np.sqrt(2) * sig)))
    )
    return 1.0 - term.sum(axis=1) / (hi - lo)


def test_kernels_match_numpy_twins():
    rng = np.random.default_rng(1)
    wl = np.sort(rng.uniform(500, 501, 60))
    amp = rng.uniform(0, 0.1, 60)
    sig = rng.uniform(0.002, 0.006, 60)
    lam = rng.uniform(499.9, 501.1, 300)
    np.testing.assert_allclose(
        _kernels.star_flux(lam, wl, amp, sig, sig.max()), star_flux_ref(lam, wl, amp, sig), rtol=0, atol=1e-13
    )
    lo = lam - rng.uniform(0.001, 0.03, 300)
    np.testing.assert_allclose(
        _kernels.star_mean(lo, lam, wl, amp, sig, sig.max()),
        star_mean_ref(lo, lam, wl, amp, sig),
        rtol=0,
        atol=1e-12,
    )


def test_lines_realistic_and_deterministic(star):
    lines = star.lines
    assert len(lines) == 20000
    assert lines["wavelength"].unit == u.nm and np.all(np.diff(lines["wavelength"].value) > 0)
    assert np.all((lines["depth"] > 0) & (lines["depth"] < 1))
    # intrinsic FWHM ~ 0.1 Angstrom at 550 nm (5.5 km/s): median within 20%
    near = np.abs(lines["wavelength"].value - 550) < 20
    assert abs(np.median(lines["width"].to_value(u.AA)[near]) - 0.1) < 0.02
    again = StellarSpectrum(seed=3)
    np.testing.assert_array_equal(again.lines["wavelength"].value, lines["wavelength"].value)
    assert not np.array_equal(StellarSpectrum(seed=4).lines["wavelength"].value, lines["wavelength"].value)
    lam = np.linspace(380, 870, 400001) * u.nm
    f = star.flux(lam)
    assert f.min() > 0.0 and f.max() <= 1.0


def test_equivalent_width_conserved_by_convolution(star):
    # EW of each Gaussian line = depth * sigma_int * sqrt(2 pi); the convolved spectrum must keep the
    # total over a band. Lines straddling the band edges are excluded by integrating a margin of
    # 0.1 nm (> 12 convolved sigma) beyond lines strictly inside [a, b] and subtracting nothing else.
    a, b = 600.0, 601.0
    lam = np.linspace(a - 0.5, b + 0.5, 200001)
    wl = star.lines["wavelength"].value
    inside = (wl > a) & (wl < b)
    sigma_int = star.lines["width"].value / FWHM
    ew_true = np.sum(star.lines["depth"][inside] * sigma_int[inside] * np.sqrt(2 * np.pi))
    # a spectrum of the inside lines only, through the public API of a one-band star
    sub = StellarSpectrum(seed=3)
    depth_all = 1.0 - sub.flux(lam * u.nm)
    # contribution of outside lines: evaluate them with the numpy twin at the same grid
    amp, sig = sub._arrays[1], sub._arrays[2]
    out = ~inside & (np.abs(wl - 600.5) < 1.5)
    depth_out = 1.0 - star_flux_ref(lam, wl[out], amp[out], sig[out])
    ew = np.trapezoid(depth_all - depth_out, lam)
    # trapezoid on a 5e-6 nm grid is exact to ~1e-9 nm; 1e-6 relative covers the scale-down factor's
    # float rounding
    np.testing.assert_allclose(ew, ew_true, rtol=1e-6)


def test_convolved_width_of_an_isolated_line(star):
    wl = star.lines["wavelength"].value
    gaps = np.minimum(np.diff(wl)[1:], np.diff(wl)[:-1])
    k = 1 + int(np.argmax(gaps * (star.lines["depth"][1:-1] > 0.3)))
    lam0 = wl[k]
    lam = np.linspace(lam0 - 0.05, lam0 + 0.05, 20001)
    depth = 1.0 - star.flux(lam * u.nm)
    half = depth >= depth.max() / 2
    fwhm = lam[half][-1] - lam[half][0]
    expected = np.hypot(star.lines["width"].value[k], lam0 / 53000.0)
    # grid step 5e-6 nm; neighbour lines > gap away add < 1e-3 relative
    np.testing.assert_allclose(fwhm, expected, rtol=2e-3)


def test_doppler_shift_moves_a_line_by_lambda_z(star):
    z = 1.234e-4  # 37 km/s
    wl = star.lines["wavelength"].value
    k = int(np.argmax(star.lines["depth"]))
    lam = np.linspace(wl[k] - 0.02, wl[k] + 0.08, 100001)
    f_shift = star.flux(lam * u.nm, z=z)
    f_rest = star.flux(lam / (1 + z) * u.nm)
    np.testing.assert_allclose(f_shift, f_rest, rtol=0, atol=1e-14)


def test_flux_integrated_is_the_pixel_mean(star):
    z = -5.0e-5
    edges = np.linspace(550.0, 550.5, 26)  # 0.02 nm pixels (NRES-like)
    got = star.flux_integrated(edges * u.nm, z=z)
    sub = np.linspace(0, 1, 2001)
    fine = edges[:-1, None] + sub[None] * np.diff(edges)[:, None]
    vals = star.flux(fine * u.nm, z=z)
    mean = simpson(vals, x=sub, axis=1)
    # Simpson with 2000 sub-steps of 1e-5 nm against sigma >= 4e-3 nm: error ~ (h/sigma)^4 < 1e-10
    np.testing.assert_allclose(got, mean, rtol=0, atol=1e-8)
    # decreasing edges give the same means
    np.testing.assert_allclose(star.flux_integrated(edges[::-1] * u.nm, z=z), got[::-1], atol=1e-14)


def test_rejects_bad_input(star):
    with pytest.raises(InvalidParameterError, match="wavelength"):
        star.flux(np.array([500.0]))
    with pytest.raises(InvalidParameterError, match="n_lines"):
        StellarSpectrum(n_lines=0)
