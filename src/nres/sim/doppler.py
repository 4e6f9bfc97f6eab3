"""Barycentric Doppler factors for the simulator, straight from astropy.

The simulator deliberately computes ``z_B`` here with :meth:`astropy.coordinates.SkyCoord.
radial_velocity_correction` and never through ``nres.rv``, so an error in the pipeline's own
barycentric correction cannot cancel against the simulated data. Only the packaged IERS tables
are used (no download).
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import Distance, EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers

from ..doppler import C_M_S, observed_z
from ..errors import InvalidParameterError

__all__ = [
    "default_target",
    "barycentric_z_samples",
    "flux_weighted",
    "exposure_samples",
    "mean_doppler_factor",
]


def default_target() -> SkyCoord:
    """tau Ceti (Hipparcos 2007 astrometry, epoch J2000), the simulator's default TARGET star."""
    return SkyCoord(
        ra=26.0170 * u.deg,
        dec=-15.9375 * u.deg,
        pm_ra_cosdec=-1721.05 * u.mas / u.yr,
        pm_dec=854.16 * u.mas / u.yr,
        distance=Distance(parallax=273.96 * u.mas),
        radial_velocity=0.0 * u.km / u.s,
        obstime=Time(2000.0, format="jyear", scale="tdb"),
    )


def exposure_samples(mjd_start: float, exptime: float, n_samples: int, *, seed: int):
    """Exposure-meter sample mid-times (MJD UTC) and a seeded relative flux history.

    The flux varies smoothly (seeing/transparency) by up to ~30% over the exposure.

    Returns
    -------
    mjd : ndarray, shape (n_samples,)
    flux : ndarray, shape (n_samples,), positive, mean 1
    """
    if n_samples < 1 or not exptime >= 0:
        msg = f"exposure samples: need n_samples >= 1 and exptime >= 0, got {n_samples}, {exptime}"
        raise InvalidParameterError(msg)
    frac = (np.arange(n_samples) + 0.5) / n_samples
    mjd = mjd_start + frac * exptime / 86400.0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF1A5]))
    a, b, phase = rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.1), rng.uniform(0, 2 * np.pi)
    flux = 1.0 + a * np.sin(2 * np.pi * frac + phase) + b * (frac - 0.5)
    return mjd, flux / flux.mean()


def barycentric_z_samples(target: SkyCoord, mjd, location: EarthLocation) -> np.ndarray:
    """``z_B = v_corr / c`` at each time, from astropy's ``radial_velocity_correction``.

    Parameters
    ----------
    target : SkyCoord
        With proper motion, distance (parallax) and ``obstime`` (epoch) when known.
    mjd : array_like, shape (n,)
        UTC MJD of the samples.
    location : EarthLocation
    """
    iers.conf.auto_download = False
    times = Time(np.atleast_1d(np.asarray(mjd, dtype=float)), format="mjd", scale="utc")
    vcorr = target.radial_velocity_correction(obstime=times, location=location)
    return np.asarray(vcorr.to_value(u.m / u.s)) / C_M_S


def flux_weighted(z_b_samples, flux, z_star: float):
    """Flux-weighted ``z_B`` and the per-sample observed redshifts.

    Returns
    -------
    z_b : float
        ``sum(flux * z_B) / sum(flux)``.
    z_obs_samples : ndarray
        ``(1 + z_star) / (1 + z_B(t)) - 1`` for each sample.
    """
    w = np.asarray(flux, dtype=float)
    zb = np.asarray(z_b_samples, dtype=float)
    return float(np.sum(w * zb) / np.sum(w)), observed_z(z_star, zb)


def mean_doppler_factor(z_b_samples, flux, z_star: float):
    """Flux-weighted mean and relative rms of the observed Doppler factor over an exposure.

    ``D(t) = (1 + z_star) / (1 + z_B(t))``. The simulator renders the star once at the mean
    factor, broadened by the rms (:meth:`StellarSpectrum.flux_integrated` ``spread=``), instead of
    averaging one spectrum per exposure-meter sample: that keeps the first two moments of the
    flux-weighted distribution of shifts exactly; the neglected higher moments change the
    spectrum by < 1e-8 (relative) and its radial velocity by < 2e-5 m/s even for one-hour
    exposures with a 90 m/s barycentric span (3e-7 m/s for 600 s; tests/sim/test_sim_speedups.py).

    Returns
    -------
    factor : float
        ``sum(w D) / sum(w)``.
    spread : float
        ``sqrt(sum(w (D - factor)^2) / sum(w)) / factor`` (dimensionless).
    """
    w = np.asarray(flux, dtype=float)
    w = w / w.sum()
    d = (1.0 + float(z_star)) / (1.0 + np.asarray(z_b_samples, dtype=float))
    factor = float(np.sum(w * d))
    return factor, float(np.sqrt(np.sum(w * (d - factor) ** 2)) / factor)
