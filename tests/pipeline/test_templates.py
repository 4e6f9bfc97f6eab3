"""The simulated template: the simulator's exact star, evaluated once per (seed, grid) in a worker."""

import zlib
from types import SimpleNamespace

import astropy.units as u
import numpy as np

from nres.pipeline.templates import simulated_template
from nres.sim import StellarSpectrum


def _spec(offset_nm=0.0):
    lam = np.vstack([np.linspace(500.0, 501.0, 40), np.linspace(520.0, 521.2, 40)]) + offset_nm
    return SimpleNamespace(wavelength=lam * u.nm, fibers=np.array([0, 1]), shape=lam.shape)


def test_template_is_the_star_and_is_cached_per_grid():
    star = StellarSpectrum(seed=zlib.crc32(b"HD 1234"))
    first = simulated_template("HD 1234", _spec())
    lam = first.wavelength.to_value(u.nm) if hasattr(first.wavelength, "unit") else first.wavelength
    # known answer: the star evaluated directly on the template's grid (6 samples per pixel, +-0.5 nm)
    np.testing.assert_allclose(lam[0, [0, -1]], [499.5, 501.5])
    assert lam.shape == (2, 240)
    np.testing.assert_array_equal(first.flux, star.flux(lam * u.nm))
    again = simulated_template("HD 1234", _spec())
    assert np.shares_memory(again.flux, first.flux)  # second call reuses the cached evaluation
    assert not again.flux.flags.writeable  # shared: nobody may change it in place
    # another grid (a different wavelength solution) or another star is not served from the cache
    shifted = simulated_template("HD 1234", _spec(0.3))
    lam2 = shifted.wavelength.to_value(u.nm) if hasattr(shifted.wavelength, "unit") else shifted.wavelength
    np.testing.assert_array_equal(shifted.flux, star.flux(lam2 * u.nm))
    other = simulated_template("HD 9999", _spec())
    np.testing.assert_array_equal(other.flux, StellarSpectrum(seed=zlib.crc32(b"HD 9999")).flux(lam * u.nm))
    assert not np.array_equal(other.flux, first.flux)
