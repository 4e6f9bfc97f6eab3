"""The per-site spectrograph table (``spectrographs.csv`` of the original pipeline).

One row per (site, MJD): the parameters of the physical wavelength model (``lambda3ofx``) valid
from that MJD on. :class:`~nres.instrument.PhysicalModel` builds itself from a row; this module only
reads the file. Columns (units): Site, MJD, Ord0, GrSpc (um), GrInc (deg), dGrInc (deg), FL (mm),
dFL, Y0 (mm), dY0, Z0, dZ0, Glass, Apex (deg), LamCen (um), Rot (deg), PixSiz (mm), Nx, Nord,
Nblock, Nfib, Npoly, Ordwid, Medboxsz, C0..C14 (nm), F00..F19 (pixels).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["spectrograph_table", "INTEGER_COLUMNS", "STRING_COLUMNS"]

#: Columns read as integers; every other column but :data:`STRING_COLUMNS` is float64.
INTEGER_COLUMNS = ("Ord0", "Nx", "Nord", "Nblock", "Nfib", "Npoly")
#: Columns read as (stripped) strings.
STRING_COLUMNS = ("Site", "Glass")


@lru_cache(maxsize=1)
def _columns() -> tuple[list[str], dict[str, np.ndarray]]:
    text = resources.files("nres.instrument").joinpath("data/spectrographs.csv").read_text()
    rows = list(csv.reader(text.splitlines(), skipinitialspace=True))
    names = [n.strip() for n in rows[0]]
    body = [r for r in rows[1:] if r]
    cols = {}
    for j, name in enumerate(names):
        values = [r[j].strip() for r in body]  # the file pads glass names and numbers with blanks
        if name in STRING_COLUMNS:
            cols[name] = np.array(values if name == "Glass" else [v.lower() for v in values])
        elif name in INTEGER_COLUMNS:
            cols[name] = np.array([int(float(v)) for v in values], dtype=np.int64)
        else:
            cols[name] = np.array([float(v) for v in values], dtype=np.float64)
    return names, cols


def spectrograph_table():
    """The packaged ``spectrographs.csv`` as an astropy Table (a fresh copy on every call).

    Returns
    -------
    astropy.table.Table
        One row per (site, MJD) in file order; ``Site`` lower case and ``Glass`` stripped of the
        blank padding of the original file (``"PBM2    "`` -> ``"PBM2"``).

    Examples
    --------
    >>> t = spectrograph_table()
    >>> sorted(set(t["Site"]))
    ['bpl', 'cpt', 'elp', 'lsc', 'tlv']
    """
    from astropy.table import Table

    names, cols = _columns()
    table = Table([cols[n].copy() for n in names], names=names)
    table.meta["source"] = "LCOGT/nres-pipe:csv/spectrographs.csv (commit fd1043a)"
    return table
