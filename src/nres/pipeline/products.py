"""Products: atomic writing and names derived from the raw file's name.

Writing: every product goes to a temporary file in the destination's directory and is renamed
over the destination with ``os.replace`` only once complete, so a reader never sees a half-written
file and a crash leaves the previous version (or nothing) in place.

Naming (banzai-nres-xwavecal.md 2.11; idl-rv-ops.md 12.3): the raw LCO name ``<prefix>-<t>00`` with
frame-type letter ``<t>`` (e science, w lamp flat, a arc, b bias, d dark) becomes
``<prefix>-<t><RLEVEL>`` (``RLEVEL`` 92 by default as banzai-nres; the original's archive bundle is
``e91``), followed by a product suffix: ``-1d.fits``, ``-2d.fits``, ``-summary.pdf``... Master
calibrations are named ``<type>_<site>_<instrument>_<camera>_<DAY-OBS>[_<fibers>]`` like the
original's stacked calibrations.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from ..errors import InvalidInputFileError, InvalidParameterError

__all__ = [
    "atomic_path",
    "write_atomic",
    "write_fits_atomic",
    "reduced_name",
    "product_path",
    "master_calibration_name",
    "PRODUCT_SUFFIXES",
    "DEFAULT_RLEVEL",
]

#: Reduction level in product names (banzai-nres writes 92; the original's bundles are 91).
DEFAULT_RLEVEL = 92
#: Product kind -> suffix after the reduced name.
PRODUCT_SUFFIXES = {
    "1d": "-1d.fits",  # extracted, wavelength-calibrated spectrum, RV tables
    "2d": "-2d.fits.fz",  # processed 2-D frame
    "summary": "-summary.pdf",
    "summary_png": "-summary.png",
    "e91": ".fits",  # the original's 10-HDU layout (use rlevel=91)
    "qc": "-qc.json",
}
_RAW_NAME = re.compile(r"^(?P<prefix>.+-[a-z])00$")
_FITS_EXT = (".fits.fz", ".fits.gz", ".fits", ".fit", ".fz")


def _stem(name: str) -> str:
    for ext in _FITS_EXT:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def reduced_name(raw, *, rlevel: int = DEFAULT_RLEVEL) -> str:
    """The product base name of a raw file.

    Parameters
    ----------
    raw : str or os.PathLike
        Raw file (its directory is ignored), e.g. ``lscnrs01-fa09-20190405-0014-e00.fits.fz``.
    rlevel : int
        Reduction level, 0..99 (92 as banzai-nres; 91 for the original's e91 layout).

    Returns
    -------
    str
        ``lscnrs01-fa09-20190405-0014-e92``. A name not ending in ``-<letter>00`` keeps its stem and
        gets ``-r<rlevel>`` (``myframe.fits`` -> ``myframe-r92``), so products never overwrite the
        raw file.
    """
    rlevel = int(rlevel)
    if not 0 < rlevel < 100:
        raise InvalidParameterError(f"rlevel: expected 1..99, got {rlevel}")
    stem = _stem(Path(os.fspath(raw)).name)
    if not stem:
        raise InvalidParameterError(f"raw: cannot derive a product name from {raw!r}")
    match = _RAW_NAME.match(stem)
    if match:
        return f"{match['prefix']}{rlevel:02d}"
    return f"{stem}-r{rlevel:02d}"


def product_path(raw, kind: str, out_dir, *, rlevel: int = DEFAULT_RLEVEL) -> Path:
    """``out_dir / (reduced_name(raw) + PRODUCT_SUFFIXES[kind])``.

    Examples
    --------
    >>> product_path("raw/lscnrs01-fa09-20190405-0014-e00.fits.fz", "1d", "out").as_posix()
    'out/lscnrs01-fa09-20190405-0014-e92-1d.fits'
    """
    if kind not in PRODUCT_SUFFIXES:
        raise InvalidParameterError(f"kind: expected one of {', '.join(PRODUCT_SUFFIXES)}, got {kind!r}")
    return Path(os.fspath(out_dir)) / (reduced_name(raw, rlevel=rlevel) + PRODUCT_SUFFIXES[kind])


def master_calibration_name(
    obstype: str,
    *,
    site: str,
    instrument: str,
    camera: str,
    day_obs: str,
    fiber_state: str | None = None,
    suffix: str = ".fits",
) -> str:
    """Name of a master calibration, e.g. ``lampflat_lsc_nres01_fa09_20190405_110.fits``.

    ``fiber_state`` (lit fibers ``"110"``...) is appended for LAMPFLAT and DOUBLE masters, which
    exist per fiber pair; ``day_obs`` is ``YYYYMMDD`` (dashes removed).
    """
    day = str(day_obs).replace("-", "")
    if not re.fullmatch(r"\d{8}", day):
        raise InvalidParameterError(f"day_obs: expected YYYYMMDD, got {day_obs!r}")
    parts = [str(obstype).strip().lower(), str(site).lower(), str(instrument).lower(), str(camera), day]
    if fiber_state:
        if not re.fullmatch(r"[01]{3}", str(fiber_state)):
            raise InvalidParameterError(f"fiber_state: expected three 0/1 digits, got {fiber_state!r}")
        parts.append(str(fiber_state))
    return "_".join(parts) + suffix


@contextlib.contextmanager
def atomic_path(path, *, overwrite: bool = True, fsync: bool = True):
    """Context manager yielding a temporary path beside ``path``; on success it replaces ``path``.

    The temporary name ends with the destination's name (so writers that look at the extension
    behave the same) and starts with a dot. If the block raises, the temporary file is removed and
    ``path`` is untouched. The directory is created if needed.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination.
    overwrite : bool
        If False and ``path`` exists, raise :class:`~nres.errors.InvalidInputFileError` before writing.
    fsync : bool
        Flush the file to disk before the rename (a crash cannot leave an empty file behind).

    Examples
    --------
    >>> with atomic_path(tmp / "table.ecsv") as t:  # doctest: +SKIP
    ...     table.write(t)
    """
    path = Path(os.fspath(path))
    if path.exists() and not overwrite:
        raise InvalidInputFileError(path, "exists already (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{secrets.token_hex(6)}-{path.name}")
    try:
        yield tmp
        if not tmp.exists():
            raise InvalidInputFileError(path, "the writer produced no file")
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(path, data, *, overwrite: bool = True) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically; returns the path."""
    path = Path(os.fspath(path))
    with atomic_path(path, overwrite=overwrite) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(bytes(data))
    return path


def write_fits_atomic(hdul, path, *, overwrite: bool = True, checksum: bool = True) -> Path:
    """Write an ``astropy.io.fits.HDUList`` atomically (with CHECKSUM/DATASUM cards by default)."""
    path = Path(os.fspath(path))
    with atomic_path(path, overwrite=overwrite) as tmp:
        hdul.writeto(tmp, checksum=checksum)
    return path
