"""Camera facts (gain, read noise, size) from the original's ``ccds.csv``: a fallback only.

Raw NRES headers carry ``GAIN`` and ``RDNOISE``; readers use those first and call
:func:`camera_info` only when a header lacks them (e.g. synthetic data). The table's values are
the nominal ones the original pipeline used (fl* cameras: gain 1.0 e-/ADU, read noise 10 e-;
fa* Archon cameras: 3.2 e-/ADU, 7 e-).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..errors import InvalidParameterError

__all__ = ["CameraInfo", "camera_info", "known_cameras"]


@dataclass(frozen=True)
class CameraInfo:
    """Nominal facts about one NRES camera (from ``ccds.csv``).

    Attributes
    ----------
    camera : str
        Camera id (``INSTRUME``), e.g. ``"fa09"``.
    gain : float
        Gain, electrons per ADU.
    read_noise : float
        Read noise, electrons.
    nx, ny : int
        Trimmed detector size, pixels.
    pixel_size : float
        Pixel size, micrometres.
    datasec : tuple of int
        First and last used column (0-based) of the original's ``datsegmin``/``datsegmax``.
    """

    camera: str
    gain: float
    read_noise: float
    nx: int
    ny: int
    pixel_size: float
    datasec: tuple[int, int]


@lru_cache(maxsize=1)
def _table() -> dict[str, CameraInfo]:
    text = resources.files("nres.instrument").joinpath("data/ccds.csv").read_text()
    out = {}
    for row in csv.DictReader(text.splitlines(), skipinitialspace=True):
        name = row["camera"].strip().lower()
        out[name] = CameraInfo(
            camera=name,
            gain=float(row["gain"]),
            read_noise=float(row["rdnois"]),
            nx=int(row["nx"]),
            ny=int(row["ny"]),
            pixel_size=float(row["pixsiz"]),
            datasec=(int(row["datsegmin"]), int(row["datsegmax"])),
        )
    return out


def known_cameras() -> list[str]:
    """Camera ids listed in ``ccds.csv``."""
    return sorted(_table())


def camera_info(camera: str) -> CameraInfo:
    """Nominal gain, read noise and size of an NRES camera (fallback for missing header values).

    Parameters
    ----------
    camera : str
        Camera id as in the ``INSTRUME`` keyword (case-insensitive, blanks ignored), e.g. ``"fa09"``.

    Returns
    -------
    CameraInfo

    Raises
    ------
    InvalidParameterError
        The camera is not in the table; the message names it and lists the known ones.

    Examples
    --------
    >>> camera_info("fa09").gain
    3.2
    """
    key = str(camera).strip().lower()
    table = _table()
    if key not in table:
        msg = f"camera: unknown NRES camera {camera!r}; ccds.csv lists {', '.join(sorted(table))}"
        raise InvalidParameterError(msg)
    return table[key]
