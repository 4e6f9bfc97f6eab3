"""simulate_extracted: the star x blaze at the extracted level, with its truth."""

import astropy.units as u
import numpy as np
from scipy.integrate import simpson

from nres.instrument import PhysicalModel
from nres.sim import simulate_extracted
from nres.sim.sources import blaze_function


def test_noiseless_flux_is_template_times_blaze_integrated():
    orders = [70, 95]
    spec, truth = simulate_extracted(
        seed=2,
        rv=12.3 * u.km / u.s,
        z_b=3.0e-5,
        orders=orders,
        n_pixel=256,
        noiseless=True,
        snr=100.0,
        read_noise=20.0,
    )
    assert spec.data.shape == (1, 2, 256) and spec.wavelength_medium == "vacuum"
    np.testing.assert_array_equal(spec.data, truth.expected)
    z_obs = (1 + 12.3e3 / 299792458.0) / (1 + 3.0e-5) - 1
    assert abs(truth.z_obs - z_obs) < 1e-15
    model = PhysicalModel.for_site("lsc", mjd=58400.5)
    peak = 0.5 * (100.0**2 + 100.0 * np.sqrt(100.0**2 + 4 * 20.0**2))
    sub = np.linspace(-0.5, 0.5, 401)
    for k, m in enumerate(orders):
        x = spec.pixel[::17].astype(float)
        lam = model.wavelength(x[:, None] + sub[None], m, 0).to(u.nm)
        f = truth.template.flux(lam, z=z_obs)
        dl = np.gradient(lam.value, sub, axis=1)
        mean = simpson(f * dl, x=sub, axis=1) / (lam.value[:, -1] - lam.value[:, 0])
        lc = model.wavelength(np.array([2047.5]), m, 0).to_value(u.nm)
        want = peak * blaze_function(model.wavelength(x, m, 0).to_value(u.nm), m, lc) * mean
        # Simpson over 400 sub-steps of a pixel: < 1e-7 relative
        np.testing.assert_allclose(spec.data[0, k, ::17], want, rtol=2e-6)


def test_noise_matches_variance():
    spec, truth = simulate_extracted(
        seed=5, rv=0 * u.km / u.s, z_b=0.0, orders=range(80, 90), snr=50.0, read_noise=10.0
    )
    r = ((spec.data - truth.expected) / np.sqrt(spec.uncertainty.array)).ravel()
    n = r.size
    assert abs(r.mean()) < 4 / np.sqrt(n) and abs(r.var() - 1) < 4 * np.sqrt(2 / n)
    # S/N of the continuum at the blaze peak is the requested one (peak of the noiseless blaze x 1)
    peak = truth.expected.max() / truth.template.flux(truth.wavelength[0].ravel()).max()
    assert abs(peak / np.sqrt(peak + 100.0) - 50.0) < 0.5


def test_barycentric_from_astropy_when_not_given():
    _, truth = simulate_extracted(seed=1, orders=[80], n_pixel=64, noiseless=True, mjd=58400.5)
    from astropy.coordinates import Distance, SkyCoord
    from astropy.time import Time

    from nres.instrument import site_location

    tau_ceti = SkyCoord(
        ra=26.0170 * u.deg,
        dec=-15.9375 * u.deg,
        pm_ra_cosdec=-1721.05 * u.mas / u.yr,
        pm_dec=854.16 * u.mas / u.yr,
        distance=Distance(parallax=273.96 * u.mas),
        radial_velocity=0 * u.km / u.s,
        obstime=Time(2000.0, format="jyear", scale="tdb"),
    )
    v = tau_ceti.radial_velocity_correction(
        obstime=Time(58400.5, format="mjd"), location=site_location("lsc")
    )
    assert abs(truth.z_b * 299792458.0 - v.to_value(u.m / u.s)) < 1e-6
