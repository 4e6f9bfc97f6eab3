"""The original pipeline's archived product, the ``e91`` file: writer, reader and comparison.

Layout (idl-rv-ops.md 12.3-12.4, idl-wavecal.md 9.4; LCOGT/nres-pipe docs/output_format.txt): ten
HDUs, every image (n_order, n_x) in numpy (FITS NAXIS1 = n_x, NAXIS2 = n_order):

==  ============  ==========================================================================
0   PRIMARY       header only: the observation, ``OBJECTS``, ``FIB0``, ``NORD``, ``NX``, ``NBLOCK``,
                  ``AMPFL<f><oo>``, the RV numbers ``RCC``, ``WIDCC``, ``AMPCC``, ``RVCC``, ``BJD``,
                  ``ZBLKAVG``, ``ZBLKMED``, ``ZBLKERR``, ``PLDP``
1   SPECRAW       star fiber, extracted (float32)
2   SPECFLAT      star fiber, flat-fielded: extracted / blaze (float32)
3   SPECBLAZE     star fiber, blaze-subtracted: extracted - amp x blaze (float32)
4   THARRAW       ThAr fiber 1, extracted (float32)
5   THARFLAT      ThAr fiber 1, flat-fielded (float32)
6   WAVESPEC      star fiber wavelengths, nm, vacuum, topocentric (float64)
7   WAVETHAR      fiber 1 wavelengths (float64)
8   SPECXCOR      the cross-correlation function (float32 vector), lag = CRVAL1 + (i + 1 - CRPIX1)
                  CDELT1 km/s
9   RVBLOCKFIT    binary table, one row: ZBLOCK, ERRZBLOCK, SCALE, ERRSCALE, LX1COEF, ERRLX1, PLDP
                  (float64, TDIM ``(nord,nblock)`` = numpy (n_block, n_order)) and BLKINDX, ORDINDX
                  (int32 vectors of n_order n_block: element k is order row k mod nord, block k div nord)
==  ============  ==========================================================================

Order axis: the original's order index ``iord`` runs from the red end, ``m = 52 + iord`` (row 0 =
order 52, ~900 nm; row 66 = order 118, ~390 nm; idl-wavecal.md 0, idl-calib-trace-extract.md 2).
:func:`write_e91` writes the spectrum's orders in that direction (ascending m) and lists them in the
primary keyword ``ORDERS``; the reader uses ``ORDERS`` when present and ``m = ORD0 + row`` (ORD0
default 52) for the original's files, which carry all 67 orders. Columns are full-detector x from
``NRESX0`` (default 0). Star fiber: 0 when ``FIB0`` = 0, else 2 (``FIB0`` = 1 means fibers 1 and 2
are lit). The original wrote ADU and zeroed unusable pixels; nres writes electrons (``BUNIT``) and
writes masked pixels as 0, which the reader masks again (exactly, unless a lossy fpack changed the
zeros).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from ..doppler import C_M_S
from ..errors import InvalidInputFileError, InvalidParameterError
from ..flags import FLAG_DTYPE, Flag
from ..provenance import record_provenance
from .products import write_fits_atomic

__all__ = [
    "E91Product",
    "write_e91",
    "read_e91",
    "compare_e91",
    "E91_EXTENSIONS",
    "BLOCK_COLUMNS",
    "ORD0",
    "NORD_FULL",
]

#: Extension names of HDUs 1..9, in the file's order.
E91_EXTENSIONS = (
    "SPECRAW",
    "SPECFLAT",
    "SPECBLAZE",
    "THARRAW",
    "THARFLAT",
    "WAVESPEC",
    "WAVETHAR",
    "SPECXCOR",
    "RVBLOCKFIT",
)
#: RVBLOCKFIT's float64 columns and the original's column comments (SCALE holds the additive level
#: ``aa`` and LX1COEF the scale ``bb``, as the original's code filled them; its docs swapped them).
BLOCK_COLUMNS = {
    "ZBLOCK": "redshift of block rel to xcorrel",
    "ERRZBLOCK": "formal error of zblock",
    "SCALE": "scale factor for block",
    "ERRSCALE": "formal error of scale for  block",
    "LX1COEF": "Lx1 coeff for block",
    "ERRLX1": "formal error for Lx1 coeff",
    "PLDP": "PLDP for block",
}
#: Physical order of the original's order index 0 (the reddest order).
ORD0 = 52
#: Orders of a full NRES frame (52..118).
NORD_FULL = 67
_MIN_BLAZE = 0.01  # SPECFLAT is 0 where the blaze is not above this (nres.extract.flat_correct's rule)
_IMAGE_EXTS = E91_EXTENSIONS[:7]


# ----- writer ---------------------------------------------------------------------------------------------
def _star_fiber(spec, fiber):
    fibers = [int(f) for f in spec.fibers]
    if fiber is None:
        stars = [f for f in fibers if f != 1]
        if len(stars) != 1:
            msg = f"fiber: the spectrum has fibers {fibers}; say which one is the star (0 or 2)"
            raise InvalidParameterError(msg)
        fiber = stars[0]
    fiber = int(fiber)
    if fiber not in (0, 2):
        raise InvalidParameterError(f"fiber: the e91 star fiber must be 0 or 2, got {fiber}")
    for need in (fiber, 1):
        if need not in fibers:
            msg = f"spec: the e91 layout needs fibers {fiber} (star) and 1 (ThAr); the spectrum has {fibers}"
            raise InvalidParameterError(msg)
    return fiber


def _columns(spec):
    """First full-detector column; the columns must be contiguous (the layout has no pixel axis)."""
    pixel = np.asarray(spec.pixel, dtype=np.float64)
    if pixel.ndim == 3:
        if not np.all(pixel == pixel[:1, :1]):
            raise InvalidParameterError("spec: every (fiber, order) must have the same columns (pixel)")
        pixel = pixel[0, 0]
    x0 = pixel[0]
    if x0 != np.round(x0) or not np.array_equal(pixel, x0 + np.arange(pixel.size)):
        raise InvalidParameterError("spec: pixel must be contiguous integer columns for the e91 layout")
    return int(x0)


def _plane(arr, mask):
    """float32 plane with masked or non-finite pixels written as 0 (the original's unusable value)."""
    arr = np.asarray(arr, dtype=np.float64)
    return np.where(mask | ~np.isfinite(arr), 0.0, arr).astype(np.float32)


def _spectrum_planes(spec, star, rows):
    """SPECRAW..THARFLAT planes, the AMPFL amplitudes of the star fiber, and a note."""
    from ..extract import blaze_subtracted

    fs, ft = (int(np.flatnonzero(spec.fibers == f)[0]) for f in (star, 1))
    data = np.asarray(spec.data, dtype=np.float64)
    mask = np.asarray(spec.mask, dtype=bool)
    planes = {
        "SPECRAW": _plane(data[fs, rows], mask[fs, rows]),
        "THARRAW": _plane(data[ft, rows], mask[ft, rows]),
    }
    n_rows = len(rows)
    if spec.blaze is None:
        nan = np.full(planes["SPECRAW"].shape, np.nan, dtype=np.float32)
        planes.update(SPECFLAT=nan, SPECBLAZE=nan.copy(), THARFLAT=nan.copy())
        return planes, np.full(n_rows, np.nan), "no blaze: SPECFLAT, SPECBLAZE and THARFLAT are NaN"
    blaze = np.asarray(spec.blaze, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        good = np.isfinite(blaze) & (blaze > _MIN_BLAZE)
        flat = np.where(good, data / np.where(good, blaze, 1.0), np.nan)
    planes["SPECFLAT"] = _plane(flat[fs, rows], mask[fs, rows] | ~good[fs, rows])
    planes["THARFLAT"] = _plane(flat[ft, rows], mask[ft, rows] | ~good[ft, rows])
    # the original's blaze-subtracted spectrum R - amp F (its RV input), amplitude per order
    sub = blaze_subtracted(spec.select(fibers=[star]), spec.select(fibers=[star]), thar_fibers=[])
    planes["SPECBLAZE"] = _plane(np.asarray(sub.data)[0, rows], np.asarray(sub.mask)[0, rows])
    amp = {
        int(m): float(a) for m, a in zip(sub.meta["AMPFL"]["order"], sub.meta["AMPFL"]["amp"], strict=True)
    }
    orders = np.asarray(spec.orders)[rows]
    return planes, np.array([amp.get(int(m), np.nan) for m in orders]), ""


def _ccf_hdu(rv):
    """SPECXCOR: the CCF on a uniform lag grid (km/s) with the original's linear WCS cards."""
    if rv is None or rv.ccf is None or not len(rv.ccf):
        hdu = fits.ImageHDU(name="SPECXCOR")
        hdu.header["E91NOTE"] = "no RV measured: no cross-correlation"
        return hdu
    v = u.Quantity(rv.ccf["velocity"][0], u.m / u.s).to_value(u.km / u.s).astype(np.float64)
    c = np.asarray(rv.ccf["ccf"][0], dtype=np.float64)
    grid = np.linspace(v[0], v[-1], v.size)
    step = (v[-1] - v[0]) / (v.size - 1)
    if np.max(np.abs(v - grid)) > 1e-6 * abs(step):  # the layout's WCS is linear: resample if it is not
        c = np.interp(grid, v, c)
    hdu = fits.ImageHDU(c.astype(np.float32), name="SPECXCOR")
    hdu.header["CRPIX1"] = (1, "pixel index corresp to CRVAL1")
    hdu.header["CRVAL1"] = (float(grid[0]), "minimum lag value (km/s)")
    hdu.header["CDELT1"] = (float(step), "lag increment (km/s per pix)")
    hdu.header["CTYPE1"] = ("PIXEL", "index type for lags")
    return hdu


def _block_arrays(rv, orders, nblock):
    """(arrays (nblock, nord) per RVBLOCKFIT column, source, note, (zavg, zmed, zerr))."""
    nord = len(orders)
    row = {int(m): j for j, m in enumerate(orders)}
    meta = {} if rv is None else rv.meta
    z_obs = np.nan if rv is None else float(rv.rv_observed.to_value(u.m / u.s)) / C_M_S
    if "block_rr" in meta:  # the original's Stage B (block_engine="idl"): rr relative to RCC, as it wrote
        rr, err = np.asarray(meta["block_rr"], float), np.asarray(meta["block_err"], float)
        nblock = rr.shape[1]
        out = {k: np.full((nblock, nord), np.nan) for k in BLOCK_COLUMNS}
        for o, m in enumerate(np.asarray(rv.orders["order"])):
            if int(m) in row:
                out["ZBLOCK"][:, row[int(m)]] = rr[o]
                out["ERRZBLOCK"][:, row[int(m)]] = err[o]
        summary = (meta.get("rroa", np.nan), meta.get("rrom", np.nan), meta.get("rroe", np.nan))
        note = "idl block fit: ZBLOCK/ERRZBLOCK as measured (0 = block skipped); aa, bb, PLDP not kept"
        return out, "idl", note, summary
    out = {k: np.full((nblock, nord), np.nan) for k in BLOCK_COLUMNS}
    blocks = meta.get("blocks")
    if blocks is None or not len(blocks):
        method = meta.get("method", "none") if rv is not None else "none"
        note = f"RV method {method!r} fits no blocks: every value is NaN"
        return out, "none", note, (np.nan, np.nan, np.nan)
    nblock = max(nblock, int(np.max(blocks["block"])) + 1)
    out = {k: np.full((nblock, nord), np.nan) for k in BLOCK_COLUMNS}
    z_blk = np.asarray(u.Quantity(blocks["rv"], u.m / u.s).to_value(u.m / u.s)) / C_M_S
    z_err = np.asarray(u.Quantity(blocks["rv_err"], u.m / u.s).to_value(u.m / u.s)) / C_M_S
    z_rel = (1.0 + z_blk) / (1.0 + z_obs) - 1.0  # relative to RCC (= z_obs here), as the original's
    e_rel = z_err / (1.0 + z_obs)
    for k, (m, b) in enumerate(zip(np.asarray(blocks["order"]), np.asarray(blocks["block"]), strict=True)):
        if int(m) in row:
            j = row[int(m)]
            out["ZBLOCK"][b, j], out["ERRZBLOCK"][b, j] = z_rel[k], e_rel[k]
            out["SCALE"][b, j] = float(blocks["level"][k])  # the additive level aa, as the original's SCALE
            out["LX1COEF"][b, j] = float(blocks["scale"][k])  # the scale bb
    used = np.asarray(blocks["used"], bool) & np.isfinite(z_rel) & (e_rel > 0)
    if used.any():
        w = 1.0 / e_rel[used] ** 2
        summary = (
            float(np.sum(w * z_rel[used]) / np.sum(w)),
            float(np.median(z_rel[used])),
            float(1 / np.sqrt(w.sum())),
        )
    else:
        summary = (np.nan, np.nan, np.nan)
    note = "nres block fit: ZBLOCK relative to RCC; SCALE = level aa, LX1COEF = scale bb; no errors of aa, bb"
    return out, "nres", note, summary


def _card(value):
    """FITS headers cannot hold NaN: a non-finite float is written as the string 'NaN'."""
    value = float(value)
    return value if np.isfinite(value) else "NaN"


def _rv_cards(header, rv, summary):
    """RCC..PLDP. BJD: the RV's, else a numeric BJD card already in ``header``, else NaN."""
    nan = float("nan")
    rcc = widcc = ampcc = rvcc = bjd = nan
    if rv is not None:
        meta = rv.meta
        if rv.ccf is not None and len(rv.ccf):
            v = u.Quantity(rv.ccf["velocity"][0], u.m / u.s).to_value(u.m / u.s)
            c = np.asarray(rv.ccf["ccf"][0], float)
            ok = np.isfinite(v) & np.isfinite(c)
            if ok.any():  # the CCF at the measured velocity: its peak (template/ccf) or trough (mask)
                ampcc = float(np.interp(rv.rv_observed.to_value(u.m / u.s), v[ok], c[ok]))
            if "fwhm" in rv.ccf.colnames:
                widcc = float(u.Quantity(rv.ccf["fwhm"][0], u.m / u.s).to_value(u.km / u.s))
        # the original's Stage A numbers when the RV ran it (block_engine="idl"), else z_obs
        rcc = meta.get("rcc", rv.rv_observed.to_value(u.m / u.s) / C_M_S)
        widcc, ampcc = meta.get("widcc", widcc), meta.get("ampcc", ampcc)
        rvcc = rv.rv.to_value(u.km / u.s)
        if rv.bjd_tdb is not None:
            bjd = rv.bjd_tdb.tdb.jd
    if not np.isfinite(bjd) and isinstance(header.get("BJD"), int | float):
        bjd = float(header["BJD"])
    cards = (
        ("RCC", rcc, "Cross-Corr redshift"),
        ("WIDCC", widcc, "Cross-Corr width (km/s)"),
        ("AMPCC", ampcc, "Cross-Corr peak height"),
        ("RVCC", rvcc, "[km/s] Bary corrected cross-correl RV"),
        ("BJD", bjd, "[BJD_TDB] Barycentric Julian date of the RV"),
        ("ZBLKAVG", summary[0], "Avg blockfit redshift"),
        ("ZBLKMED", summary[1], "Median blockfit redshift"),
        ("ZBLKERR", summary[2], "Blockfit redshift formal err"),
        ("PLDP", nan, "Star photon-limited doppler precision"),
    )
    for key, value, comment in cards:
        header[key] = (_card(value), comment)


def _primary_header(spec, header, *, star, orders, x0, nx, nblock):
    from .frames import _clean_header

    out = _clean_header(spec.meta)
    for card in _clean_header(header).cards:
        if card.keyword in out:
            del out[card.keyword]
        out.append(card, end=True)
    objects = str(out.get("OBJECTS", ""))
    if not objects:
        words = ["none", "none", "none"]
        words[star], words[1] = "star", "thar"
        out["OBJECTS"] = ("&".join(words), "Concatenation of 3 fiber objects")
    out["RLEVEL"] = (91, "Reduction level")
    out["NBLOCK"] = (int(nblock), "Number of wavelength blocks per order")
    out["NFIB"] = (3, "Number of fibers into spectrograph")
    out["NORD"] = (len(orders), "Number of diffraction orders")
    out["FIB0"] = (0 if star == 0 else 1, "Index of 1st illuminated fiber")
    out["NX"] = (int(nx), "Number of pix along dispersion per order")
    out["ORDERS"] = (",".join(str(int(m)) for m in orders), "physical order m of each row (nres)")
    out["NRESX0"] = (int(x0), "full-detector x of column 0 (nres)")
    out["BUNIT"] = ("electron", "SPECRAW, SPECBLAZE, THARRAW (the original: ADU)")
    out["WAVMED"] = ("vacuum", "WAVESPEC/WAVETHAR medium (frame: topocentric)")
    return out


def write_e91(
    path, spec, *, rv=None, header=None, fiber=None, nblock=12, compress=None, overwrite=True
) -> Path:
    """Write a spectrum (and its RV) in the original pipeline's 10-HDU ``e91`` layout, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination, normally ``product_path(raw, "e91", out_dir, rlevel=91)``
        (``<raw stem with e00 -> e91>.fits``).
    spec : EchelleSpectrum
        Extracted spectrum (fiber, order, pixel), electrons, with wavelengths (vacuum, topocentric)
        and, for SPECFLAT/SPECBLAZE/THARFLAT, a blaze; it must hold the star fiber and fiber 1 and
        contiguous columns. Its orders are written in the original's direction (row 0 = the lowest
        m; all 67 rows for a full frame, else the orders it has, listed in ``ORDERS``).
    rv : nres.rv.RVResult, optional
        RV of the star fiber: the header's RV numbers, SPECXCOR (its CCF, lags in km/s) and, when
        the measurement fitted blocks (``method="blocks"``), RVBLOCKFIT. Without it (or without
        blocks) those values are NaN and a header card ``E91NOTE`` says why.
    header : astropy.io.fits.Header or dict, optional
        Cards added to (or replacing) those of ``spec.meta`` in the primary header; a numeric
        ``BJD`` there is kept when ``rv`` has no ``bjd_tdb`` (the TARGET recipe passes its own).
    fiber : {0, 2}, optional
        Star fiber; default the spectrum's only fiber other than 1.
    nblock : int
        Blocks per order of RVBLOCKFIT when the RV has none of its own (the original's 12).
    compress : bool, optional
        Tile-compress the images (lossless GZIP, one tile per order as fpack did); default True
        only for a ``.fz`` path.
    overwrite : bool

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InvalidParameterError
        Data not in electrons, no wavelengths, a missing star or ThAr fiber, non-contiguous columns.
    """
    from ..spectrum import EchelleSpectrum

    if not isinstance(spec, EchelleSpectrum):
        raise InvalidParameterError(f"spec: expected an EchelleSpectrum, got {type(spec).__name__}")
    if spec.unit != u.electron:
        raise InvalidParameterError(f"spec: expected extracted data in electrons, got {spec.unit}")
    if spec.wavelength is None:
        raise InvalidParameterError(
            "spec: the e91 layout needs wavelengths (WAVESPEC/WAVETHAR); apply a solution"
        )
    star = _star_fiber(spec, fiber)
    x0 = _columns(spec)
    rows = np.argsort(np.asarray(spec.orders), kind="stable")  # ascending m: the original's iord direction
    orders = np.asarray(spec.orders)[rows]
    nx = spec.shape[2]
    planes, amp, flat_note = _spectrum_planes(spec, star, rows)
    lam = spec.wavelength.to_value(u.nm)
    fs, ft = (int(np.flatnonzero(spec.fibers == f)[0]) for f in (star, 1))
    blocks, source, block_note, summary = _block_arrays(rv, orders, int(nblock))
    nblock_out = next(iter(blocks.values())).shape[0]
    primary = _primary_header(spec, header, star=star, orders=orders, x0=x0, nx=nx, nblock=nblock_out)
    digit = 0 if star == 0 else 1
    for j, a in enumerate(amp):
        primary[f"AMPFL{digit}{j:02d}"] = (_card(a), "Flat amplitude subtracted, by order")
    _rv_cards(primary, rv, summary)
    if flat_note:
        primary["E91NOTE"] = flat_note
    record_provenance(primary, "nres.pipeline.write_e91", fiber=star, nblock=nblock_out, block_source=source)
    images = {**planes, "WAVESPEC": lam[fs, rows], "WAVETHAR": lam[ft, rows]}
    if compress is None:
        compress = os.fspath(path).lower().endswith(".fz")
    hdus = [fits.PrimaryHDU(header=primary)]
    for name in _IMAGE_EXTS:
        arr = np.ascontiguousarray(images[name], dtype=np.float64 if name.startswith("WAVE") else np.float32)
        if compress:
            hdu = fits.CompImageHDU(arr, name=name, compression_type="GZIP_2", quantize_level=0,
                                    tile_shape=(1, nx))  # fmt: skip
        else:
            hdu = fits.ImageHDU(arr, name=name)
        if name.endswith("RAW") or name == "SPECBLAZE":
            hdu.header["BUNIT"] = ("electron", "the original wrote ADU")
        hdus.append(hdu)
    hdus.append(_ccf_hdu(rv))
    hdus.append(_block_hdu(blocks, len(orders), source, block_note))
    return write_fits_atomic(fits.HDUList(hdus), path, overwrite=overwrite)


def _block_hdu(blocks, nord, source, note):
    nblock = next(iter(blocks.values())).shape[0]
    n = nord * nblock
    k = np.arange(n, dtype=np.int32)
    cols = [
        fits.Column(name=name, format=f"{n}D", dim=f"({nord},{nblock})", array=blocks[name].reshape(1, n))
        for name in BLOCK_COLUMNS
    ]
    cols.append(fits.Column(name="BLKINDX", format=f"{n}J", array=(k // nord).reshape(1, n)))
    cols.append(fits.Column(name="ORDINDX", format=f"{n}J", array=(k % nord).reshape(1, n)))
    hdu = fits.BinTableHDU.from_columns(cols, name="RVBLOCKFIT")
    for i, name in enumerate(BLOCK_COLUMNS, start=1):
        hdu.header.comments[f"TTYPE{i}"] = BLOCK_COLUMNS[name]
    hdu.header.comments[f"TTYPE{len(BLOCK_COLUMNS) + 1}"] = "block index"
    hdu.header.comments[f"TTYPE{len(BLOCK_COLUMNS) + 2}"] = "order index"
    hdu.header["BLKSRC"] = (source, "block fit: idl, nres or none (nres)")
    hdu.header["E91NOTE"] = note  # a long string continues on CONTINUE cards
    return hdu


# ----- reader ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class E91Product:
    """An e91 file read back (:func:`read_e91`).

    Attributes
    ----------
    spectrum : EchelleSpectrum
        SPECRAW (star fiber) and THARRAW (fiber 1) with WAVESPEC/WAVETHAR, shape (2, n_order, n_x),
        fibers ``(star_fiber, 1)``, physical orders, vacuum topocentric wavelengths; exact zeros
        (the unusable pixels) are masked (flag NO_WEIGHT). Unit: ``unit``.
    flat_fielded : EchelleSpectrum
        SPECFLAT and THARFLAT, same axes (dimensionless ratio to the blaze).
    blaze_subtracted : EchelleSpectrum
        SPECBLAZE, the star fiber only (the original's RV input).
    ccf : tuple of (Quantity, ndarray) or None
        SPECXCOR: lag velocities (km/s) and CCF values.
    blocks : dict of str -> ndarray
        RVBLOCKFIT: each column as (n_block, n_order) (row j of the order axis = ``orders[j]``),
        BLKINDX/ORDINDX included (so ``ORDINDX[b, j] == j`` and ``BLKINDX[b, j] == b``).
    rv : dict
        The header's RV numbers: ``RCC``, ``AMPCC``, ``ZBLKAVG``, ``ZBLKMED``, ``ZBLKERR`` (floats),
        ``RVCC``, ``WIDCC`` (km/s), ``BJD`` (BJD_TDB, float), ``PLDP``; NaN when absent.
    header : astropy.io.fits.Header
        Primary header.
    star_fiber : int
    unit : str
        ``"electron"`` (nres) or ``"adu"`` (the original).
    path : str
    notes : tuple of str
        The files' ``E91NOTE`` cards (nres: why a part is NaN or empty).
    """

    spectrum: object
    flat_fielded: object
    blaze_subtracted: object
    ccf: tuple | None
    blocks: dict
    rv: dict
    header: fits.Header
    star_fiber: int
    unit: str
    path: str = ""
    notes: tuple = field(default_factory=tuple)

    @property
    def orders(self) -> np.ndarray:
        """Physical order m of each row."""
        return np.asarray(self.spectrum.orders)


def _open(path):
    path = Path(os.fspath(path))
    if not path.exists():
        raise InvalidInputFileError(path, "e91 file not found")
    try:
        return fits.open(path, memmap=False)
    except OSError as err:
        raise InvalidInputFileError(
            path, f"not a readable FITS file ({err}); expected an e91 product"
        ) from None


def _header_float(header, key):
    value = header.get(key, np.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # the writer's 'NaN' strings and blank values


def _orders_from_header(header, nord, path):
    text = str(header.get("ORDERS", "")).strip()
    if text:
        try:
            orders = np.array([int(w) for w in text.split(",")], dtype=np.int64)
        except ValueError:
            raise InvalidInputFileError(
                path, f"keyword ORDERS {text[:40]!r} is not a list of integers"
            ) from None
        if orders.size != nord:
            raise InvalidInputFileError(
                path, f"keyword ORDERS lists {orders.size} orders; the images have {nord}"
            )
        return orders
    return int(header.get("ORD0", ORD0)) + np.arange(nord, dtype=np.int64)


def _star_from_header(header, path):
    if "FIB0" in header:
        return 0 if int(header["FIB0"]) == 0 else 2
    if "OBJECTS" in header:
        words = str(header["OBJECTS"]).split("&")
        return 2 if words and words[0].strip().lower() == "none" else 0
    raise InvalidInputFileError(path, "missing keyword FIB0 (and OBJECTS): cannot tell the star fiber")


def read_e91(path) -> E91Product:
    """Read an e91 product of the original pipeline or of :func:`write_e91` (``.fits`` or ``.fits.fz``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    E91Product

    Raises
    ------
    InvalidInputFileError
        Missing or unreadable file, a missing HDU or keyword (named), images of different shapes,
        an RVBLOCKFIT column whose shape is not (n_block, n_order).
    """
    from ..spectrum import EchelleSpectrum

    with _open(path) as hdul:
        names = [h.name.strip().upper() for h in hdul]
        for ext in E91_EXTENSIONS:
            if ext not in names:
                raise InvalidInputFileError(
                    path, f"no {ext} HDU (an e91 file has {', '.join(E91_EXTENSIONS)})"
                )
        header = hdul[0].header.copy()
        images = {}
        for ext in _IMAGE_EXTS:
            data = hdul[ext].data
            if data is None or data.ndim != 2:
                raise InvalidInputFileError(path, f"{ext} must be a 2-D image (n_order, n_x)")
            images[ext] = np.array(data, dtype=np.float64)
        shape = images["SPECRAW"].shape
        for ext, arr in images.items():
            if arr.shape != shape:
                raise InvalidInputFileError(path, f"{ext} has shape {arr.shape}; SPECRAW has {shape}")
        xcor = hdul["SPECXCOR"]
        xcor_header = xcor.header.copy()
        ccf = None
        if xcor.data is not None and xcor.data.size:
            for key in ("CRVAL1", "CDELT1"):
                if key not in xcor.header:
                    raise InvalidInputFileError(path, f"SPECXCOR lacks keyword {key}")
            c = np.array(xcor.data, dtype=np.float64).ravel()
            crpix = float(xcor.header.get("CRPIX1", 1.0))
            v = float(xcor.header["CRVAL1"]) + (np.arange(c.size) + 1.0 - crpix) * float(
                xcor.header["CDELT1"]
            )
            ccf = (v * u.km / u.s, c)
        table = Table.read(hdul["RVBLOCKFIT"])
        block_header = hdul["RVBLOCKFIT"].header.copy()
    nord, nx = shape
    blocks = {}
    for name in (*BLOCK_COLUMNS, "BLKINDX", "ORDINDX"):
        if name not in table.colnames:
            raise InvalidInputFileError(path, f"RVBLOCKFIT lacks column {name}")
        arr = np.asarray(table[name][0])
        if arr.ndim == 1:  # BLKINDX/ORDINDX: k -> (block k div nord, order k mod nord)
            if arr.size % nord:
                raise InvalidInputFileError(
                    path, f"RVBLOCKFIT {name} has {arr.size} elements, not a multiple of {nord}"
                )
            arr = arr.reshape(arr.size // nord, nord)
        if arr.ndim != 2 or arr.shape[1] != nord:
            raise InvalidInputFileError(
                path, f"RVBLOCKFIT {name} has shape {arr.shape}; expected (n_block, {nord})"
            )
        blocks[name] = arr.astype(np.int64 if name.endswith("INDX") else np.float64)
    star = _star_from_header(header, path)
    orders = _orders_from_header(header, nord, path)
    x0 = int(header.get("NRESX0", 0))
    unit = "electron" if str(header.get("BUNIT", "")).strip().lower() in ("electron", "electrons") else "adu"
    data_unit = u.electron if unit == "electron" else u.adu

    def spectrum(exts, fibers, waves, flux_unit):
        data = np.stack([images[e] for e in exts])
        flags = np.where(data == 0.0, FLAG_DTYPE(Flag.NO_WEIGHT), FLAG_DTYPE(0)).astype(FLAG_DTYPE)
        return EchelleSpectrum(
            data * flux_unit,
            flags=flags,
            wavelength=np.stack([images[w] for w in waves]) * u.nm,
            wavelength_medium="vacuum",
            wavelength_frame="topocentric",
            orders=orders,
            fibers=fibers,
            pixel=x0 + np.arange(nx, dtype=np.float64),
            meta=header,
        )

    rv = {
        key: _header_float(header, key)
        for key in ("RCC", "AMPCC", "ZBLKAVG", "ZBLKMED", "ZBLKERR", "BJD", "PLDP")
    }
    rv["RVCC"] = _header_float(header, "RVCC") * u.km / u.s
    rv["WIDCC"] = _header_float(header, "WIDCC") * u.km / u.s
    notes = tuple(str(h["E91NOTE"]) for h in (header, xcor_header, block_header) if h.get("E91NOTE"))
    return E91Product(
        spectrum=spectrum(("SPECRAW", "THARRAW"), (star, 1), ("WAVESPEC", "WAVETHAR"), data_unit),
        flat_fielded=spectrum(
            ("SPECFLAT", "THARFLAT"), (star, 1), ("WAVESPEC", "WAVETHAR"), u.dimensionless_unscaled
        ),
        blaze_subtracted=spectrum(("SPECBLAZE",), (star,), ("WAVESPEC",), data_unit),
        ccf=ccf,
        blocks=blocks,
        rv=rv,
        header=header,
        star_fiber=star,
        unit=unit,
        path=str(path),
        notes=notes,
    )


# ----- comparison -----------------------------------------------------------------------------------------
def _as_e91(e91):
    return e91 if isinstance(e91, E91Product) else read_e91(e91)


def _as_product(product):
    from ..spectrum import EchelleSpectrum
    from .spectrum1d import read_echelle_spectrum_1d

    if isinstance(product, EchelleSpectrum):
        return product
    return read_echelle_spectrum_1d(product)


def _product_rv(spec):
    """The product's barycentric RV (m/s) from its header keyword RV, NaN if absent."""
    return _header_float(spec.meta, "RV")


def compare_e91(e91, product) -> QTable:
    """Per-order differences between an e91 file and an nres 1-D product of the same frame.

    Parameters
    ----------
    e91 : str, os.PathLike or E91Product
        An e91 file (the original's or :func:`write_e91`'s).
    product : str, os.PathLike or EchelleSpectrum
        The nres ``-1d.fits`` product (or its spectrum; its ``meta["RV"]`` is the RV in m/s).

    Returns
    -------
    QTable
        One row per fiber (the e91's star fiber and fiber 1) and order present in both: ``fiber``,
        ``order``, ``n_pixel`` (columns compared: present in both, finite, unmasked in both),
        ``dv_median`` and ``dv_max`` (median and largest-magnitude, signed, of
        ``c (lambda_e91 / lambda_product - 1)``, m/s; positive = the e91 is redder) and
        ``flux_ratio`` (median of e91 / product flux, the e91 converted from ADU to electrons with
        its GAIN when it is in ADU). ``meta``: ``rv_e91`` (RVCC), ``rv_product`` (RV),
        ``rv_difference`` (e91 - product), all m/s (NaN when either lacks an RV), and
        ``flux_unit_note``.

    Raises
    ------
    InvalidParameterError
        No (fiber, order) in common, or the product has no wavelengths.
    """
    e = _as_e91(e91)
    p = _as_product(product)
    if p.wavelength is None:
        raise InvalidParameterError("product: the spectrum has no wavelengths to compare")
    gain = 1.0
    note = "both in electrons"
    if e.unit == "adu":
        gain = _header_float(e.header, "GAIN")
        note = (
            f"e91 in ADU, converted with GAIN = {gain}"
            if np.isfinite(gain)
            else "e91 in ADU, no GAIN: ratio in ADU/e-"
        )
        gain = gain if np.isfinite(gain) else 1.0
    ex = np.asarray(e.spectrum.pixel, float)
    px = np.asarray(p.pixel, float)
    px = px if px.ndim == 1 else px[0, 0]
    common, ie, ip = np.intersect1d(ex, px, return_indices=True)
    rows = {k: [] for k in ("fiber", "order", "n_pixel", "dv_median", "dv_max", "flux_ratio")}
    lam_e, lam_p = e.spectrum.wavelength.to_value(u.nm), p.wavelength.to_value(u.nm)
    for fi, fib in enumerate(e.spectrum.fibers):
        if fib not in p.fibers:
            continue
        pf = int(np.flatnonzero(p.fibers == fib)[0])
        for oj, m in enumerate(e.spectrum.orders):
            if m not in p.orders:
                continue
            po = int(np.flatnonzero(p.orders == m)[0])
            le, lp = lam_e[fi, oj, ie], lam_p[pf, po, ip]
            fe = np.asarray(e.spectrum.data)[fi, oj, ie] * gain
            fp = np.asarray(p.data)[pf, po, ip]
            ok = np.isfinite(le) & np.isfinite(lp) & (lp > 0)
            dv = C_M_S * (le[ok] - lp[ok]) / lp[ok]
            good = ok & ~np.asarray(e.spectrum.mask)[fi, oj, ie] & ~np.asarray(p.mask)[pf, po, ip] & (fp != 0)
            rows["fiber"].append(int(fib))
            rows["order"].append(int(m))
            rows["n_pixel"].append(int(ok.sum()))
            rows["dv_median"].append(float(np.median(dv)) if dv.size else np.nan)
            rows["dv_max"].append(float(dv[np.argmax(np.abs(dv))]) if dv.size else np.nan)
            rows["flux_ratio"].append(float(np.median(fe[good] / fp[good])) if good.any() else np.nan)
    if not rows["order"]:
        msg = "compare_e91: the e91 file and the product have no (fiber, order) in common"
        raise InvalidParameterError(msg)
    table = QTable(rows)
    table["dv_median"].unit = u.m / u.s
    table["dv_max"].unit = u.m / u.s
    rv_e91 = e.rv["RVCC"].to_value(u.m / u.s)
    rv_p = _product_rv(p)
    table.meta.update(
        rv_e91=rv_e91 * u.m / u.s,
        rv_product=rv_p * u.m / u.s,
        rv_difference=(rv_e91 - rv_p) * u.m / u.s,
        flux_unit_note=note,
        n_common_columns=int(common.size),
    )
    return table
