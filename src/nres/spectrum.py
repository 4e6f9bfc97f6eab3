"""``EchelleSpectrum``: the extracted-spectrum container of nres (an astropy ``NDData``).

One object holds every fiber and order of an extraction: ``data`` of shape
``(n_fiber, n_order, n_pixel)`` in electrons, its ``VarianceUncertainty``, the boolean ``mask``
(True = bad) and the uint16 ``flags`` it is derived from, optionally the wavelength of every pixel
(a Quantity, nm) with its medium and frame, the full-detector column ``pixel`` of every pixel, and
optional ``blaze`` and ``continuum``. Orders and fibers are named by physical order ``m`` and fiber
id in :attr:`EchelleSpectrum.orders` / :attr:`EchelleSpectrum.fibers`; nothing assumes their count,
direction or contiguity. Indexing, :meth:`EchelleSpectrum.select`, the conversions and the FITS
round trip keep all of these together. See ``docs/spectrum.md`` for the FITS layout.
"""

from __future__ import annotations

import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import NDData, NDUncertainty, UnknownUncertainty, VarianceUncertainty

from .doppler import z_from_velocity
from .errors import InvalidInputFileError, InvalidParameterError, NRESWarning
from .flags import FLAG_DTYPE, Flag, flags_to_mask
from .provenance import record_provenance
from .window import window_origin

__all__ = ["EchelleSpectrum", "SpectrumRecord", "WAVELENGTH_MEDIA", "WAVELENGTH_FRAMES"]

#: Allowed values of ``wavelength_medium``.
WAVELENGTH_MEDIA = ("vacuum", "air")
#: Allowed values of ``wavelength_frame``.
WAVELENGTH_FRAMES = ("topocentric", "barycentric")

_FILE_TYPE = "ECHELLE_SPECTRUM"  # value of NRESTYPE in the primary header of files we write
_OWN_PRIMARY_KEYS = ("NRESTYPE", "NRESWMED", "NRESWFRM", "NRESPREC")
_STRUCTURAL_KEYS = ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME")
_PRECISIONS = {"float32": np.float32, "float64": np.float64}


# ----- validation helpers -------------------------------------------------------------------------
def _id_vector(name: str, value) -> np.ndarray:
    """Unique non-negative integer ids as an int64 vector (orders or fibers)."""
    arr = np.atleast_1d(np.asarray(value))
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        msg = f"EchelleSpectrum: {name} must be a non-empty 1-D integer array, got {arr.dtype} {arr.shape}"
        raise InvalidParameterError(msg)
    arr = arr.astype(np.int64)
    if np.any(arr < 0) or np.unique(arr).size != arr.size:
        msg = f"EchelleSpectrum: {name} must be unique non-negative integers, got {arr.tolist()}"
        raise InvalidParameterError(msg)
    return arr


def _float_plane(name: str, value, shape) -> np.ndarray:
    """A float64 copy of ``value`` checked to have exactly ``shape``."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        msg = f"EchelleSpectrum: {name} must be a real array of shape {shape} ({err})"
        raise InvalidParameterError(msg) from err
    if arr.shape != tuple(shape):
        want = f"{tuple(shape)} (n_fiber, n_order, n_pixel)"
        msg = f"EchelleSpectrum: {name} must have shape {want}, got {arr.shape}"
        raise InvalidParameterError(msg)
    return arr


def _choice(name: str, value, choices) -> str:
    if value not in choices:
        msg = f"EchelleSpectrum: {name} must be one of {choices}, got {value!r}"
        raise InvalidParameterError(msg)
    return str(value)


def _variance(uncertainty, unit, shape) -> VarianceUncertainty | None:
    """Any NDUncertainty as a float64 VarianceUncertainty in ``unit**2`` (None stays None)."""
    if uncertainty is None:
        return None
    if not isinstance(uncertainty, NDUncertainty) or isinstance(uncertainty, UnknownUncertainty):
        msg = (
            "EchelleSpectrum: uncertainty must be an astropy NDUncertainty with a known type "
            f"(e.g. VarianceUncertainty(var)), got {type(uncertainty).__name__}"
        )
        raise InvalidParameterError(msg)
    if not isinstance(uncertainty, VarianceUncertainty):
        uncertainty = uncertainty.represent_as(VarianceUncertainty)
    var = _float_plane("uncertainty", uncertainty.array, shape)
    if uncertainty.unit is not None:
        try:
            var = (var * uncertainty.unit).to_value(unit**2)
        except u.UnitConversionError as err:
            msg = f"EchelleSpectrum: uncertainty unit {uncertainty.unit} is not a variance of {unit}"
            raise InvalidParameterError(msg) from err
    if np.any(var < 0):
        msg = "EchelleSpectrum: uncertainty (variance) must be >= 0 where finite"
        raise InvalidParameterError(msg)
    return VarianceUncertainty(var, unit=unit**2, copy=False)


def _flag_plane(flags, shape) -> np.ndarray:
    if flags is None:
        return np.zeros(shape, dtype=FLAG_DTYPE)
    arr = np.asarray(flags)
    if arr.shape != tuple(shape) or arr.dtype.kind not in "iu":
        got = f"{arr.dtype} {arr.shape}"
        msg = f"EchelleSpectrum: flags must be an integer array of shape {tuple(shape)}, got {got}"
        raise InvalidParameterError(msg)
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(FLAG_DTYPE).max):
        msg = "EchelleSpectrum: flags must fit in uint16 (0..65535)"
        raise InvalidParameterError(msg)
    return arr.astype(FLAG_DTYPE)


def _as_nm(name: str, value) -> np.ndarray:
    if not isinstance(value, u.Quantity):
        got = type(value).__name__
        msg = f"EchelleSpectrum: {name} must be a Quantity with a length unit (e.g. nm), got {got}"
        raise InvalidParameterError(msg)
    try:
        return np.array(value.to_value(u.nm), dtype=np.float64)
    except u.UnitConversionError as err:
        msg = f"EchelleSpectrum: {name} must have a length unit, got {value.unit}"
        raise InvalidParameterError(msg) from err


@dataclass(frozen=True)
class SpectrumRecord:
    """Read-only views of one fiber (arrays ``(n_order, n_pixel)``) or one order (``(n_pixel,)``).

    Attributes
    ----------
    fiber : int
        Fiber id.
    order : int or ndarray of int
        Physical order m (from :meth:`EchelleSpectrum.order`) or the orders ``(n_order,)`` (from
        :meth:`EchelleSpectrum.fiber`).
    flux, mask, flags, pixel : ndarray
        Data (in :attr:`unit`), bad-pixel mask, flag bits, full-detector x.
    variance, blaze, continuum : ndarray or None
    wavelength : Quantity (nm) or None
    unit : astropy unit of ``flux``
    """

    fiber: int
    order: int | np.ndarray
    flux: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray
    flags: np.ndarray
    wavelength: u.Quantity | None
    pixel: np.ndarray
    blaze: np.ndarray | None
    continuum: np.ndarray | None
    unit: u.UnitBase


def _readonly(arr):
    if arr is None:
        return None
    view = arr.view()
    view.flags.writeable = False
    return view


# ----- the container ------------------------------------------------------------------------------
class EchelleSpectrum(NDData):
    """Extracted echelle spectrum: every fiber and order of one frame, with its calibrations.

    Parameters
    ----------
    data : array_like or Quantity, shape (n_fiber, n_order, n_pixel)
        Extracted counts, electrons unless a Quantity with another unit is given. Stored as float64.
        A single-fiber ``(n_order, n_pixel)`` array is refused: pass ``data[np.newaxis]`` and
        ``fibers=[id]``.
    uncertainty : NDUncertainty, optional
        Any astropy uncertainty type; converted to :class:`~astropy.nddata.VarianceUncertainty` in
        ``unit**2`` (a unit-less one is taken to be in ``unit**2`` already). ``None`` stays ``None``:
        steps that need a variance then raise, they never invent one.
    mask : array_like of bool, optional
        True = bad. OR-ed with the mask derived from ``flags`` (and with non-finite pixels).
    flags : array_like of int, optional
        uint16 bits of :class:`nres.flags.Flag`. Non-finite data or variance add ``NONFINITE``,
        non-finite wavelengths ``BAD_WAVELENGTH``. The stored mask is
        ``mask | flags_to_mask(flags)``.
    wavelength : Quantity, shape (n_fiber, n_order, n_pixel), optional
        Wavelength of every pixel, any length unit (stored in nm, float64).
    wavelength_medium : {"vacuum", "air"}
    wavelength_frame : {"topocentric", "barycentric"}
    orders : array_like of int, shape (n_order,)
        Physical diffraction order m of each order row (unique; any count, direction, gaps).
    fibers : array_like of int, shape (n_fiber,)
        Fiber id of each fiber row (unique).
    pixel : array_like, shape (n_pixel,) or (n_fiber, n_order, n_pixel), optional
        Full-detector x of each column; default ``arange(n_pixel) + x0`` with the window origin x0
        read from ``meta`` by :func:`nres.window.window_origin`.
    blaze : array_like, shape (n_fiber, n_order, n_pixel), optional
        Relative blaze (dimensionless); :meth:`normalized` divides by it keeping the unit.
    continuum : array_like or Quantity, shape (n_fiber, n_order, n_pixel), optional
        Continuum model in the unit of ``data``; :meth:`normalized` divides by it (dimensionless).
    meta : dict or astropy.io.fits.Header, optional
        Header-like metadata (copied), including provenance cards.

    Raises
    ------
    InvalidParameterError
        Naming the parameter and the expected shape or value.

    Notes
    -----
    Every input array is copied, so the caller's arrays are never aliased or changed. In-place edits
    of the attributes bypass validation (keep ``mask`` and ``flags`` consistent yourself); methods
    return new spectra.
    """

    def __init__(
        self,
        data,
        *,
        uncertainty=None,
        mask=None,
        flags=None,
        wavelength=None,
        wavelength_medium="vacuum",
        wavelength_frame="topocentric",
        orders,
        fibers,
        pixel=None,
        blaze=None,
        continuum=None,
        meta=None,
    ):
        unit = u.electron
        if isinstance(data, u.Quantity):
            unit, data = data.unit, data.value
        if isinstance(data, NDData):
            msg = "EchelleSpectrum: data must be an array or Quantity, not an NDData (pass its .data)"
            raise InvalidParameterError(msg)
        try:
            data = np.array(data, dtype=np.float64)
        except (TypeError, ValueError) as err:
            msg = f"EchelleSpectrum: data must be a real array ({err})"
            raise InvalidParameterError(msg) from err
        if data.ndim != 3:
            hint = " (for one fiber pass data[np.newaxis] and fibers=[id])" if data.ndim == 2 else ""
            msg = f"EchelleSpectrum: data must have shape (n_fiber, n_order, n_pixel), got {data.shape}{hint}"
            raise InvalidParameterError(msg)
        shape = data.shape
        fibers = _id_vector("fibers", fibers)
        orders = _id_vector("orders", orders)
        if shape[:2] != (fibers.size, orders.size) or shape[2] == 0:
            msg = (
                f"EchelleSpectrum: data shape {shape} does not match (n_fiber={fibers.size}, "
                f"n_order={orders.size}, n_pixel>0) from fibers and orders"
            )
            raise InvalidParameterError(msg)

        variance = _variance(uncertainty, unit, shape)
        flag_plane = _flag_plane(flags, shape)
        nonfinite = ~np.isfinite(data)
        if variance is not None:
            nonfinite |= ~np.isfinite(variance.array)
        flag_plane[nonfinite] |= FLAG_DTYPE(Flag.NONFINITE)

        if wavelength is not None:
            wavelength = _float_plane("wavelength", _as_nm("wavelength", wavelength), shape)
            flag_plane[~np.isfinite(wavelength)] |= FLAG_DTYPE(Flag.BAD_WAVELENGTH)
        if mask is None:
            mask_plane = np.zeros(shape, dtype=bool)
        else:
            mask_plane = np.asarray(mask)
            if mask_plane.shape != shape or mask_plane.dtype.kind not in "bui":
                got = f"{mask_plane.dtype} {mask_plane.shape}"
                msg = f"EchelleSpectrum: mask must be a boolean array of shape {shape}, got {got}"
                raise InvalidParameterError(msg)
            mask_plane = mask_plane.astype(bool)
        mask_plane = mask_plane | flags_to_mask(flag_plane)

        meta = {} if meta is None else meta.copy()
        if pixel is None:
            pixel = np.arange(shape[2], dtype=np.float64) + window_origin(meta)[1]
        else:
            pixel = np.array(pixel, dtype=np.float64)
            if pixel.shape not in ((shape[2],), shape):
                msg = f"EchelleSpectrum: pixel must have shape ({shape[2]},) or {shape}, got {pixel.shape}"
                raise InvalidParameterError(msg)
            if not np.all(np.isfinite(pixel)):
                msg = "EchelleSpectrum: pixel (full-detector x of each column) must be finite"
                raise InvalidParameterError(msg)
        if blaze is not None:
            if isinstance(blaze, u.Quantity):
                blaze = blaze.to_value(u.dimensionless_unscaled)
            blaze = _float_plane("blaze", blaze, shape)
        if continuum is not None:
            if isinstance(continuum, u.Quantity):
                try:
                    continuum = continuum.to_value(unit)
                except u.UnitConversionError as err:
                    msg = f"EchelleSpectrum: continuum unit {continuum.unit} is not the data unit {unit}"
                    raise InvalidParameterError(msg) from err
            continuum = _float_plane("continuum", continuum, shape)

        super().__init__(data, uncertainty=variance, mask=mask_plane, meta=meta, unit=unit, copy=False)
        self._flags = flag_plane
        self._wavelength = wavelength
        self._medium = _choice("wavelength_medium", wavelength_medium, WAVELENGTH_MEDIA)
        self._frame = _choice("wavelength_frame", wavelength_frame, WAVELENGTH_FRAMES)
        self._orders = orders
        self._fibers = fibers
        self._pixel = pixel
        self._blaze = blaze
        self._continuum = continuum

    # ----- attributes ---------------------------------------------------------------------------
    @property
    def flags(self) -> np.ndarray:
        """uint16 flag bits, shape (n_fiber, n_order, n_pixel) (:class:`nres.flags.Flag`)."""
        return self._flags

    @property
    def variance(self) -> np.ndarray | None:
        """The variance array (``unit**2``) or None."""
        return None if self.uncertainty is None else self.uncertainty.array

    @property
    def wavelength(self) -> u.Quantity | None:
        """Wavelength of every pixel (Quantity in nm, float64) or None."""
        return None if self._wavelength is None else u.Quantity(self._wavelength, u.nm, copy=False)

    @property
    def wavelength_medium(self) -> str:
        """``"vacuum"`` or ``"air"``."""
        return self._medium

    @property
    def wavelength_frame(self) -> str:
        """``"topocentric"`` or ``"barycentric"``."""
        return self._frame

    @property
    def orders(self) -> np.ndarray:
        """Physical order m of each order row, int64 (n_order,)."""
        return self._orders

    @property
    def fibers(self) -> np.ndarray:
        """Fiber id of each fiber row, int64 (n_fiber,)."""
        return self._fibers

    @property
    def pixel(self) -> np.ndarray:
        """Full-detector x of each column, float64, shape (n_pixel,) or (n_fiber, n_order, n_pixel)."""
        return self._pixel

    @property
    def blaze(self) -> np.ndarray | None:
        """Relative blaze (dimensionless), or None."""
        return self._blaze

    @property
    def continuum(self) -> np.ndarray | None:
        """Continuum model in :attr:`unit`, or None."""
        return self._continuum

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_fiber, n_order, n_pixel)."""
        return self.data.shape

    def _fields(self) -> dict:
        """Constructor arguments that rebuild this spectrum (arrays are copied by the constructor)."""
        return dict(
            data=u.Quantity(self.data, self.unit, copy=False),
            uncertainty=self.uncertainty,
            mask=self.mask,
            flags=self._flags,
            wavelength=self.wavelength,
            wavelength_medium=self._medium,
            wavelength_frame=self._frame,
            orders=self._orders,
            fibers=self._fibers,
            pixel=self._pixel,
            blaze=self._blaze,
            continuum=self._continuum,
            meta=self.meta,
        )

    def _replace(self, **changes) -> EchelleSpectrum:
        fields = self._fields()
        fields.update(changes)
        data = fields.pop("data")
        return type(self)(data, **fields)

    def copy(self) -> EchelleSpectrum:
        """A deep copy."""
        return self._replace()

    # ----- slicing ------------------------------------------------------------------------------
    def _axis_indices(self, item) -> list[np.ndarray]:
        items = item if isinstance(item, tuple) else (item,)
        ellipses = [k for k, it in enumerate(items) if it is Ellipsis]
        if len(ellipses) > 1:
            msg = "EchelleSpectrum index: at most one Ellipsis"
            raise IndexError(msg)
        if ellipses:
            at = ellipses[0]
            items = items[:at] + (slice(None),) * max(0, 4 - len(items)) + items[at + 1 :]
        if len(items) > 3:
            msg = f"EchelleSpectrum index: at most 3 indices (fiber, order, pixel), got {len(items)}"
            raise IndexError(msg)
        items = items + (slice(None),) * (3 - len(items))
        out = []
        for axis, (it, n) in enumerate(zip(items, self.shape, strict=True)):
            if it is None:
                msg = "EchelleSpectrum index: np.newaxis is not supported (the spectrum stays 3-D)"
                raise IndexError(msg)
            idx = np.atleast_1d(np.arange(n)[it])
            if idx.size == 0:
                name = ("fiber", "order", "pixel")[axis]
                msg = f"EchelleSpectrum index: empty selection on the {name} axis ({it!r})"
                raise IndexError(msg)
            out.append(idx)
        return out

    def __getitem__(self, item) -> EchelleSpectrum:
        """Sub-spectrum by position ``spec[fiber_index, order_index, pixel_index]``.

        Each index is an int, slice, integer array or boolean array along its axis (orthogonal,
        like ``np.ix_``); an integer keeps a length-1 axis, so the result is always 3-D and carries
        the matching orders, fibers, pixel, wavelength, blaze, continuum, flags, mask and variance.
        Use :meth:`select` to select by order/fiber id instead of position.
        """
        fi, oi, pi = self._axis_indices(item)
        return self._take(fi, oi, pi)

    def _take(self, fi, oi, pi) -> EchelleSpectrum:
        sub = np.ix_(fi, oi, pi)

        def cut(arr):
            return None if arr is None else arr[sub]

        unc = (
            None
            if self.uncertainty is None
            else VarianceUncertainty(self.uncertainty.array[sub], unit=self.uncertainty.unit)
        )
        pixel = self._pixel[pi] if self._pixel.ndim == 1 else self._pixel[sub]
        wl = None if self._wavelength is None else u.Quantity(self._wavelength[sub], u.nm)
        return self._replace(
            data=u.Quantity(self.data[sub], self.unit),
            uncertainty=unc,
            mask=self.mask[sub],
            flags=self._flags[sub],
            wavelength=wl,
            orders=self._orders[oi],
            fibers=self._fibers[fi],
            pixel=pixel,
            blaze=cut(self._blaze),
            continuum=cut(self._continuum),
        )

    def _positions(self, name: str, ids, have: np.ndarray) -> np.ndarray:
        want = np.atleast_1d(np.asarray(ids))
        if want.dtype.kind not in "iu" or want.ndim != 1:
            msg = f"EchelleSpectrum.select: {name} must be integer ids, got {ids!r}"
            raise InvalidParameterError(msg)
        missing = sorted(set(want.tolist()) - set(have.tolist()))
        if missing:
            msg = f"EchelleSpectrum.select: {name} {missing} not in this spectrum (has {have.tolist()})"
            raise KeyError(msg)
        return np.flatnonzero(np.isin(have, want))

    def select(self, *, fibers=None, orders=None) -> EchelleSpectrum:
        """Sub-spectrum by fiber ids and/or physical orders (kept in this spectrum's row order).

        Parameters
        ----------
        fibers, orders : int or array_like of int, optional
            Ids to keep; None keeps all. A scalar keeps a length-1 axis.

        Raises
        ------
        KeyError
            If an id is not in the spectrum (the message lists what it has).
        """
        fi = np.arange(self.shape[0]) if fibers is None else self._positions("fibers", fibers, self._fibers)
        oi = np.arange(self.shape[1]) if orders is None else self._positions("orders", orders, self._orders)
        return self._take(fi, oi, np.arange(self.shape[2]))

    def index(self, fiber: int, order: int | None = None):
        """Row position of ``fiber`` (and of ``order``): ``i`` or ``(i, j)``; KeyError if absent."""
        hit = np.flatnonzero(self._fibers == fiber)
        if hit.size == 0:
            msg = f"fiber {fiber} not in this spectrum (has {self._fibers.tolist()})"
            raise KeyError(msg)
        if order is None:
            return int(hit[0])
        hit_o = np.flatnonzero(self._orders == order)
        if hit_o.size == 0:
            msg = f"order {order} not in this spectrum (has {self._orders.tolist()})"
            raise KeyError(msg)
        return int(hit[0]), int(hit_o[0])

    def _record(self, i, j) -> SpectrumRecord:
        key = (i,) if j is None else (i, j)

        def view(arr):
            return None if arr is None else _readonly(arr[key])

        pixel = self._pixel if self._pixel.ndim == 1 else self._pixel[key]
        wl = view(self._wavelength)
        return SpectrumRecord(
            fiber=int(self._fibers[i]),
            order=_readonly(self._orders) if j is None else int(self._orders[j]),
            flux=view(self.data),
            variance=view(self.variance),
            mask=view(self.mask),
            flags=view(self._flags),
            wavelength=None if wl is None else u.Quantity(wl, u.nm, copy=False),
            pixel=_readonly(pixel),
            blaze=view(self._blaze),
            continuum=view(self._continuum),
            unit=self.unit,
        )

    def fiber(self, fiber: int) -> SpectrumRecord:
        """Read-only views of one fiber: arrays of shape (n_order, n_pixel), ``order`` = :attr:`orders`."""
        return self._record(self.index(fiber), None)

    def order(self, fiber: int, order: int) -> SpectrumRecord:
        """Read-only views of one (fiber, physical order m): arrays of shape (n_pixel,)."""
        return self._record(*self.index(fiber, order))

    # ----- wavelengths ------------------------------------------------------------------------
    def with_wavelength(self, wavelength, *, medium, frame) -> EchelleSpectrum:
        """A copy with a new wavelength array (or None to remove it).

        Parameters
        ----------
        wavelength : Quantity, shape (n_fiber, n_order, n_pixel), or None
            Any length unit; stored in nm.
        medium : {"vacuum", "air"}
            Medium of ``wavelength`` (required: labels are never guessed).
        frame : {"topocentric", "barycentric"}
            Frame of ``wavelength``.
        """
        return self._replace(wavelength=wavelength, wavelength_medium=medium, wavelength_frame=frame)

    def _need_wavelength(self, what: str):
        if self._wavelength is None:
            msg = f"EchelleSpectrum.{what}: the spectrum has no wavelength (set one with with_wavelength)"
            raise InvalidParameterError(msg)

    def to_medium(self, medium, *, formula=None) -> EchelleSpectrum:
        """The spectrum with wavelengths converted to ``medium`` ("air" or "vacuum").

        Uses :func:`nres.instrument.airvac.vacuum_to_air` / ``air_to_vacuum``; ``formula`` is passed
        to them when given (else their default). Converting to the current medium returns a copy.
        """
        medium = _choice("medium", medium, WAVELENGTH_MEDIA)
        self._need_wavelength("to_medium")
        if medium == self._medium:
            return self.copy()
        from .instrument import airvac  # lazy: the instrument package is heavier than this module

        convert = airvac.vacuum_to_air if medium == "air" else airvac.air_to_vacuum
        options = {} if formula is None else {"formula": formula}
        wavelength = convert(self.wavelength, **options)
        meta = self.meta.copy()
        record_provenance(
            meta,
            "nres.EchelleSpectrum.to_medium",
            medium=medium,
            formula="default" if formula is None else formula,
        )
        return self._replace(wavelength=wavelength, wavelength_medium=medium, meta=meta)

    def to_frame(self, frame, *, z_b=None, v_corr=None) -> EchelleSpectrum:
        """The spectrum with wavelengths moved to ``frame`` ("barycentric" or "topocentric").

        With the Doppler rule of :mod:`nres.doppler` (``1 + z_obs = (1 + z_star) / (1 + z_B)``) a
        feature seen at the telescope at ``lambda_topo`` has, at the solar-system barycentre,
        ``lambda_bary = lambda_topo * (1 + z_B)``; the reverse divides by ``(1 + z_B)``.

        Parameters
        ----------
        frame : {"barycentric", "topocentric"}
        z_b : float or array_like (n_fiber,), optional
            Barycentric correction as a redshift ``z_B = v_corr / c``, one per fiber if the fibers
            saw different targets.
        v_corr : Quantity (velocity), scalar or (n_fiber,), optional
            The barycentric correction velocity instead of ``z_b`` (exactly one must be given).

        Converting to the current frame returns an unchanged copy.
        """
        frame = _choice("frame", frame, WAVELENGTH_FRAMES)
        self._need_wavelength("to_frame")
        if (z_b is None) == (v_corr is None):
            msg = "EchelleSpectrum.to_frame: give exactly one of z_b (redshift) or v_corr (velocity Quantity)"
            raise InvalidParameterError(msg)
        if v_corr is not None:
            if not isinstance(v_corr, u.Quantity) or not v_corr.unit.is_equivalent(u.m / u.s):
                msg = f"EchelleSpectrum.to_frame: v_corr must be a velocity Quantity, got {v_corr!r}"
                raise InvalidParameterError(msg)
            z_b = z_from_velocity(v_corr)
        z = np.asarray(z_b, dtype=np.float64)
        if z.shape not in ((), (self.shape[0],)) or not np.all(np.isfinite(z)) or np.any(z <= -1):
            want = f"a finite scalar or ({self.shape[0]},) array > -1"
            msg = f"EchelleSpectrum.to_frame: z_b must be {want}, got {z_b!r}"
            raise InvalidParameterError(msg)
        if frame == self._frame:
            return self.copy()
        factor = (1.0 + z).reshape(-1, 1, 1)
        wl = self._wavelength * factor if frame == "barycentric" else self._wavelength / factor
        meta = self.meta.copy()
        opts = (
            {"z_b": float(z)}
            if z.ndim == 0
            else {f"z_b{k}": float(v) for k, v in zip(self._fibers, z, strict=True)}
        )
        record_provenance(meta, "nres.EchelleSpectrum.to_frame", frame=frame, **opts)
        return self._replace(wavelength=u.Quantity(wl, u.nm), wavelength_frame=frame, meta=meta)

    # ----- normalisation ----------------------------------------------------------------------
    def normalized(self, *, by=None) -> EchelleSpectrum:
        """The spectrum divided by its blaze or continuum, with the variance propagated.

        Parameters
        ----------
        by : {"continuum", "blaze"}, optional
            Divisor; default the continuum if the spectrum has one, else the blaze.

        Returns
        -------
        EchelleSpectrum
            ``data / d`` and variance ``var / d**2`` (the divisor ``d`` is taken as noise-free).
            Pixels where ``d`` is not finite or ``d <= 0`` become NaN and are flagged ``NO_WEIGHT``
            (and ``NONFINITE``). By the continuum the unit becomes dimensionless and both blaze
            and continuum are dropped; by the blaze the unit is kept, the blaze is dropped and a
            continuum is divided by it too, so it still describes the data.
        """
        if by is None:
            by = "continuum" if self._continuum is not None else "blaze"
        by = _choice("by", by, ("continuum", "blaze"))
        divisor = self._continuum if by == "continuum" else self._blaze
        if divisor is None:
            msg = f"EchelleSpectrum.normalized: by={by!r} but the spectrum has no {by}"
            raise InvalidParameterError(msg)
        good = np.isfinite(divisor) & (divisor > 0)
        safe = np.where(good, divisor, 1.0)
        data = np.where(good, self.data / safe, np.nan)
        unc = None
        if self.uncertainty is not None:
            unc = VarianceUncertainty(np.where(good, self.uncertainty.array / safe**2, np.nan))
        flags = self._flags.copy()
        flags[~good] |= FLAG_DTYPE(Flag.NO_WEIGHT)
        meta = self.meta.copy()
        record_provenance(meta, "nres.EchelleSpectrum.normalized", by=by)
        if by == "continuum":
            unit, blaze, continuum = u.dimensionless_unscaled, None, None
        else:
            unit, blaze = self.unit, None
            continuum = None if self._continuum is None else np.where(good, self._continuum / safe, np.nan)
        if unc is not None:
            unc = VarianceUncertainty(unc.array, unit=unit**2)
        return self._replace(
            data=u.Quantity(data, unit),
            uncertainty=unc,
            flags=flags,
            blaze=blaze,
            continuum=continuum,
            meta=meta,
        )

    # ----- FITS -------------------------------------------------------------------------------
    def _primary_header(self, precision: str) -> fits.Header:
        if isinstance(self.meta, fits.Header):
            hdr = self.meta.copy(strip=True)
        else:
            hdr = fits.Header()
            dropped = []
            for key, value in self.meta.items():
                if isinstance(value, np.generic):
                    value = value.item()
                if not isinstance(value, str | int | float | bool) and value is not None:
                    dropped.append(key)
                    continue
                key = str(key)
                if len(key) > 8 and not key.upper().startswith("HIERARCH "):
                    key = f"HIERARCH {key}"
                hdr[key] = value
            if dropped:
                warnings.warn(
                    f"EchelleSpectrum.write: meta keys with non-scalar values not written: {dropped}",
                    NRESWarning,
                    stacklevel=3,
                )
        for key in _OWN_PRIMARY_KEYS:
            hdr.remove(key, ignore_missing=True, remove_all=True)
        hdr["NRESTYPE"] = (_FILE_TYPE, "nres EchelleSpectrum file")
        hdr["NRESWMED"] = (self._medium, "wavelength medium: vacuum or air")
        hdr["NRESWFRM"] = (self._frame, "wavelength frame: topocentric or barycentric")
        hdr["NRESPREC"] = (precision, "dtype of SPECTRUM/VARIANCE/BLAZE/CONTINUUM")
        return hdr

    def to_hdulist(self, *, precision="float32") -> fits.HDUList:
        """The FITS representation (see ``docs/spectrum.md`` for the layout).

        Parameters
        ----------
        precision : {"float32", "float64"}
            On-disk dtype of SPECTRUM, VARIANCE, BLAZE and CONTINUUM (float32, the convention for
            processed products, keeps ~7 significant digits). WAVELENGTH and PIXEL are always float64.
        """
        precision = _choice("precision", precision, tuple(_PRECISIONS))
        dtype = _PRECISIONS[precision]

        def image(name, arr, dt, unit=None):
            hdu = fits.ImageHDU(np.ascontiguousarray(arr, dtype=dt), name=name)
            if unit is not None:
                hdu.header["BUNIT"] = unit.to_string()
            return hdu

        hdus = [
            fits.PrimaryHDU(header=self._primary_header(precision)),
            image("SPECTRUM", self.data, dtype, self.unit),
        ]
        if self.uncertainty is not None:
            hdus.append(image("VARIANCE", self.uncertainty.array, dtype, self.unit**2))
        hdus.append(image("FLAGS", self._flags, FLAG_DTYPE))
        hdus.append(image("MASK", self.mask, np.uint8))
        if self._wavelength is not None:
            wl = image("WAVELENGTH", self._wavelength, np.float64, u.nm)
            wl.header["WAVEMED"] = self._medium
            wl.header["WAVEFRM"] = self._frame
            hdus.append(wl)
        hdus.append(image("PIXEL", self._pixel, np.float64))
        if self._blaze is not None:
            hdus.append(image("BLAZE", self._blaze, dtype))
        if self._continuum is not None:
            hdus.append(image("CONTINUUM", self._continuum, dtype, self.unit))
        hdus.append(
            fits.BinTableHDU.from_columns([fits.Column("FIBER", "K", array=self._fibers)], name="FIBERS")
        )
        hdus.append(
            fits.BinTableHDU.from_columns([fits.Column("ORDER", "K", array=self._orders)], name="ORDERS")
        )
        return fits.HDUList(hdus)

    def write(self, path, *, overwrite=False, precision="float32") -> None:
        """Write to a multi-extension FITS file, atomically (temp file in the same directory + rename).

        Parameters
        ----------
        path : str or os.PathLike
            Output file (a ``.gz`` suffix gzips it).
        overwrite : bool
            Replace an existing file; otherwise an existing ``path`` raises InvalidInputFileError.
        precision : {"float32", "float64"}
            See :meth:`to_hdulist`.
        """
        path = Path(path)
        hdul = self.to_hdulist(precision=precision)
        if path.exists() and not overwrite:
            raise InvalidInputFileError(path, "already exists (pass overwrite=True to replace it)")
        if not path.parent.is_dir():
            raise InvalidInputFileError(path, "the output directory does not exist")
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")  # keeps the suffix (.gz)
        try:
            hdul.writeto(tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def read(cls, path) -> EchelleSpectrum:
        """Read a file written by :meth:`write`.

        Raises
        ------
        InvalidInputFileError
            If the file does not exist, is not FITS, or lacks or has inconsistent extensions/keywords
            (the message names the file and what is wrong).
        """
        path = Path(path)
        if not path.exists():
            raise InvalidInputFileError(path, "file does not exist")
        # astropy only *warns* about a truncated file (and may still return data): make it an error
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with fits.open(path, memmap=False) as hdul:
                    parts = {
                        hdu.name: (hdu.header.copy(), None if hdu.data is None else np.array(hdu.data))
                        for hdu in hdul
                    }
                    primary = hdul[0].header.copy()
            except (OSError, ValueError, TypeError) as err:
                raise InvalidInputFileError(path, f"not a readable FITS file ({err})") from err
        for w in caught:
            if "truncated" in str(w.message):
                raise InvalidInputFileError(path, f"truncated or corrupt file ({w.message})")
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return cls._from_parts(path, primary, parts)

    @classmethod
    def _from_parts(cls, path, primary, parts) -> EchelleSpectrum:
        if primary.get("NRESTYPE") != _FILE_TYPE:
            raise InvalidInputFileError(
                path, f"not an nres EchelleSpectrum file (primary NRESTYPE != {_FILE_TYPE!r})"
            )
        for name in ("SPECTRUM", "FLAGS", "PIXEL", "FIBERS", "ORDERS"):
            if name not in parts or parts[name][1] is None:
                raise InvalidInputFileError(path, f"missing or empty {name} extension")
        for key in ("NRESWMED", "NRESWFRM"):
            if key not in primary:
                raise InvalidInputFileError(path, f"primary header lacks keyword {key}")

        def plane(name):
            return None if name not in parts or parts[name][1] is None else parts[name][1]

        def unit_of(name):
            try:
                return u.Unit(parts[name][0].get("BUNIT", ""))
            except ValueError as err:
                raise InvalidInputFileError(path, f"{name} has an unparseable BUNIT ({err})") from err

        unit = unit_of("SPECTRUM")
        var = plane("VARIANCE")
        wl = plane("WAVELENGTH")
        mask = plane("MASK")
        meta = primary.copy(strip=True)
        for key in _OWN_PRIMARY_KEYS:
            meta.remove(key, ignore_missing=True, remove_all=True)
        try:
            return cls(
                u.Quantity(plane("SPECTRUM"), unit),
                uncertainty=None if var is None else VarianceUncertainty(var, unit=unit_of("VARIANCE")),
                mask=None if mask is None else mask.astype(bool),
                flags=plane("FLAGS"),
                wavelength=None if wl is None else u.Quantity(wl, unit_of("WAVELENGTH")),
                wavelength_medium=primary["NRESWMED"],
                wavelength_frame=primary["NRESWFRM"],
                orders=np.asarray(parts["ORDERS"][1]["ORDER"]),
                fibers=np.asarray(parts["FIBERS"][1]["FIBER"]),
                pixel=plane("PIXEL"),
                blaze=plane("BLAZE"),
                continuum=None
                if plane("CONTINUUM") is None
                else u.Quantity(plane("CONTINUUM"), unit_of("CONTINUUM")),
                meta=meta,
            )
        except (InvalidParameterError, KeyError) as err:
            raise InvalidInputFileError(path, f"inconsistent contents: {err}") from err

    # ----- specutils ----------------------------------------------------------------------------
    def _specutils_parts(self, key, what):
        if self._wavelength is None:
            msg = f"EchelleSpectrum.{what}: the spectrum has no wavelength (set one with with_wavelength)"
            raise InvalidParameterError(msg)
        unc = None
        if self.uncertainty is not None:
            unc = VarianceUncertainty(self.uncertainty.array[key].copy(), unit=self.unit**2)
        return dict(
            flux=u.Quantity(self.data[key].copy(), self.unit),
            spectral_axis=u.Quantity(self._wavelength[key].copy(), u.nm),
            uncertainty=unc,
            mask=self.mask[key].copy(),
        )

    def _specutils_meta(self, fiber, **extra):
        meta = {
            "fiber": int(fiber),
            "wavelength_medium": self._medium,
            "wavelength_frame": self._frame,
            "header": self.meta.copy(),
        }
        meta.update(extra)
        return meta

    def to_spectrum_collection(self, fiber: int):
        """One fiber as a :class:`specutils.SpectrumCollection` (specutils >= 2).

        flux (n_order, n_pixel) in :attr:`unit`, spectral_axis = wavelength (nm), uncertainty
        :class:`VarianceUncertainty`, mask; ``meta`` holds ``fiber``, ``orders``, ``pixel``,
        ``wavelength_medium``, ``wavelength_frame`` and ``header``. Raises InvalidParameterError if
        the spectrum has no wavelength, KeyError if the fiber is absent.
        """
        from specutils import SpectrumCollection  # lazy: specutils is slow to import

        i = self.index(fiber)
        pixel = self._pixel.copy() if self._pixel.ndim == 1 else self._pixel[i].copy()
        return SpectrumCollection(
            **self._specutils_parts(i, "to_spectrum_collection"),
            meta=self._specutils_meta(fiber, orders=self._orders.copy(), pixel=pixel),
        )

    def to_spectrum(self, fiber: int, order: int):
        """One (fiber, physical order m) as a :class:`specutils.Spectrum` (Spectrum1D in specutils 1).

        Raises InvalidParameterError if there is no wavelength or it is not strictly monotonic and
        finite (specutils' requirement), KeyError if the fiber or order is absent.
        """
        from specutils import Spectrum

        i, j = self.index(fiber, order)
        pixel = self._pixel.copy() if self._pixel.ndim == 1 else self._pixel[i, j].copy()
        parts = self._specutils_parts((i, j), "to_spectrum")
        step = np.diff(parts["spectral_axis"].value)
        if not (np.all(step > 0) or np.all(step < 0)):
            msg = (
                f"EchelleSpectrum.to_spectrum: wavelength of fiber {fiber} order {order} must be finite "
                "and strictly monotonic for specutils"
            )
            raise InvalidParameterError(msg)
        return Spectrum(**parts, meta=self._specutils_meta(fiber, order=int(order), pixel=pixel))

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        wl = "no wavelength" if self._wavelength is None else f"{self._medium}/{self._frame} wavelength"
        return (
            f"<EchelleSpectrum: fibers {self._fibers.tolist()}, {self.shape[1]} orders "
            f"{self._orders[0]}..{self._orders[-1]}, {self.shape[2]} px, unit {self.unit}, {wl}>"
        )
