"""A synthetic stellar spectrum with exact, analytic Doppler shifts (the simulator's template).

The spectrum is a continuum-normalised sum of Gaussian absorption lines. Each line has an
intrinsic FWHM of a few km/s (about 0.1 Angstrom) and is convolved *analytically* with a Gaussian
instrumental profile of resolving power ``resolution`` (widths add in quadrature, equivalent widths
are conserved). Because the spectrum is a closed-form function of wavelength, a Doppler shift
``f_rest(lambda / (1 + z))`` and the mean over a pixel are evaluated exactly, with no resampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..doppler import C_M_S
from ..errors import InvalidParameterError
from . import _kernels

__all__ = ["StellarSpectrum"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Lowest allowed value of the convolved spectrum: depths are scaled down (all by one factor) if
#: overlapping lines would take it below this, so the spectrum stays positive.
_MIN_FLUX = 0.03


def _nm(value, name):
    if isinstance(value, u.Quantity):
        return value.to_value(u.nm, equivalencies=u.spectral())
    msg = f"StellarSpectrum: {name} must be a Quantity of wavelength, got {type(value).__name__}"
    raise InvalidParameterError(msg)


@dataclass(frozen=True, eq=False)
class StellarSpectrum:
    """A deterministic synthetic stellar spectrum (vacuum wavelengths, continuum = 1).

    Parameters
    ----------
    seed : int
        Seed of the line list; the same seed always gives the same spectrum.
    n_lines : int
        Number of absorption lines (default 20000 over 370-880 nm, denser in the blue as in
        FGK stars).
    wavelength_range : Quantity, shape (2,)
        Vacuum wavelength range covered by the lines.
    resolution : float or None
        Resolving power R of the Gaussian instrumental profile (FWHM = lambda / R) the lines are
        convolved with; ``None`` gives the intrinsic spectrum.
    line_fwhm : Quantity
        Median intrinsic FWHM of the lines as a velocity (default 5.5 km/s, i.e. 0.1 Angstrom at
        550 nm); individual lines scatter by 0.15 dex around it.

    Attributes
    ----------
    lines : QTable
        ``wavelength`` (nm, vacuum, rest frame), ``depth`` (intrinsic central depth, 0..1),
        ``width`` (intrinsic FWHM, nm), sorted by wavelength.

    Examples
    --------
    >>> import astropy.units as u
    >>> star = StellarSpectrum(seed=1)
    >>> f = star.flux([550.0, 550.1] * u.nm, z=1e-4)   # doctest: +SKIP
    """

    seed: int = 0
    n_lines: int = 20000
    wavelength_range: u.Quantity = field(default_factory=lambda: [370.0, 880.0] * u.nm)
    resolution: float | None = 53000.0
    line_fwhm: u.Quantity = field(default_factory=lambda: 5.5 * u.km / u.s)
    lines: QTable = field(init=False, repr=False)
    _arrays: tuple = field(init=False, repr=False)

    def __post_init__(self):
        lo, hi = (float(v) for v in _nm(self.wavelength_range, "wavelength_range"))
        if not 0 < lo < hi:
            msg = f"StellarSpectrum: wavelength_range must be increasing and positive, got {lo}, {hi}"
            raise InvalidParameterError(msg)
        if int(self.n_lines) < 1:
            msg = f"StellarSpectrum: n_lines must be >= 1, got {self.n_lines}"
            raise InvalidParameterError(msg)
        if self.resolution is not None and not self.resolution > 0:
            msg = f"StellarSpectrum: resolution must be positive or None, got {self.resolution}"
            raise InvalidParameterError(msg)
        fwhm_v = self.line_fwhm.to_value(u.m / u.s)
        rng = np.random.default_rng(np.random.SeedSequence([int(self.seed), 0x57A2]))
        n = int(self.n_lines)
        # line density proportional to lambda^-2 (more metal lines in the blue): inverse CDF of 1/lambda
        q = rng.uniform(size=n)
        wl = np.sort(1.0 / (1.0 / lo - q * (1.0 / lo - 1.0 / hi)))
        # many weak lines, few strong ones (depth distribution roughly like a solar line list)
        depth = 0.01 + 0.84 * rng.uniform(size=n) ** 2.5
        fwhm = wl * fwhm_v / C_M_S * 10.0 ** rng.normal(0.0, 0.15, size=n)
        sigma_int = fwhm * _FWHM_TO_SIGMA
        sigma, amp = self._convolve(wl, depth, sigma_int)
        # keep the spectrum positive where lines overlap (one global factor, deterministic)
        grid = np.arange(lo, hi, 0.25 * float(np.min(sigma)))
        fmin = float(np.min(_kernels.star_flux(grid, wl, amp, sigma, float(sigma.max()))))
        if fmin < _MIN_FLUX:
            scale = (1.0 - _MIN_FLUX) / (1.0 - fmin)
            depth = depth * scale
            amp = amp * scale
        lines = QTable()
        lines["wavelength"] = wl * u.nm
        lines["depth"] = depth
        lines["width"] = fwhm * u.nm
        object.__setattr__(self, "lines", lines)
        arrays = tuple(np.ascontiguousarray(a, dtype=np.float64) for a in (wl, amp, sigma))
        object.__setattr__(self, "_arrays", arrays + (float(sigma.max()),))

    def _convolve(self, wl, depth, sigma_int):
        if self.resolution is None:
            return sigma_int, depth
        sigma_r = wl / self.resolution * _FWHM_TO_SIGMA
        sigma = np.hypot(sigma_int, sigma_r)
        return sigma, depth * sigma_int / sigma  # equivalent width conserved

    def _broadened(self, spread):
        """Line arrays convolved with a Gaussian of relative width ``spread`` (widths add in
        quadrature, equivalent widths kept)."""
        wl, amp, sigma, _ = self._arrays
        wide = np.hypot(sigma, wl * spread)
        return wl, np.ascontiguousarray(amp * sigma / wide), np.ascontiguousarray(wide), float(wide.max())

    def flux(self, wavelength, *, z=0.0):
        """Noiseless continuum-normalised flux at observed vacuum wavelengths.

        Parameters
        ----------
        wavelength : Quantity, any shape
            Vacuum wavelengths where the shifted spectrum is evaluated.
        z : float
            Doppler redshift: returns ``f_rest(wavelength / (1 + z))``.

        Returns
        -------
        ndarray, same shape as ``wavelength``
        """
        lam = np.asarray(_nm(wavelength, "wavelength"), dtype=np.float64)
        rest = np.ascontiguousarray(lam.ravel() / (1.0 + float(z)))
        return _kernels.star_flux(rest, *self._arrays).reshape(lam.shape)

    def flux_integrated(self, edges, *, z=0.0, spread=0.0):
        """Mean flux over pixels given their wavelength edges (exact integral of :meth:`flux`).

        Parameters
        ----------
        edges : Quantity, shape (..., n + 1)
            Increasing or decreasing pixel edges (vacuum, observed frame) along the last axis.
        z : float
            Doppler redshift (see :meth:`flux`).
        spread : float
            Relative rms of the Doppler factor ``1 + z`` over an exposure (dimensionless, >= 0).
            The average of the spectrum over a Gaussian distribution of Doppler factors of mean
            ``1 + z`` and this relative rms: each rest-frame line of sigma ``s`` at ``lambda_k``
            becomes one of sigma ``hypot(s, lambda_k * spread)`` with its equivalent width kept
            (exact but for the lines' own width scaling with the factor, an error of order
            depth * spread). 0 (default) is a single Doppler factor.

        Returns
        -------
        ndarray, shape (..., n)
            ``(1 / (b - a)) * integral_a^b f_rest(lambda / (1 + z)) d lambda`` per pixel.
        """
        e = np.asarray(_nm(edges, "edges"), dtype=np.float64)
        if e.ndim < 1 or e.shape[-1] < 2:
            msg = f"flux_integrated: edges must have at least 2 values along the last axis, got {e.shape}"
            raise InvalidParameterError(msg)
        spread = float(spread)
        if not spread >= 0.0:
            msg = f"flux_integrated: spread must be >= 0, got {spread}"
            raise InvalidParameterError(msg)
        arrays = self._arrays if spread == 0.0 else self._broadened(spread)
        a = e[..., :-1] / (1.0 + float(z))
        b = e[..., 1:] / (1.0 + float(z))
        lo = np.ascontiguousarray(np.minimum(a, b).ravel())
        hi = np.ascontiguousarray(np.maximum(a, b).ravel())
        # the mean over [a, b]/(1+z) of f_rest equals the mean over [a, b] of the shifted spectrum
        return _kernels.star_mean(lo, hi, *arrays).reshape(a.shape)
