"""Spectral templates for the least-squares RV fit: any spectrum, spline-interpolated in ln(lambda).

A :class:`Template` is a set of segments (typically the orders of a spectrum), each with wavelengths,
flux and optional variance, plus the medium and frame of its wavelengths. Each segment is
interpolated by a cubic B-spline in ``u = ln(lambda)`` (``scipy.interpolate.make_interp_spline``),
which gives the analytic derivative ``dT/du`` the fit needs. The template is evaluated at the
data's own wavelengths; the data are never resampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import astropy.units as u
import numpy as np
from scipy.interpolate import PPoly, make_interp_spline

from ..errors import InvalidParameterError
from .masks import FRAMES, MEDIA, _choice

__all__ = ["Template"]


@dataclass(frozen=True, eq=False)
class Template:
    """A template spectrum in segments, with wavelength medium and frame.

    Parameters
    ----------
    wavelength : Quantity, shape (n_segment, n) or (n,)
        Wavelengths of every sample (any length unit; stored in nm). Increasing or decreasing.
    flux : array_like, same shape
        Template flux (any scale: the fit has a free multiplicative continuum).
    variance : array_like, same shape, optional
        Variance of ``flux`` (kept for template-noise estimates; not used by the fit).
    wavelength_medium : {"vacuum", "air"}
    wavelength_frame : {"barycentric", "topocentric"}
        "barycentric": the star as seen from the solar-system barycentre (or a rest-frame model).
        "topocentric" templates (an observed spectrum) need ``z_b``, their own barycentric redshift.
    z_b : float, optional
        Barycentric redshift of a topocentric template's observation.
    meta : dict, optional

    Notes
    -----
    Non-finite samples and samples with non-positive variance are left out of the spline.
    """

    wavelength: u.Quantity
    flux: np.ndarray
    variance: np.ndarray | None = None
    wavelength_medium: str = "vacuum"
    wavelength_frame: str = "barycentric"
    z_b: float | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.wavelength, u.Quantity) or not self.wavelength.unit.is_equivalent(u.nm):
            msg = "Template: wavelength must be a Quantity with a length unit"
            raise InvalidParameterError(msg)
        lam = np.atleast_2d(self.wavelength.to_value(u.nm)).astype(float)
        flux = np.atleast_2d(np.asarray(self.flux, dtype=float))
        if flux.shape != lam.shape or lam.ndim != 2 or lam.shape[1] < 8:
            msg = f"Template: flux {flux.shape} must match wavelength {lam.shape}, with >= 8 samples"
            raise InvalidParameterError(msg)
        var = None
        if self.variance is not None:
            var = np.atleast_2d(np.asarray(self.variance, dtype=float))
            if var.shape != lam.shape:
                msg = f"Template: variance {var.shape} must match wavelength {lam.shape}"
                raise InvalidParameterError(msg)
        _choice("wavelength_medium", self.wavelength_medium, MEDIA)
        _choice("wavelength_frame", self.wavelength_frame, FRAMES)
        if self.wavelength_frame == "topocentric" and self.z_b is None:
            msg = "Template: a topocentric template needs z_b (its barycentric redshift)"
            raise InvalidParameterError(msg)
        object.__setattr__(self, "wavelength", lam * u.nm)
        object.__setattr__(self, "flux", flux)
        object.__setattr__(self, "variance", var)
        object.__setattr__(self, "meta", dict(self.meta))

    @classmethod
    def from_spectrum(cls, spectrum, *, fiber=None, z_b=None) -> Template:
        """A template from one fiber of an :class:`~nres.spectrum.EchelleSpectrum`.

        The flux is ``data / blaze`` when the spectrum has a blaze, else ``data``; masked pixels are
        left out. ``z_b`` is required for a topocentric spectrum (its barycentric redshift).
        """
        from .measure import _pick_fiber

        fi = _pick_fiber(spectrum, fiber)
        if spectrum.wavelength is None:
            msg = "Template.from_spectrum: the spectrum has no wavelength solution"
            raise InvalidParameterError(msg)
        data = np.asarray(spectrum.data[fi], dtype=float)
        flux = data / spectrum.blaze[fi] if spectrum.blaze is not None else data.copy()
        var = None if spectrum.variance is None else np.asarray(spectrum.variance[fi], dtype=float)
        if var is not None and spectrum.blaze is not None:
            var = var / spectrum.blaze[fi] ** 2
        flux[np.asarray(spectrum.mask[fi], dtype=bool)] = np.nan
        return cls(
            spectrum.wavelength[fi],
            flux,
            var,
            spectrum.wavelength_medium,
            spectrum.wavelength_frame,
            z_b,
            {"orders": np.asarray(spectrum.orders).tolist()},
        )

    @classmethod
    def from_spectra(cls, spectra, **kwargs) -> Template:
        """A ZERO: the rest-frame co-add of observed spectra of one star (:func:`nres.rv.zero.build_zero`,
        which documents the keyword arguments: fiber, z_b, rv, orders, knot_step, iterations, clip,
        rv_mask, legacy, zero_date)."""
        from .zero import build_zero

        return build_zero(spectra, **kwargs)

    @property
    def n_segments(self) -> int:
        return self.flux.shape[0]

    def to_medium(self, medium, *, formula="edlen1966") -> Template:
        """The template with wavelengths in ``medium``; self if already."""
        _choice("medium", medium, MEDIA)
        if medium == self.wavelength_medium:
            return self
        from ..instrument import air_to_vacuum, vacuum_to_air

        convert = air_to_vacuum if medium == "vacuum" else vacuum_to_air
        meta = {**self.meta, "converted": f"{self.wavelength_medium}->{medium} ({formula})"}
        return Template(
            convert(self.wavelength, formula=formula),
            self.flux,
            self.variance,
            medium,
            self.wavelength_frame,
            self.z_b,
            meta,
        )

    def to_barycentric(self) -> Template:
        """A topocentric template moved to the barycentric frame: ``lambda (1 + z_b)``; self if already."""
        if self.wavelength_frame == "barycentric":
            return self
        meta = {**self.meta, "frame": f"topocentric->barycentric (z_b={self.z_b:.12e})"}
        return Template(
            self.wavelength * (1.0 + self.z_b),
            self.flux,
            self.variance,
            self.wavelength_medium,
            "barycentric",
            None,
            meta,
        )

    @cached_property
    def _splines(self):
        out = []
        for lam, flux, var in zip(
            self.wavelength.to_value(u.nm),
            self.flux,
            self.variance if self.variance is not None else [None] * self.n_segments,
            strict=True,
        ):
            good = np.isfinite(lam) & np.isfinite(flux) & (lam > 0)
            if var is not None:
                good &= np.isfinite(var) & (var > 0)
            uu = np.log(lam[good])
            order = np.argsort(uu)
            uu, ff = uu[order], flux[good][order]
            if uu.size < 8 or np.any(np.diff(uu) <= 0):
                msg = "Template: a segment has fewer than 8 valid samples or repeated wavelengths"
                raise InvalidParameterError(msg)
            out.append(make_interp_spline(uu, ff, k=3))
        return out

    @cached_property
    def _pieces(self):
        """All segments as packed piecewise cubics for the jitted model (``_kernels.template_model``):
        breakpoints (n_bp,), their offsets per segment (n_segment + 1,), coefficients (n_bp, 4) of
        ``(u - bp[k])^3, ^2, ^1, ^0`` on the interval from each breakpoint (last row of a segment 0),
        and the integral from the segment's start to each breakpoint (n_bp,)."""
        bps, coefs, cums = [], [], []
        for spl in self._splines:
            pp = PPoly.from_spline(spl)
            keep = np.diff(pp.x) > 0  # the repeated end knots give empty intervals
            bp = np.append(pp.x[:-1][keep], pp.x[-1])
            c = np.zeros((bp.size, 4))
            c[:-1] = pp.c[:, keep].T
            h = np.diff(bp)
            steps = (((0.25 * c[:-1, 0] * h + c[:-1, 1] / 3.0) * h + 0.5 * c[:-1, 2]) * h + c[:-1, 3]) * h
            bps.append(bp)
            coefs.append(c)
            cums.append(np.concatenate([[0.0], np.cumsum(steps)]))
        bstart = np.zeros(len(bps) + 1, dtype=np.int64)
        bstart[1:] = np.cumsum([b.size for b in bps])
        return (
            np.ascontiguousarray(np.concatenate(bps)),
            bstart,
            np.ascontiguousarray(np.concatenate(coefs)),
            np.ascontiguousarray(np.concatenate(cums)),
        )

    def ln_range(self, segment: int) -> tuple[float, float]:
        """Range of ln(lambda / nm) covered by a segment."""
        t = self._splines[segment].t
        return float(t[0]), float(t[-1])

    def segment_for(self, ln_lo: float, ln_hi: float) -> int:
        """The segment with the largest overlap with [ln_lo, ln_hi] (-1 if none overlaps)."""
        best, best_overlap = -1, 0.0
        for k in range(self.n_segments):
            a, b = self.ln_range(k)
            overlap = min(b, ln_hi) - max(a, ln_lo)
            if overlap > best_overlap:
                best, best_overlap = k, overlap
        return best

    def evaluate_ln(self, segment: int, ln_lambda, *, derivative: bool = False):
        """Template value (and d/d ln lambda) of a segment at ln(lambda / nm); NaN outside."""
        spl = self._splines[segment]
        x = np.asarray(ln_lambda, dtype=float)
        a, b = self.ln_range(segment)
        outside = (x < a) | (x > b)
        val = spl(x)
        val[outside] = np.nan
        if not derivative:
            return val
        der = spl(x, nu=1)
        der[outside] = np.nan
        return val, der

    def evaluate(self, wavelength, *, z=0.0, segment=None):
        """Template flux at observed wavelengths for a redshift z: ``T(lambda / (1 + z))``.

        Parameters
        ----------
        wavelength : Quantity, shape (n,)
        z : float
        segment : int, optional
            Segment to use; default the one that best covers ``wavelength``.
        """
        x = np.log(np.asarray(wavelength.to_value(u.nm), dtype=float)) - np.log1p(z)
        if segment is None:
            segment = self.segment_for(float(np.nanmin(x)), float(np.nanmax(x)))
            if segment < 0:
                msg = "Template.evaluate: no segment covers the requested wavelengths"
                raise InvalidParameterError(msg)
        return self.evaluate_ln(segment, x)

    def uniform(self, segment: int, step: float) -> tuple[float, np.ndarray]:
        """The segment sampled every ``step`` in ln(lambda): (u0, values)."""
        a, b = self.ln_range(segment)
        n = int(np.floor((b - a) / step)) + 1
        return a, np.ascontiguousarray(self._splines[segment](a + step * np.arange(n)))
