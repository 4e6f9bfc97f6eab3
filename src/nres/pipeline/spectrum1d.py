"""The 1-D product of a TARGET (or arc) frame: one binary table, a row per (fiber, order), plus RV tables.

HDUs of ``<reduced>-1d.fits``:

- ``PRIMARY``: the raw header, the RV keywords (:data:`RV_KEYWORDS`), the QC numbers and the
  provenance of every step (``HIERARCH NRES P<k> ...``).
- ``SPECTRUM``: one row per (fiber, order) with array columns of n_pixel values: ``pixel``
  (full-detector x), ``wavelength`` (nm, vacuum, topocentric), ``wavelength_angstrom``, ``flux``
  (electrons), ``variance`` (electrons^2), ``blaze`` (relative), ``mask`` (True = bad), ``flags``
  (uint16), ``normflux`` and ``normvariance`` (flux / blaze and its variance).
- ``RV``: one row: barycentric RV, observed RV, photon and empirical errors, barycentric
  correction, BJD_TDB, fiber, method, template (m/s).
- ``RVORDERS``: per-order RVs of the measurement (m/s, observed frame), errors, weights, flags.
- ``CCF``: the velocity grid (m/s) and the summed CCF with its Gaussian FWHM, contrast, bisector.
"""

from __future__ import annotations

import os
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import VarianceUncertainty
from astropy.table import QTable, Table

from ..errors import InvalidInputFileError
from .frames import _clean_header
from .products import write_fits_atomic

__all__ = [
    "write_spectrum_1d",
    "read_spectrum_1d",
    "read_echelle_spectrum_1d",
    "spectrum_table",
    "RV_KEYWORDS",
]

#: Header keywords of the RV result (value in m/s unless stated) -> RVResult attribute.
RV_KEYWORDS = {
    "RV": ("rv", "barycentric radial velocity [m/s]"),
    "RVERR": ("rv_err_photon", "photon-noise RV error [m/s]"),
    "RVERREMP": ("rv_err_empirical", "RV error from the order scatter [m/s]"),
    "RVOBS": ("rv_observed", "observed (topocentric) RV [m/s]"),
    "BARYCORR": ("barycentric_correction", "barycentric correction c z_B [m/s]"),
}


def spectrum_table(spec) -> Table:
    """The ``SPECTRUM`` table of an :class:`~nres.spectrum.EchelleSpectrum` (a row per (fiber, order))."""
    nf, no, npix = spec.shape
    n = nf * no
    fib, order = np.meshgrid(spec.fibers, spec.orders, indexing="ij")
    table = Table()
    table["fiber"] = fib.ravel().astype(np.int16)
    table["order"] = order.ravel().astype(np.int16)
    table["pixel"] = np.broadcast_to(spec.pixel, spec.shape).reshape(n, npix).astype(np.float32)
    if spec.wavelength is not None:
        lam = spec.wavelength.to_value(u.nm).reshape(n, npix)
    else:
        lam = np.full((n, npix), np.nan)
    table["wavelength"] = lam  # float64: 1e-9 relative precision needs more than float32 gives
    table["wavelength"].unit = u.nm
    table["wavelength_angstrom"] = lam * 10.0
    table["wavelength_angstrom"].unit = u.AA
    flux = np.asarray(spec.data, np.float64).reshape(n, npix)
    var = spec.variance
    var = np.full((n, npix), np.nan) if var is None else np.asarray(var, np.float64).reshape(n, npix)
    # electrons (header FLUXUNIT): 'electron' is not a FITS unit string, so no column unit
    table["flux"] = flux.astype(np.float32)
    table["variance"] = var.astype(np.float32)
    blaze = spec.blaze
    blaze = np.full((n, npix), np.nan) if blaze is None else np.asarray(blaze, np.float64).reshape(n, npix)
    table["blaze"] = blaze.astype(np.float32)
    table["mask"] = np.asarray(spec.mask, bool).reshape(n, npix)
    table["flags"] = np.asarray(spec.flags).reshape(n, npix)
    with np.errstate(divide="ignore", invalid="ignore"):
        good = np.isfinite(blaze) & (blaze > 0)
        table["normflux"] = np.where(good, flux / np.where(good, blaze, 1.0), np.nan).astype(np.float32)
        table["normvariance"] = np.where(good, var / np.where(good, blaze, 1.0) ** 2, np.nan).astype(
            np.float32
        )
    return table


def _rv_tables(rv, template_name):
    row = Table()
    for _key, (attr, _comment) in RV_KEYWORDS.items():
        row[attr] = [float(getattr(rv, attr).to_value(u.m / u.s))]
        row[attr].unit = u.m / u.s
    row["bjd_tdb"] = [np.nan if rv.bjd_tdb is None else float(rv.bjd_tdb.tdb.jd)]
    row["fiber"] = [int(rv.meta.get("fiber", -1))]
    row["method"] = [str(rv.meta.get("method", ""))]
    row["template"] = [str(template_name)]
    row["n_orders_used"] = [int(rv.meta.get("n_orders_used", 0))]
    orders = Table(QTable(rv.orders))
    ccf = Table(QTable(rv.ccf))
    return row, orders, ccf


def _card_value(value):
    """FITS headers cannot hold NaN: non-finite floats are written as the string 'NaN'."""
    value = float(value)
    return value if np.isfinite(value) else "NaN"


def _rv_header(header, rv):
    for key, (attr, comment) in RV_KEYWORDS.items():
        header[key] = (_card_value(getattr(rv, attr).to_value(u.m / u.s)), comment)
    bjd = np.nan if rv.bjd_tdb is None else rv.bjd_tdb.tdb.jd
    header["BJD_TDB"] = (_card_value(bjd), "BJD_TDB of the RV")
    header["RVFIBER"] = (int(rv.meta.get("fiber", -1)), "fiber of the RV")
    header["RVMETHOD"] = (str(rv.meta.get("method", "")), "RV method")


def write_spectrum_1d(path, spec, *, rv=None, template_name="", qc=None, overwrite=True) -> Path:
    """Write the 1-D product atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (``product_path(raw, "1d", out_dir)``).
    spec : EchelleSpectrum
        Extracted spectrum (fiber, order, pixel) with wavelengths and blaze.
    rv : nres.rv.RVResult, optional
        RV of the science fiber (adds the RV, RVORDERS and CCF tables and header keywords).
    template_name : str
        What the RV was measured against (header ``RVTEMPL``).
    qc : dict, optional
        Scalar QC numbers written as ``HIERARCH NRES QC <NAME>`` cards.
    """
    header = _clean_header(spec.meta)
    header["NRESPROD"] = ("1D", "nres product: extracted spectrum and RV")
    header["FLUXUNIT"] = ("electron", "unit of flux (variance: its square)")
    for key, value in (qc or {}).items():
        if isinstance(value, bool | int | float | str) and not isinstance(value, np.ndarray):
            value = value if not (isinstance(value, float) and not np.isfinite(value)) else "NaN"
            header[f"HIERARCH NRES QC {key.upper()}"] = value
    hdus = [fits.PrimaryHDU(header=header), fits.BinTableHDU(spectrum_table(spec), name="SPECTRUM")]
    if rv is not None:
        _rv_header(hdus[0].header, rv)
        hdus[0].header["RVTEMPL"] = (str(template_name)[:60], "RV template or mask")
        row, orders, ccf = _rv_tables(rv, template_name)
        hdus += [
            fits.BinTableHDU(row, name="RV"),
            fits.BinTableHDU(orders, name="RVORDERS"),
            fits.BinTableHDU(ccf, name="CCF"),
        ]
    return write_fits_atomic(fits.HDUList(hdus), path, overwrite=overwrite)


def read_spectrum_1d(path) -> dict:
    """Read a 1-D product: ``{"header": Header, "spectrum": Table, "rv": Table | None,
    "rv_orders": Table | None, "ccf": Table | None}``."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise InvalidInputFileError(path, "1-D product not found")
    try:
        with fits.open(path, memmap=False) as hdul:
            names = {h.name.upper() for h in hdul}
            if "SPECTRUM" not in names:
                raise InvalidInputFileError(path, "no SPECTRUM extension (not an nres 1-D product)")
            out = {"header": hdul[0].header.copy(), "spectrum": Table.read(hdul["SPECTRUM"])}
            for key, ext in (("rv", "RV"), ("rv_orders", "RVORDERS"), ("ccf", "CCF")):
                out[key] = Table.read(hdul[ext]) if ext in names else None
    except OSError as err:
        raise InvalidInputFileError(path, f"not a readable FITS file ({err})") from None
    return out


def _plane(table, name, index, shape, dtype):
    """Column ``name`` of the SPECTRUM table as a (fiber, order, pixel) plane (rows placed by index)."""
    out = np.empty(shape, dtype=dtype)
    out[index] = np.asarray(table[name], dtype=dtype)
    return out


def read_echelle_spectrum_1d(path):
    """Read a 1-D product as an :class:`~nres.spectrum.EchelleSpectrum`.

    The ``SPECTRUM`` rows become the (fiber, order, pixel) planes: ``flux`` (electrons, float32 on
    disk), ``variance`` (electrons^2), ``wavelength`` (nm; the product's wavelengths are vacuum,
    topocentric), ``blaze``, ``mask``, ``flags`` and ``pixel``; the primary header (raw header, RV
    keywords, QC cards, provenance) becomes ``meta``. An all-NaN variance, wavelength or blaze
    column (the writer's "absent") is read back as None.

    Parameters
    ----------
    path : str or os.PathLike
        A ``-1d.fits`` product of :func:`write_spectrum_1d`.

    Returns
    -------
    EchelleSpectrum
        Shape (n_fiber, n_order, n_pixel), fibers and orders in the order of their first row.

    Raises
    ------
    InvalidInputFileError
        Missing or unreadable file, no SPECTRUM table, or rows that do not form a full
        (fiber, order) grid.
    """
    from ..spectrum import EchelleSpectrum

    product = read_spectrum_1d(path)
    table, header = product["spectrum"], product["header"]
    fib = np.asarray(table["fiber"], dtype=np.int64)
    order = np.asarray(table["order"], dtype=np.int64)
    fibers = list(dict.fromkeys(fib.tolist()))
    orders = list(dict.fromkeys(order.tolist()))
    npix = np.asarray(table["flux"]).shape[-1] if len(table) else 0
    pairs = set(zip(fib.tolist(), order.tolist(), strict=True))
    if not len(table) or len(pairs) != len(table) or len(table) != len(fibers) * len(orders):
        raise InvalidInputFileError(
            path, f"SPECTRUM rows {len(table)} do not form a full (fiber, order) grid of {fibers} x {orders}"
        )
    fpos = {f: i for i, f in enumerate(fibers)}
    opos = {m: i for i, m in enumerate(orders)}
    index = (np.array([fpos[f] for f in fib.tolist()]), np.array([opos[m] for m in order.tolist()]))
    shape = (len(fibers), len(orders), npix)

    def optional(name):
        plane = _plane(table, name, index, shape, np.float64)
        return None if np.all(np.isnan(plane)) else plane

    variance = optional("variance")
    wavelength = optional("wavelength")
    pixel = _plane(table, "pixel", index, shape, np.float64)
    if np.all(pixel == pixel[:1, :1]):
        pixel = pixel[0, 0].copy()  # the same columns for every row: the common 1-D form
    return EchelleSpectrum(
        _plane(table, "flux", index, shape, np.float64),
        uncertainty=None if variance is None else VarianceUncertainty(variance),
        mask=_plane(table, "mask", index, shape, bool),
        flags=_plane(table, "flags", index, shape, np.uint16),
        wavelength=None if wavelength is None else wavelength * u.nm,
        wavelength_medium="vacuum",
        wavelength_frame="topocentric",
        orders=orders,
        fibers=fibers,
        pixel=pixel,
        blaze=optional("blaze"),
        meta=header,
    )
