"""The star at the extracted-spectrum level: proves RV methods without extraction or calibration."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.nddata import VarianceUncertainty

from ..doppler import observed_z, z_from_velocity
from ..errors import InvalidParameterError
from ..flags import empty_flags
from .detector import extracted_counts
from .doppler import barycentric_z_samples, default_target
from .sources import blaze_function, pixel_edges
from .star import StellarSpectrum
from .truth import Truth

__all__ = ["simulate_extracted", "peak_electrons"]

NX_DETECTOR = 4096


def peak_electrons(snr: float, read_noise: float) -> float:
    """Electrons N with ``N / sqrt(N + read_noise^2) = snr`` (the continuum at the blaze peak)."""
    return 0.5 * (snr**2 + snr * np.sqrt(snr**2 + 4.0 * read_noise**2))


def _model_wavelengths(site, mjd, orders, fiber, x):
    """Centre (n_order, n) and edge (n_order, n + 1) wavelengths (nm) from the physical model."""
    from ..instrument import PhysicalModel

    model = PhysicalModel.for_site(site, mjd=mjd)
    xe = np.concatenate([x - 0.5, x[-1:] + 0.5]).astype(float)
    centres = np.stack([model.wavelength(x.astype(float), int(m), fiber).to_value(u.nm) for m in orders])
    edges = np.stack([model.wavelength(xe, int(m), fiber).to_value(u.nm) for m in orders])
    return centres, edges


def simulate_extracted(
    *,
    site="lsc",
    seed=0,
    rv=0.0 * u.km / u.s,
    z_b=None,
    target=None,
    mjd=58400.5,
    orders=None,
    fiber=0,
    snr=100.0,
    read_noise=20.0,
    noiseless=False,
    n_pixel=4096,
    blaze=True,
    template=None,
    wavelength=None,
):
    """A stellar spectrum as an extraction would deliver it, with its truth.

    Parameters
    ----------
    site : str
        NRES site code; the wavelengths come from ``PhysicalModel.for_site(site, mjd=mjd)``.
    seed : int
        Seed of the noise (and of the default template, ``StellarSpectrum(seed=seed)``).
    rv : Quantity
        Barycentric radial velocity of the star, ``z_star = rv / c``.
    z_b : float or None
        Barycentric ``z_B``; ``None`` computes it with astropy for ``target`` at ``mjd`` from the
        site's location.
    target : SkyCoord or None
        Star position with proper motion and parallax (default tau Ceti).
    mjd : float
        UTC MJD of the observation.
    orders : array_like of int or None
        Physical orders (default all, 52..118).
    fiber : int
        Fiber id (0 or 2 for a star).
    snr : float
        Signal-to-noise per pixel of the continuum at the blaze peak (read noise included).
    read_noise : float
        Read noise per extracted pixel (electrons).
    noiseless : bool
        Return the expected electrons with no noise (the variance is still that of a real frame).
    n_pixel : int
        Number of pixels per order, centred on the detector (4096 = whole orders).
    blaze : bool
        Multiply by the blaze ``sinc^2(m (1 - lambda_c / lambda))``; False gives a flat continuum.
    template : StellarSpectrum or None
        The star (default ``StellarSpectrum(seed=seed)``).
    wavelength : Quantity or None, shape (n_order, n_pixel)
        Wavelengths to use instead of the physical model's (pixel edges are midpoints).

    Returns
    -------
    spectrum : EchelleSpectrum
        data (1, n_order, n_pixel) in electrons, ``VarianceUncertainty`` = expected + read_noise**2,
        vacuum topocentric wavelengths, ``pixel`` = full-detector x, blaze.
    truth : Truth
        ``expected`` noiseless electrons, ``wavelength``, ``blaze``, ``z_star``, ``z_b``,
        ``z_obs`` and the ``template``.
    """
    from ..spectrum import EchelleSpectrum

    if not isinstance(rv, u.Quantity):
        msg = f"simulate_extracted: rv must be a velocity Quantity, got {type(rv).__name__}"
        raise InvalidParameterError(msg)
    if not 1 <= int(n_pixel) <= NX_DETECTOR:
        msg = f"simulate_extracted: n_pixel must be in 1..{NX_DETECTOR}, got {n_pixel}"
        raise InvalidParameterError(msg)
    if not snr > 0 or read_noise < 0:
        msg = f"simulate_extracted: need snr > 0 and read_noise >= 0, got {snr}, {read_noise}"
        raise InvalidParameterError(msg)
    orders = np.arange(52, 119) if orders is None else np.atleast_1d(np.asarray(orders)).astype(np.int64)
    x = np.arange(n_pixel, dtype=np.int64) + (NX_DETECTOR - int(n_pixel)) // 2
    if wavelength is None:
        wl, edges = _model_wavelengths(site, mjd, orders, fiber, x)
    else:
        wl = np.asarray(wavelength.to_value(u.nm), dtype=float)
        if wl.shape != (orders.size, x.size):
            msg = f"simulate_extracted: wavelength must have shape {(orders.size, x.size)}, got {wl.shape}"
            raise InvalidParameterError(msg)
        edges = pixel_edges(wl)
    location = None
    if z_b is None:
        from ..instrument import site_location

        location = site_location(site)
        z_b = float(barycentric_z_samples(target or default_target(), [mjd], location)[0])
    z_star = float(z_from_velocity(rv))
    z_obs = float(observed_z(z_star, z_b))
    template = StellarSpectrum(seed=seed) if template is None else template
    flux = template.flux_integrated(edges * u.nm, z=z_obs)
    if blaze:
        centre = 0.5 * (wl[:, (x.size - 1) // 2] + wl[:, x.size // 2])[:, None]
        blz = blaze_function(wl, orders[:, None], centre)
    else:
        blz = np.ones_like(wl)
    expected = peak_electrons(snr, read_noise) * blz * flux
    variance = expected + read_noise**2
    data = extracted_counts(expected, read_noise, seed=seed, stream=0xE7, noiseless=noiseless)
    meta = {
        "OBSTYPE": "TARGET",
        "SITEID": site,
        "MJD-OBS": float(mjd),
        "NRESSIM": True,
        "SIMZSTAR": z_star,
        "SIMZB": float(z_b),
        "SIMSEED": int(seed),
    }
    spec = EchelleSpectrum(
        data[None],
        uncertainty=VarianceUncertainty(variance[None]),
        mask=np.zeros((1,) + data.shape, dtype=bool),
        flags=empty_flags((1,) + data.shape),
        wavelength=wl[None] * u.nm,
        wavelength_medium="vacuum",
        wavelength_frame="topocentric",
        orders=orders,
        fibers=np.array([fiber]),
        pixel=x,
        blaze=blz[None],
        meta=meta,
    )
    truth = Truth(
        obstype="TARGET",
        site=site,
        seed=int(seed),
        x=x,
        spectrum_fibers=np.array([fiber]),
        spectrum_orders=orders,
        expected=expected[None],
        wavelength=wl[None] * u.nm,
        blaze=blz[None],
        z_star=z_star,
        z_b=float(z_b),
        z_obs=z_obs,
        mjd=np.array([float(mjd)]),
        z_b_samples=np.array([float(z_b)]),
        flux_history=np.array([1.0]),
        template=template,
        meta={"snr": float(snr), "read_noise": float(read_noise), "location": location},
    )
    return spec, truth
