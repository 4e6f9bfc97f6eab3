"""Binary line masks for the cross-correlation RV (HARPS/ESPRESSO FITS tables, CERES/HARPS text).

A :class:`LineMask` holds rest-frame line wavelengths with weights and hole widths, the medium of
its wavelengths and its frame. Masks are laboratory (rest) wavelengths, so their frame is
"barycentric": a star at rest with respect to the solar-system barycentre shows its lines there.
Conversion to a spectrum's medium is explicit (:meth:`LineMask.to_medium`); :func:`nres.rv.measure`
calls it and records that it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from ..doppler import C_M_S
from ..errors import InvalidInputFileError, InvalidParameterError

__all__ = ["LineMask"]

MEDIA = ("vacuum", "air")
FRAMES = ("topocentric", "barycentric")


def _choice(name, value, choices):
    if value not in choices:
        msg = f"{name}: expected one of {choices}, got {value!r}"
        raise InvalidParameterError(msg)
    return value


@dataclass(frozen=True, eq=False)
class LineMask:
    """A binary CCF mask: line centres, weights and hole widths.

    Parameters
    ----------
    wavelength : Quantity, shape (n_line,)
        Line centres (any length unit; stored in nm, sorted).
    weight : array_like, shape (n_line,)
        Line weights (HARPS: contrast or depth); positive.
    width : Quantity, shape (n_line,), optional
        Hole widths in wavelength. ``None``: the hole width is chosen at measurement time as a
        velocity (``mask_width`` of :func:`nres.rv.measure`).
    wavelength_medium : {"vacuum", "air"}
    wavelength_frame : {"barycentric", "topocentric"}
        Rest-frame line lists are "barycentric" (default).
    meta : dict, optional
        Provenance (file name, format, conversions applied).
    """

    wavelength: u.Quantity
    weight: np.ndarray
    width: u.Quantity | None = None
    wavelength_medium: str = "vacuum"
    wavelength_frame: str = "barycentric"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.wavelength, u.Quantity) or not self.wavelength.unit.is_equivalent(u.nm):
            msg = "LineMask: wavelength must be a Quantity with a length unit"
            raise InvalidParameterError(msg)
        lam = np.atleast_1d(self.wavelength.to_value(u.nm)).astype(float)
        weight = np.atleast_1d(np.asarray(self.weight, dtype=float))
        if lam.ndim != 1 or weight.shape != lam.shape or lam.size == 0:
            msg = f"LineMask: wavelength, weight must be 1-D of one length; got {lam.shape}, {weight.shape}"
            raise InvalidParameterError(msg)
        if not (np.all(np.isfinite(lam)) and np.all(lam > 0) and np.all(np.isfinite(weight))):
            msg = "LineMask: wavelengths must be finite and positive and weights finite"
            raise InvalidParameterError(msg)
        order = np.argsort(lam, kind="stable")
        object.__setattr__(self, "wavelength", lam[order] * u.nm)
        object.__setattr__(self, "weight", weight[order])
        if self.width is not None:
            width = np.atleast_1d(self.width.to_value(u.nm)).astype(float)
            if width.shape != lam.shape or np.any(width <= 0):
                msg = "LineMask: width must have one positive value per line"
                raise InvalidParameterError(msg)
            object.__setattr__(self, "width", width[order] * u.nm)
        _choice("wavelength_medium", self.wavelength_medium, MEDIA)
        _choice("wavelength_frame", self.wavelength_frame, FRAMES)
        object.__setattr__(self, "meta", dict(self.meta))

    def __len__(self):
        return self.wavelength.size

    @classmethod
    def read(cls, path, *, wavelength_medium, wavelength_frame="barycentric") -> LineMask:
        """Read a HARPS/ESPRESSO FITS mask table or a CERES/HARPS-DRS text mask.

        Formats (chosen by content):

        - FITS binary table (ESPRESSO DRS ``MASK_TABLE``): columns ``lambda`` (Angstrom) and
          ``contrast`` (the weight); no hole widths.
        - Text (``.mas``, HARPS DRS 3.5 / CERES): three columns ``lambda_low lambda_high weight`` in
          Angstrom; the centre is the mean of the edges and the width their difference.

        Parameters
        ----------
        path : str or Path
        wavelength_medium : {"vacuum", "air"}
            The medium of the file's wavelengths (the files do not say: HARPS masks are in air).
        wavelength_frame : {"barycentric", "topocentric"}

        Returns
        -------
        LineMask

        Raises
        ------
        InvalidInputFileError
            Missing file, or neither format.
        """
        path = Path(path)
        _choice("wavelength_medium", wavelength_medium, MEDIA)
        if not path.is_file():
            raise InvalidInputFileError(path, "no such mask file")
        with open(path, "rb") as fh:
            is_fits = fh.read(6) == b"SIMPLE"
        if is_fits:
            return cls._read_fits(path, wavelength_medium, wavelength_frame)
        return cls._read_text(path, wavelength_medium, wavelength_frame)

    @classmethod
    def _read_fits(cls, path, medium, frame):
        with fits.open(path) as hdul:
            table = next((h.data for h in hdul if isinstance(h, fits.BinTableHDU)), None)
            if table is None:
                raise InvalidInputFileError(path, "no binary table HDU (expected a MASK_TABLE)")
            names = {n.lower(): n for n in table.columns.names}
            if "lambda" not in names or "contrast" not in names:
                raise InvalidInputFileError(
                    path, f"expected columns 'lambda' and 'contrast', got {list(names)}"
                )
            lam = np.asarray(table[names["lambda"]], dtype=float)
            weight = np.asarray(table[names["contrast"]], dtype=float)
        return cls(lam * u.AA, weight, None, medium, frame, {"source": str(path), "format": "fits"})

    @classmethod
    def _read_text(cls, path, medium, frame):
        try:
            arr = np.loadtxt(path, ndmin=2, comments="#")
        except ValueError as err:
            raise InvalidInputFileError(path, f"not a 3-column text mask ({err})") from None
        if arr.shape[1] != 3 or arr.shape[0] == 0:
            raise InvalidInputFileError(
                path, f"expected 3 columns lambda_low lambda_high weight, got {arr.shape}"
            )
        lo, hi, weight = arr.T
        if np.any(hi <= lo):
            raise InvalidInputFileError(path, "lambda_high must exceed lambda_low on every line")
        centre = 0.5 * (lo + hi)
        return cls(
            centre * u.AA, weight, (hi - lo) * u.AA, medium, frame, {"source": str(path), "format": "text"}
        )

    def to_medium(self, medium, *, formula="edlen1966") -> LineMask:
        """The mask with wavelengths (and widths, to first order) in ``medium``; self if already."""
        _choice("medium", medium, MEDIA)
        if medium == self.wavelength_medium:
            return self
        from ..instrument import air_to_vacuum, vacuum_to_air

        convert = air_to_vacuum if medium == "vacuum" else vacuum_to_air
        lam = convert(self.wavelength, formula=formula)
        width = None if self.width is None else self.width * (lam / self.wavelength)
        meta = {**self.meta, "converted": f"{self.wavelength_medium}->{medium} ({formula})"}
        return LineMask(lam, self.weight, width, medium, self.wavelength_frame, meta)

    def holes(self, default_width_m_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Hole edges (nm): the file's widths, or a box of the given velocity width."""
        lam = self.wavelength.to_value(u.nm)
        if self.width is not None:
            half = 0.5 * self.width.to_value(u.nm)
        else:
            half = 0.5 * lam * default_width_m_s / C_M_S
        return lam - half, lam + half
