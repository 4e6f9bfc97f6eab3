"""Pixel masks for RV work, with their reasons as flag bits (:class:`nres.flags.Flag`).

:func:`rv_mask` flags, for one fiber of an extracted spectrum:

- TELLURIC: inside a telluric band of the packaged table (:func:`telluric_bands`), widened by the
  range of barycentric velocities a template may have been observed at (a band fixed on the sky
  moves through a rest-frame template by ``z_B``);
- BAD_WAVELENGTH: the original's ``badlams.txt`` ('w' rows: wavelength bands; 'x' rows: boxes of
  +-halfwidth pixels and +-halfheight orders around bloomed ThAr lines);
- ORDER_EDGE: the first/last ``edge_pixels`` columns of every order;
- LOW_SIGNAL: the blue hook and blaze wings, where the blaze is below ``min_blaze`` of its order peak;
- BLEED: the spectrum's own BLEED pixels, widened by ``bleed_pad`` pixels.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..doppler import C_M_S
from ..errors import InvalidInputFileError, InvalidParameterError
from ..flags import FLAG_DTYPE, Flag

__all__ = ["telluric_bands", "read_badlams", "rv_mask", "DEFAULT_WIDEN"]

#: Default widening of telluric bands: the largest barycentric velocity (annual + diurnal) is ~31 km/s.
DEFAULT_WIDEN = (-31.0, 31.0) * u.km / u.s


@lru_cache(maxsize=1)
def _bands_table():
    path = resources.files("nres.rv") / "data" / "telluric_bands.csv"
    return Table.read(str(path), format="ascii.csv")


def telluric_bands(selection="default") -> Table:
    """The packaged telluric band table (see ``src/nres/rv/data/DATA_SOURCES``).

    Parameters
    ----------
    selection : {"default", "all"}
        "default": the deep O2 A/B and H2O bands redward of 680 nm; "all": also the wide weak blue regions.

    Returns
    -------
    Table
        Columns ``name``, ``molecule``, ``lo_nm``, ``hi_nm`` (air), ``default``, ``source``.
    """
    tab = _bands_table()
    if selection == "all":
        return tab.copy()
    if selection == "default":
        keep = np.array([str(v) == "True" for v in tab["default"]])
        return tab[keep]
    msg = f"selection: expected 'default' or 'all', got {selection!r}"
    raise InvalidParameterError(msg)


def read_badlams(path=None) -> Table:
    """The original's bad-wavelength list (two header lines, then ``type lam_nm halfwidth [halfheight]``).

    Parameters
    ----------
    path : str or Path, optional
        Default: the packaged copy of nres-pipe's ``config/badlams.txt``.

    Returns
    -------
    Table
        ``type`` ('w' or 'x'), ``wavelength`` (nm, vacuum), ``halfwidth`` (nm for 'w', pixels for 'x'),
        ``halfheight`` (orders; 0 when absent).
    """
    if path is None:
        path = resources.files("nres.rv") / "data" / "badlams.txt"
    try:
        with open(str(path)) as fh:
            lines = fh.read().splitlines()[2:]
    except OSError as err:
        raise InvalidInputFileError(path, f"cannot read the badlams file ({err})") from None
    rows = []
    for k, line in enumerate(lines):
        words = line.split()
        if not words:
            continue
        if words[0] not in ("w", "x") or len(words) < 3:
            raise InvalidInputFileError(path, f"line {k + 3}: expected 'w|x lam halfwidth [halfheight]'")
        # the original's reader dropped 3-column rows (misaligned arrays): here they get halfheight 0
        rows.append((words[0], float(words[1]), float(words[2]), float(words[3]) if len(words) > 3 else 0.0))
    return Table(rows=rows, names=("type", "wavelength", "halfwidth", "halfheight"))


def _in_bands(lam, lo, hi):
    out = np.zeros(lam.shape, dtype=bool)
    for a, b in zip(lo, hi, strict=True):
        out |= (lam >= a) & (lam <= b)
    return out


def rv_mask(
    spec,
    *,
    fiber=None,
    tellurics="default",
    widen=DEFAULT_WIDEN,
    badlams=True,
    edge_pixels=20,
    min_blaze=0.05,
    bleed_pad=3,
):
    """Flags (uint16) of the pixels an RV measurement should not use, for one fiber.

    Parameters
    ----------
    spec : EchelleSpectrum
        Needs wavelengths (vacuum or air); its flags (BLEED) and blaze are used when present.
    fiber : int, optional
        Fiber id (default: the only fiber or the only non-ThAr fiber).
    tellurics : {"default", "all", "none"} or Table
        Telluric bands (:func:`telluric_bands`), or a table with ``lo_nm``/``hi_nm`` (air).
    widen : Quantity (2,)
        Velocity range by which every telluric band is widened: ``[lo (1 + v_lo / c), hi (1 + v_hi / c)]``.
    badlams : bool or Table
        Apply the original's list (:func:`read_badlams`) or a table in its format.
    edge_pixels : int
        Columns flagged ORDER_EDGE at each end of an order.
    min_blaze : float
        LOW_SIGNAL where the blaze is below this fraction of the order's maximum.
    bleed_pad : int
        BLEED pixels of the spectrum widened by this many columns on each side.

    Returns
    -------
    flags : ndarray of uint16, shape (n_order, n_pixel)
    """
    from ..instrument import air_to_vacuum
    from .measure import _pick_fiber

    if spec.wavelength is None:
        msg = "rv_mask: the spectrum has no wavelength solution"
        raise InvalidParameterError(msg)
    fi = _pick_fiber(spec, fiber)
    lam = np.asarray(spec.wavelength.to_value(u.nm)[fi], dtype=float)
    no, nx = lam.shape
    flags = np.zeros((no, nx), dtype=FLAG_DTYPE)

    def to_medium(values_nm, medium):
        if spec.wavelength_medium == medium:
            return np.asarray(values_nm, dtype=float)
        if medium == "air":
            return air_to_vacuum(np.asarray(values_nm, dtype=float) * u.nm).to_value(u.nm)
        from ..instrument import vacuum_to_air

        return vacuum_to_air(np.asarray(values_nm, dtype=float) * u.nm).to_value(u.nm)

    if not isinstance(tellurics, str) or tellurics != "none":
        tab = telluric_bands(tellurics) if isinstance(tellurics, str) else tellurics
        v_lo, v_hi = widen.to_value(u.m / u.s)
        lo = to_medium(tab["lo_nm"], "air") * (1.0 + v_lo / C_M_S)
        hi = to_medium(tab["hi_nm"], "air") * (1.0 + v_hi / C_M_S)
        flags[_in_bands(lam, lo, hi)] |= FLAG_DTYPE(Flag.TELLURIC)
    if badlams is not False:
        bl = read_badlams() if badlams is True else badlams
        w = np.asarray(bl["type"]) == "w"
        centre = to_medium(np.asarray(bl["wavelength"], dtype=float), "vacuum")
        half = np.asarray(bl["halfwidth"], dtype=float)
        flags[_in_bands(lam, centre[w] - half[w], centre[w] + half[w])] |= FLAG_DTYPE(Flag.BAD_WAVELENGTH)
        orders = np.asarray(spec.orders)
        for c, hw, hh in zip(centre[~w], half[~w], np.asarray(bl["halfheight"])[~w], strict=True):
            lo_o, hi_o = lam.min(axis=1), lam.max(axis=1)
            for j in np.flatnonzero((lo_o <= c) & (hi_o >= c)):
                x = int(np.argmin(np.abs(lam[j] - c)))
                rows = np.flatnonzero(np.abs(orders - orders[j]) <= hh)
                flags[rows, max(x - int(hw), 0) : x + int(hw) + 1] |= FLAG_DTYPE(Flag.BAD_WAVELENGTH)
    if edge_pixels > 0:
        flags[:, :edge_pixels] |= FLAG_DTYPE(Flag.ORDER_EDGE)
        flags[:, nx - edge_pixels :] |= FLAG_DTYPE(Flag.ORDER_EDGE)
    if spec.blaze is not None and min_blaze > 0:
        b = np.asarray(spec.blaze[fi], dtype=float)
        with np.errstate(invalid="ignore"):
            low = ~(b >= min_blaze * np.nanmax(b, axis=1, keepdims=True))
        flags[low] |= FLAG_DTYPE(Flag.LOW_SIGNAL)
    if spec.flags is not None:
        bleed = (np.asarray(spec.flags[fi]) & FLAG_DTYPE(Flag.BLEED)) != 0
        if bleed.any() and bleed_pad > 0:
            kernel = np.ones(2 * int(bleed_pad) + 1)
            bleed = np.stack([np.convolve(row.astype(float), kernel, mode="same") > 0 for row in bleed])
        flags[bleed] |= FLAG_DTYPE(Flag.BLEED)
    return flags
