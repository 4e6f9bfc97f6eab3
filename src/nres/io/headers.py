"""Cheap header-only reading of raw NRES files: what a batch driver needs to classify a night.

:func:`read_raw_info` opens a raw file, reads the headers of its HDUs (never the image data) and
parses them with the same rules as :func:`nres.io.read_raw` (:meth:`RawInfo.from_header`), so a
file classified here is described exactly as the full reader would describe it. Damage inside the
image data (checksum mismatch, corrupt tiles) is only found by :func:`~nres.io.read_raw`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from astropy.io import fits

from .. import legacy as _legacy
from ..errors import InvalidInputFileError, InvalidParameterError
from .raw import _check_damage, _image_hdu
from .rawinfo import LEGACY_FUNCTION, RawInfo

__all__ = ["read_raw_info"]


def read_raw_info(path, *, target_coordinates=None, dec_sign=None, legacy=False) -> RawInfo:
    """The :class:`~nres.io.RawInfo` of a raw NRES file, from its headers only.

    Parameters
    ----------
    path : str or os.PathLike
        A raw ``.fits`` or ``.fits.fz`` file (opened read-only).
    target_coordinates, dec_sign, legacy
        The legacy options of :func:`nres.io.read_raw`.

    Returns
    -------
    RawInfo
        obstype, site, instrument, camera, dates, fibers, targets...

    Raises
    ------
    InvalidInputFileError
        Missing, not FITS, truncated headers, no SPECTRUM image, a missing or malformed keyword or
        an unknown OBSTYPE; the message names the file.
    """
    try:
        path = Path(os.fspath(path))
    except TypeError:
        msg = f"path: expected a str or os.PathLike naming a FITS file, got {type(path).__name__}"
        raise InvalidParameterError(msg) from None
    options = {"target_coordinates": target_coordinates, "dec_sign": dec_sign, "legacy": legacy}
    _legacy.resolve(LEGACY_FUNCTION, legacy, target_coordinates=target_coordinates, dec_sign=dec_sign)
    if not path.is_file():
        raise InvalidInputFileError(
            path, "file does not exist" if not path.exists() else "is not a regular file"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=False)
        except Exception as err:  # astropy raises OSError, ValueError, TypeError... for non-FITS bytes
            raise InvalidInputFileError(path, f"not a readable FITS file ({err})") from None
        try:
            _check_damage(path, caught)
            _, header = _image_hdu(path, hdul)
            telescopes = {n: hdul[f"TELESCOPE_{n}"].header for n in (1, 2) if f"TELESCOPE_{n}" in hdul}
            info = RawInfo.from_header(header, telescopes=telescopes, path=path, **options)
        finally:
            hdul.close()
    for w in caught:  # pass on anything else (non-standard cards, nres' own warnings)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return info
