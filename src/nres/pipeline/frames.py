"""2-D products: processed frames and master calibrations on disk, and the per-flat calibration file.

Layout of a 2-D product (``-2d.fits.fz`` of a raw frame, or a master ``bias_...fits``): an empty
primary HDU carrying the header (OBSTYPE, INSTRUME, OBJECTS, EXPTIME, BUNIT, window origin,
provenance), then image extensions (losslessly GZIP tile-compressed for a ``.fz`` path, plain
otherwise, so masters are read memory-mapped) ``SCI`` (float32, electrons or
electrons/s), ``UNCERT`` (variance, ``UTYPE = 'VarianceUncertainty'``), ``MASK`` (uint8) and
``FLAGS`` (uint16 bits of :class:`nres.flags.Flag`), and for masters ``NGOOD`` (int16, inputs that
survived the stack per pixel). :func:`nres.calib.stack` reads this layout in row slabs.

The *trace file* of a lamp flat (``-trace.fits``) holds what later frames need from it: the traces
(``TRACES`` table, :meth:`nres.traces.Traces.to_table`), the cross-dispersion profiles
(``PROFILES`` image (fiber, order, block, dy) with ``PROFFIB``/``PROFORD``/``PROFBLK``/``PROFDY``
vectors) and the extracted blaze (``BLAZE`` table: one row per (fiber, order)).
"""

from __future__ import annotations

import os
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.table import Table

from ..errors import InvalidInputFileError
from ..flags import FLAG_DTYPE, flags_to_mask
from .products import write_fits_atomic

__all__ = [
    "write_frame",
    "read_frame",
    "read_master",
    "write_trace_file",
    "read_trace_file",
    "profiles_to_hdus",
    "profiles_from_hdus",
]

_IMAGE_EXT = ("SCI", "UNCERT", "MASK", "FLAGS", "NGOOD")


def _image(data, name, dtype, compress):
    arr = np.ascontiguousarray(np.asarray(data).astype(dtype, copy=False))
    if not compress:
        return fits.ImageHDU(arr, name=name)
    if arr.dtype.kind == "f":
        # quantize_level 0: lossless compression of the float32 values (no quantisation noise)
        return fits.CompImageHDU(arr, name=name, compression_type="GZIP_2", quantize_level=0.0)
    return fits.CompImageHDU(arr, name=name, compression_type="GZIP_2")


_SKIP = (
    "SIMPLE",
    "EXTEND",
    "XTENSION",
    "PCOUNT",
    "GCOUNT",
    "BZERO",
    "BSCALE",
    "BUNIT",
    "CHECKSUM",
    "DATASUM",
)


def _clean_header(meta) -> fits.Header:
    """A header of the scalar cards of ``meta`` (Header or dict), without layout keywords.

    Non-scalar entries (tables a step leaves in ``meta``, such as ``EXTRACTION``) are dropped: they
    are written as tables of their own where they matter.
    """
    header = fits.Header()
    if meta is None:
        return header
    items = meta.cards if isinstance(meta, fits.Header) else meta.items()
    for item in items:
        key, value, comment = (item.keyword, item.value, item.comment) if isinstance(meta, fits.Header) else (
            str(item[0]), item[1], "")  # fmt: skip
        if key in ("", "COMMENT", "HISTORY") or key.startswith(("NAXIS", "BITPIX", "ZIMAGE", "ZBITPIX")):
            continue
        if key in _SKIP or key.startswith(("ZNAXIS", "ZTILE", "ZCMPTYPE", "ZQUANT", "ZNAME", "ZVAL")):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, bool | int | float | str):
            continue
        if isinstance(value, float) and not np.isfinite(value):
            value = str(value)
        card_key = key if len(key) <= 8 and " " not in key else f"HIERARCH {key.removeprefix('HIERARCH ')}"
        try:
            header.append(fits.Card(card_key, value, comment), end=True)
        except (ValueError, fits.VerifyError):
            continue  # a value FITS cannot hold (e.g. a too-long string) is left out
    return header


def write_frame(frame: CCDData, path, *, ngood=None, overwrite: bool = True, compress=None) -> Path:
    """Write a processed frame or master calibration atomically in the 2-D product layout.

    Parameters
    ----------
    frame : astropy.nddata.CCDData
        Data (ny, nx) with ``VarianceUncertainty``, ``mask`` and optional ``flags`` (uint16).
    path : str or os.PathLike
        Destination (``.fits`` or ``.fits.fz``).
    ngood : ndarray (ny, nx), optional
        Per-pixel count of stacked inputs kept (masters), written as the ``NGOOD`` extension.
    overwrite : bool
        Replace an existing file.
    compress : bool or None
        Tile-compress (lossless GZIP) the extensions; default: only for a ``.fz`` path. Plain
        float32 images (masters are ``.fits``) write ~10x faster and are read memory-mapped.

    Returns
    -------
    pathlib.Path
    """
    if compress is None:
        compress = Path(os.fspath(path)).suffix == ".fz"
    header = _clean_header(frame.meta)
    header["BUNIT"] = str(frame.unit) if frame.unit is not None else "electron"
    hdus = [fits.PrimaryHDU(header=header), _image(frame.data, "SCI", np.float32, compress)]
    if frame.uncertainty is not None:
        unc = frame.uncertainty
        if not isinstance(unc, VarianceUncertainty):
            unc = unc.represent_as(VarianceUncertainty)
        hdu = _image(unc.array, "UNCERT", np.float32, compress)
        hdu.header["UTYPE"] = "VarianceUncertainty"
        hdus.append(hdu)
    mask = np.zeros(frame.shape, bool) if frame.mask is None else np.asarray(frame.mask, bool)
    hdus.append(_image(mask, "MASK", np.uint8, compress))
    flags = getattr(frame, "flags", None)
    if flags is not None:
        hdus.append(_image(flags, "FLAGS", FLAG_DTYPE, compress))
    if ngood is not None:
        hdus.append(_image(ngood, "NGOOD", np.int16, compress))
    return write_fits_atomic(fits.HDUList(hdus), path, overwrite=overwrite)


def read_frame(path, *, with_ngood: bool = False):
    """Read a 2-D product written by :func:`write_frame`.

    Returns
    -------
    CCDData or (CCDData, ndarray or None)
        float64 data with ``VarianceUncertainty``, ``mask`` and ``flags``; with ``with_ngood`` also
        the NGOOD plane (None when absent).
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise InvalidInputFileError(path, "2-D product not found")
    try:
        # memory-mapped: plain images are converted straight from the page cache (compressed
        # extensions are decompressed either way); memmap=None, not True: the uint16 FLAGS plane
        # (BZERO-scaled) is then read normally instead of raising
        with fits.open(path, memmap=None) as hdul:
            names = {h.name.upper(): h for h in hdul}
            if "SCI" not in names:
                raise InvalidInputFileError(path, "no SCI extension (not an nres 2-D product)")
            header = hdul[0].header.copy()
            data = np.asarray(names["SCI"].data, dtype=np.float64)
            var = None if "UNCERT" not in names else np.asarray(names["UNCERT"].data, dtype=np.float64)
            flags = None if "FLAGS" not in names else np.array(names["FLAGS"].data, dtype=FLAG_DTYPE)
            mask = None if "MASK" not in names else np.asarray(names["MASK"].data) != 0
            ngood = None if "NGOOD" not in names else np.array(names["NGOOD"].data, dtype=np.int16)
    except OSError as err:
        raise InvalidInputFileError(path, f"not a readable FITS file ({err})") from None
    if flags is not None:
        mask = flags_to_mask(flags) if mask is None else (mask | flags_to_mask(flags))
    unit = u.Unit(header.get("BUNIT", "electron"))
    frame = CCDData(
        data,
        unit=unit,
        uncertainty=None if var is None else VarianceUncertainty(var),
        mask=mask,
        meta=header,
    )
    if flags is not None:
        frame.flags = flags
    return (frame, ngood) if with_ngood else frame


#: (path, mtime_ns, size) -> CCDData of :func:`read_master`, most recent last
_MASTER_CACHE: dict = {}
MASTER_CACHE_SIZE = 4


def read_master(path):
    """:func:`read_frame` of a master calibration, cached per process by path, mtime and size.

    Every TARGET of a night uses the same few masters: a worker reads each once. The cached
    frame's arrays are made read-only (a step that modified its input in place would otherwise
    corrupt every later frame; it raises instead). At most :data:`MASTER_CACHE_SIZE` masters are
    kept (a full-size master is ~0.4 GB as float64).

    Returns
    -------
    CCDData
        Shared between calls: do not modify.
    """
    path = Path(os.fspath(path))
    try:
        st = path.stat()
    except OSError:
        raise InvalidInputFileError(path, "2-D product not found") from None
    key = (os.fspath(path.resolve()), st.st_mtime_ns, st.st_size)
    frame = _MASTER_CACHE.pop(key, None)
    if frame is None:
        frame = read_frame(path)
        for arr in (frame.data, frame.mask, getattr(frame, "flags", None)):
            if arr is not None:
                arr.flags.writeable = False
        if frame.uncertainty is not None:
            frame.uncertainty.array.flags.writeable = False
    _MASTER_CACHE[key] = frame
    while len(_MASTER_CACHE) > MASTER_CACHE_SIZE:
        _MASTER_CACHE.pop(next(iter(_MASTER_CACHE)))
    return frame


def profiles_to_hdus(profiles) -> list:
    """``PROFILES`` image plus its axis vectors as HDUs."""
    hdu = fits.ImageHDU(np.asarray(profiles.data, np.float64), name="PROFILES")
    hdu.header["INTERP"] = profiles.interpolation
    hdu.header["BLKWIDTH"] = float(profiles.block_width)
    axes = [
        fits.ImageHDU(np.asarray(profiles.fibers, np.int64), name="PROFFIB"),
        fits.ImageHDU(np.asarray(profiles.orders, np.int64), name="PROFORD"),
        fits.ImageHDU(np.asarray(profiles.block_x, np.float64), name="PROFBLK"),
        fits.ImageHDU(np.asarray(profiles.dy, np.float64), name="PROFDY"),
    ]
    return [hdu, *axes]


def profiles_from_hdus(hdul):
    """:class:`nres.extract.Profiles` from the HDUs of :func:`profiles_to_hdus`."""
    from ..extract import Profiles

    hdu = hdul["PROFILES"]
    return Profiles(
        data=np.asarray(hdu.data, np.float64),
        fibers=np.asarray(hdul["PROFFIB"].data),
        orders=np.asarray(hdul["PROFORD"].data),
        block_x=np.asarray(hdul["PROFBLK"].data, np.float64),
        dy=np.asarray(hdul["PROFDY"].data, np.float64),
        interpolation=str(hdu.header.get("INTERP", "linear")),
        block_width=float(hdu.header.get("BLKWIDTH", 342.0)),
    )


def _blaze_table(blaze) -> Table:
    rows = Table()
    fib, order = np.meshgrid(blaze.fibers, blaze.orders, indexing="ij")
    n = fib.size
    npix = blaze.shape[-1]
    rows["fiber"] = fib.ravel()
    rows["order"] = order.ravel()
    rows["pixel"] = np.broadcast_to(blaze.pixel, blaze.shape).reshape(n, npix)
    rows["blaze"] = np.asarray(blaze.data, np.float64).reshape(n, npix)
    var = blaze.variance if blaze.variance is not None else np.full(blaze.shape, np.nan)
    rows["blaze_variance"] = np.asarray(var, np.float64).reshape(n, npix)
    rows["flags"] = np.asarray(blaze.flags).reshape(n, npix)
    return rows


def _blaze_from_table(table: Table, meta):
    from ..spectrum import EchelleSpectrum

    fibers = np.unique(np.asarray(table["fiber"]))
    orders = np.unique(np.asarray(table["order"]))
    npix = np.asarray(table["blaze"]).shape[1]
    shape = (fibers.size, orders.size, npix)
    data = np.full(shape, np.nan)
    var = np.full(shape, np.nan)
    flags = np.zeros(shape, FLAG_DTYPE)
    pixel = np.asarray(table["pixel"][0], np.float64)
    for row in table:
        i = int(np.searchsorted(fibers, row["fiber"]))
        j = int(np.searchsorted(orders, row["order"]))
        data[i, j] = row["blaze"]
        var[i, j] = row["blaze_variance"]
        flags[i, j] = row["flags"]
    return EchelleSpectrum(
        data,
        uncertainty=VarianceUncertainty(var),
        flags=flags,
        blaze=data,
        orders=orders,
        fibers=fibers,
        pixel=pixel,
        meta=meta,
    )


def write_trace_file(path, traces, profiles, blaze, *, header=None, overwrite: bool = True) -> Path:
    """Write traces, profiles and blaze of a lamp flat (or master flat) to one FITS file."""
    primary = fits.PrimaryHDU(header=_clean_header(header))
    primary.header["NRESPROD"] = ("TRACE", "nres product: traces, profiles, blaze")
    hdus = [primary, fits.BinTableHDU(traces.to_table(), name="TRACES")]
    hdus += profiles_to_hdus(profiles)
    hdus.append(fits.BinTableHDU(_blaze_table(blaze), name="BLAZE"))
    return write_fits_atomic(fits.HDUList(hdus), path, overwrite=overwrite)


def read_trace_file(path):
    """``(traces, profiles, blaze, header)`` from a file of :func:`write_trace_file`."""
    from ..traces import Traces

    path = Path(os.fspath(path))
    if not path.exists():
        raise InvalidInputFileError(path, "trace file not found")
    try:
        with fits.open(path, memmap=False) as hdul:
            names = {h.name.upper() for h in hdul}
            missing = {"TRACES", "PROFILES", "BLAZE"} - names
            if missing:
                raise InvalidInputFileError(path, f"missing extension(s) {sorted(missing)} of a trace file")
            header = hdul[0].header.copy()
            traces = Traces.from_table(Table.read(hdul["TRACES"]))
            profiles = profiles_from_hdus(hdul)
            blaze = _blaze_from_table(Table.read(hdul["BLAZE"]), header)
    except OSError as err:
        raise InvalidInputFileError(path, f"not a readable FITS file ({err})") from None
    return traces, profiles, blaze, header
