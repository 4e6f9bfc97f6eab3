"""Reading raw NRES composite data products (``.fits`` and fpacked ``.fits.fz``) into ``RawFrame``.

A raw NRES file holds the CCD image (extension SPECTRUM, tile-compressed in ``.fits.fz`` files;
4160 x 4108 pixels with overscan) and the side tables EXPOSURE_METER, AGU_1, AGU_2 (binary tables)
and TELESCOPE_1, TELESCOPE_2 (header-only extensions describing what each telescope fed into
fibers 0 and 2). :func:`read_raw` opens the file read-only, checks it (checksums when present,
truncation, image shape against the header's sections) and returns everything as a frozen
:class:`RawFrame`. Every problem raises :class:`~nres.errors.InvalidInputFileError` (an
``OSError``) naming the file and what was wrong.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table
from astropy.units import UnitsWarning

from .. import legacy as _legacy
from ..errors import InvalidInputFileError, InvalidParameterError
from ..window import DETECTOR_SHAPE, window_origin
from .rawinfo import LEGACY_FUNCTION, RawInfo
from .sections import parse_section

__all__ = ["RawFrame", "read_raw", "TABLE_EXTENSIONS", "IMAGE_EXTENSION"]

#: Name of the image extension.
IMAGE_EXTENSION = "SPECTRUM"
#: Side extensions kept in :attr:`RawFrame.tables` when present.
TABLE_EXTENSIONS = ("EXPOSURE_METER", "AGU_1", "AGU_2", "TELESCOPE_1", "TELESCOPE_2")

#: Cards that describe an HDU's layout rather than the observation; dropped from ``meta`` so that
#: writing the frame later (as float32, another shape) cannot pick up stale scaling or sizes.
_STRUCTURAL = {
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "BZERO", "BSCALE",
    "BLANK", "CHECKSUM", "DATASUM", "EXTNAME", "EXTVER", "EXTLEVEL", "INHERIT", "TFIELDS", "THEAP",
}  # fmt: skip
_STRUCTURAL_PREFIXES = ("NAXIS", "TTYPE", "TFORM", "TUNIT", "TDIM", "TNULL", "TSCAL", "TZERO", "TDISP")
_COMPRESSION = {"ZIMAGE", "ZBITPIX", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0", "ZBLANK", "ZSIMPLE", "ZTENSION",
                "ZEXTEND", "ZPCOUNT", "ZGCOUNT", "ZHECKSUM", "ZDATASUM", "ZBLOCKED"}  # fmt: skip
#: Warning texts with which astropy reports a damaged file (it warns instead of raising).
_DAMAGE = ("truncated", "corrupt", "checksum verification failed", "datasum verification failed",
           "error validating header", "unexpected bytes trailing")  # fmt: skip


@dataclass(frozen=True, eq=False)
class RawFrame:
    """One raw NRES frame, as read from disk.

    Attributes
    ----------
    frame : astropy.nddata.CCDData
        The SPECTRUM image in ADU (``unit='adu'``), shape (ny, nx) = (4108, 4160) for a full
        frame, overscan included, numpy axis order (y, x). ``data`` keeps the file's values
        exactly: the file's integer dtype (uint16 for NRES cameras) in native byte order; a
        floating-point image keeps its float dtype. ``meta`` is the full header (primary and
        SPECTRUM headers merged, SPECTRUM cards winning) without the HDU-layout cards (BITPIX,
        NAXISn, BZERO, BSCALE, CHECKSUM, ...). No uncertainty or mask: raw data have none yet.
    tables : dict of str -> astropy.table.Table
        EXPOSURE_METER, AGU_1, AGU_2, TELESCOPE_1, TELESCOPE_2 when present. Binary tables keep
        their columns and their header in ``.meta``; header-only extensions (TELESCOPE_1/2 in
        real files) are zero-length tables whose ``.meta`` is that header.
    info : RawInfo
        The validated header facts (obstype, site, detector values, fibers, targets...).
    path : pathlib.Path
        The file read.
    """

    frame: CCDData
    tables: dict
    info: RawInfo
    path: Path


def read_raw(
    path, *, verify_checksum: bool = True, target_coordinates=None, dec_sign=None, legacy=False
) -> RawFrame:
    """Read a raw NRES composite data product.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.fits`` or fpacked ``.fits.fz`` file. It is opened read-only and never modified.
    verify_checksum : bool, optional
        Verify CHECKSUM/DATASUM cards where the file has them (default True): a mismatch means
        corrupt data (bit flips in compressed tiles can decode silently to wrong values). Set
        False only for a file whose header was edited without updating its checksums.
    target_coordinates : {"catalog", "pointing"}, optional
        Legacy option: position of the target records, see :meth:`RawInfo.from_header`.
    dec_sign : {"kept", "idl"}, optional
        Legacy option: ``"idl"`` loses the sign of ``-00:MM:SS`` declinations like the original.
    legacy : bool, optional
        Shorthand for the original's behaviour of both legacy options (explicit values win).

    Returns
    -------
    RawFrame
        ``.frame`` (CCDData of SPECTRUM in ADU), ``.tables``, ``.info`` (:class:`RawInfo`), ``.path``.

    Raises
    ------
    InvalidInputFileError
        The file does not exist, is not FITS, is truncated or corrupt (checksum mismatch, broken
        compressed data), has no (or an empty) SPECTRUM image, the image's shape disagrees with
        DETSIZE or does not contain BIASSEC/TRIMSEC (a windowed frame, with a window origin
        NRESY0/NRESX0, is checked against its sections and must lie inside the detector), or a
        header keyword is missing or malformed (unknown OBSTYPE, unparseable OBJECTS...).
        The message names the file and the problem.

    Examples
    --------
    >>> raw = read_raw("lscnrs01-fa09-20180501-0042-e00.fits.fz")  # doctest: +SKIP
    >>> raw.info.obstype, raw.info.science_fiber, raw.frame.shape  # doctest: +SKIP
    ('TARGET', 0, (4108, 4160))
    """
    try:
        path = Path(os.fspath(path))
    except TypeError:
        msg = f"path: expected a str or os.PathLike naming a FITS file, got {type(path).__name__}"
        raise InvalidParameterError(msg) from None
    _legacy.resolve(LEGACY_FUNCTION, legacy, target_coordinates=target_coordinates, dec_sign=dec_sign)
    if not path.exists():
        raise InvalidInputFileError(path, "file does not exist")
    if not path.is_file():
        raise InvalidInputFileError(path, "is not a regular file (expected a .fits or .fits.fz file)")
    with warnings.catch_warnings(record=True) as caught:
        # astropy reports truncation and checksum failures as warnings: collect them, decide here
        warnings.simplefilter("always")
        options = {"target_coordinates": target_coordinates, "dec_sign": dec_sign, "legacy": legacy}
        raw = _read(path, caught, verify_checksum=bool(verify_checksum), options=options)
    for w in caught:  # pass on anything else (non-standard cards, nres' own warnings)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return raw


def _read(path: Path, caught: list, *, verify_checksum: bool, options: dict) -> RawFrame:
    try:
        hdul = fits.open(path, mode="readonly", memmap=False, checksum=verify_checksum, lazy_load_hdus=False)
    except Exception as err:  # astropy raises OSError, ValueError, TypeError... for non-FITS bytes
        raise InvalidInputFileError(path, f"not a readable FITS file ({err})") from None
    try:
        _check_damage(path, caught)
        hdu, header = _image_hdu(path, hdul)
        telescopes = {n: hdul[f"TELESCOPE_{n}"].header for n in (1, 2) if f"TELESCOPE_{n}" in hdul}
        info = RawInfo.from_header(header, telescopes=telescopes, path=path, **options)
        data = _image_data(path, hdu, caught)
        _check_shape(path, data.shape, header)
        tables = {name: _table(path, hdul[name]) for name in TABLE_EXTENSIONS if name in hdul}
    finally:
        hdul.close()
    frame = CCDData(data, unit="adu", meta=header)
    return RawFrame(frame=frame, tables=tables, info=info, path=path)


def _check_damage(path, caught):
    for w in list(caught):
        text = str(w.message)
        if any(token in text.lower() for token in _DAMAGE):
            caught.remove(w)
            raise InvalidInputFileError(path, f"truncated or corrupt FITS file: {' '.join(text.split())}")


def _is_image(hdu) -> bool:
    return isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU)


def _is_layout(key: str) -> bool:
    # HDU layout and tile-compression bookkeeping (ZIMAGE, ZBITPIX, ZNAXISn, ZTILEn, ZNAMEn, ZVALn...)
    return (
        key in _STRUCTURAL
        or key.startswith(_STRUCTURAL_PREFIXES)
        or key in _COMPRESSION
        or key.startswith(("ZNAXIS", "ZTILE", "ZNAME", "ZVAL"))
    )


def _clean(header) -> fits.Header:
    out = fits.Header()
    for card in header.cards:
        if not _is_layout(card.keyword):
            out.append(card, end=True)
    return out


def _image_hdu(path, hdul):
    """The SPECTRUM HDU (by EXTNAME, else the first image HDU with data) and the merged header."""
    named = [hdu for hdu in hdul if hdu.name.upper() == IMAGE_EXTENSION]
    if named:
        hdu = named[0]
        if not _is_image(hdu):
            raise InvalidInputFileError(path, f"extension {IMAGE_EXTENSION} is not an image HDU")
        if hdu.header.get("NAXIS", 0) == 0:
            raise InvalidInputFileError(path, f"extension {IMAGE_EXTENSION} is empty (NAXIS = 0, no image)")
    else:
        images = [hdu for hdu in hdul if _is_image(hdu) and hdu.header.get("NAXIS", 0) > 0]
        if not images:
            raise InvalidInputFileError(
                path, f"no {IMAGE_EXTENSION} extension and no image HDU with data (not an NRES raw frame)"
            )
        hdu = images[0]
    header = _clean(hdul[0].header) if hdu is not hdul[0] else fits.Header()
    # the image's own cards win; COMMENT/HISTORY cards are appended
    header.extend(_clean(hdu.header), strip=False, update=True)
    return hdu, header


def _image_data(path, hdu, caught) -> np.ndarray:
    try:
        data = hdu.data
    except Exception as err:  # cfitsio decompression errors, short reads of plain files
        problem = f"corrupt or truncated {IMAGE_EXTENSION} image data ({err})"
        raise InvalidInputFileError(path, problem) from None
    _check_damage(path, caught)
    if data is None or data.size == 0:
        raise InvalidInputFileError(path, f"extension {IMAGE_EXTENSION} is empty (no image data)")
    if data.ndim != 2:
        raise InvalidInputFileError(path, f"{IMAGE_EXTENSION} must be a 2-D image, got shape {data.shape}")
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))  # values unchanged, only byte order
    return np.ascontiguousarray(data)


def _check_shape(path, shape, header):
    ny, nx = shape
    for key in ("BIASSEC", "TRIMSEC", "DATASEC"):
        text = header.get(key)
        if not isinstance(text, str) or text.strip().upper() in ("", "N/A", "UNKNOWN"):
            continue
        try:
            ys, xs = parse_section(text, name=key)
        except InvalidParameterError as err:
            raise InvalidInputFileError(path, str(err)) from None
        if ys.stop > ny or xs.stop > nx:
            raise InvalidInputFileError(
                path, f"wrong image shape: {IMAGE_EXTENSION} is {ny} x {nx} (ny x nx) but {key} = {text} "
                f"needs at least {ys.stop} x {xs.stop}"
            )  # fmt: skip
    if "NRESY0" in header or "NRESX0" in header:
        _check_window(path, shape, header)
        return  # a window of the detector: DETSIZE describes the whole detector, not this image
    detsize = header.get("DETSIZE")
    if isinstance(detsize, str) and detsize.strip().startswith("["):
        try:
            ys, xs = parse_section(detsize, name="DETSIZE")
        except InvalidParameterError as err:
            raise InvalidInputFileError(path, str(err)) from None
        bx, by = _binning(path, header)
        expected = (-(-(ys.stop - ys.start) // by), -(-(xs.stop - xs.start) // bx))
        if (ny, nx) != expected:
            raise InvalidInputFileError(
                path, f"wrong image shape: {IMAGE_EXTENSION} is {ny} x {nx} (ny x nx) but DETSIZE = "
                f"{detsize} with CCDSUM {header.get('CCDSUM', '1 1')!r} means {expected[0]} x {expected[1]}"
            )  # fmt: skip


def _check_window(path, shape, header):
    """A windowed raw frame (``nres.window`` origin NRESY0/NRESX0): its TRIMSEC region, placed at
    the origin, must lie inside the trimmed 4096 x 4096 detector."""
    try:
        y0, x0 = window_origin(header)
    except InvalidParameterError as err:
        raise InvalidInputFileError(path, str(err)) from None
    trim = header.get("TRIMSEC") or header.get("DATASEC")
    try:
        ys, xs = parse_section(trim, name="TRIMSEC")
    except InvalidParameterError as err:
        raise InvalidInputFileError(path, str(err)) from None
    ny, nx = ys.stop - ys.start, xs.stop - xs.start
    if y0 < 0 or x0 < 0 or y0 + ny > DETECTOR_SHAPE[0] or x0 + nx > DETECTOR_SHAPE[1]:
        raise InvalidInputFileError(
            path, f"window origin (NRESY0, NRESX0) = ({y0}, {x0}) with TRIMSEC {trim} ({ny} x {nx}) "
            f"is not inside the {DETECTOR_SHAPE[0]} x {DETECTOR_SHAPE[1]} trimmed detector"
        )  # fmt: skip


def _binning(path, header) -> tuple[int, int]:
    text = header.get("CCDSUM", "1 1")
    try:
        bx, by = (int(v) for v in str(text).split())
    except ValueError:
        raise InvalidInputFileError(path, f"CCDSUM {text!r} is not two binning factors 'bx by'") from None
    if bx < 1 or by < 1:
        raise InvalidInputFileError(path, f"CCDSUM {text!r}: binning factors must be >= 1")
    return bx, by


def _table(path, hdu) -> Table:
    if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
        try:
            with warnings.catch_warnings():
                # column units of the LCO tables are free text; unparseable ones stay strings
                warnings.simplefilter("ignore", category=UnitsWarning)
                table = Table.read(hdu)
        except Exception as err:
            raise InvalidInputFileError(path, f"cannot read table extension {hdu.name} ({err})") from None
        return table
    # header-only extension (TELESCOPE_1/2): an empty table carrying the header as meta
    skip = ("", "COMMENT", "HISTORY")
    return Table(meta={c.keyword: c.value for c in _clean(hdu.header).cards if c.keyword not in skip})
