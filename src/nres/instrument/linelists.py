"""ThAr line lists: the Redman list of the original pipeline and the ESO atlas of BANZAI-NRES.

Both are packaged in ``instrument/data`` (sources in ``DATA_SOURCES``):

``"redman"`` (default)
    Vacuum Ritz wavelengths of Th and Ar from Redman, Nave & Sansonetti (2014, ApJS 211, 4),
    table 6, as selected by the IDL pipeline (``arc_ThAr_Redman.txt``: 1734 lines, 380.4-869.4 nm,
    with brightness and wavelength uncertainty; two rows are exact repeats, dropped by default).
``"eso"``
    The ESO UVES ThAr atlas (2455 lines, 277-1099 nm) as put in vacuum by BANZAI-NRES with the
    Edlen (1966) formula (``ThAr_atlas_ESO_vacuum.txt``); no intensities.

The ESO atlas is bluer than Redman by a median -17 m/s on the ~1150 lines they share, varying with
wavelength from about -22 m/s (500-600 nm) to -9 m/s (700-900 nm): see
``docs/linelists_and_traces.md`` and :func:`match_lines` / :func:`offset_by_band`.
"""

from __future__ import annotations

import functools
from importlib import resources

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..doppler import C_M_S
from ..errors import InvalidParameterError
from ..legacy import register, resolve
from .airvac import FORMULAS, vacuum_to_air

__all__ = ["LINE_LISTS", "thar_lines", "match_lines", "offset_by_band"]

#: Packaged ThAr lists: name -> (file, description, reference).
LINE_LISTS = {
    "redman": (
        "arc_ThAr_Redman.txt",
        "ThAr vacuum Ritz wavelengths selected by the NRES IDL pipeline",
        "Redman, Nave & Sansonetti 2014, ApJS 211, 4 (table 6); LCOGT/nres-pipe config/arc_ThAr_Redman.txt",
    ),
    "eso": (
        "ThAr_atlas_ESO_vacuum.txt",
        "ESO UVES ThAr atlas, converted to vacuum (Edlen 1966) by BANZAI-NRES",
        "ESO UVES ThAr atlas; LCOGT/banzai-nres banzai_nres/data/ThAr_atlas_ESO_vacuum.txt",
    ),
}


register(
    "thar_lines",
    "duplicates",
    choices=("drop", "keep"),
    default="drop",
    legacy="keep",
    reference="idl-wavecal.md 11",
    summary="arc_ThAr_Redman.txt lists 543.566187 and 696.423219 nm twice; the original used both copies",
)


def _data_path(filename):
    return resources.files("nres.instrument") / "data" / filename


@functools.cache
def _load(name) -> QTable:
    """Parse a packaged list once (vacuum, nm, sorted by wavelength)."""
    filename, description, reference = LINE_LISTS[name]
    with resources.as_file(_data_path(filename)) as path:
        if name == "redman":
            # 2 header lines, then: lambda (nm, vacuum), brightness, uncertainty (nm)
            raw = np.loadtxt(path, skiprows=2, ndmin=2)
            wavelength, intensity, sigma = raw[:, 0], raw[:, 1], raw[:, 2]
            ids = np.arange(1, raw.shape[0] + 1)
        else:
            # "index wavelength" with wavelength in vacuum Angstrom
            raw = np.loadtxt(path, ndmin=2)
            ids = raw[:, 0].astype(np.int64)
            wavelength = raw[:, 1] / 10.0
            intensity = np.full(raw.shape[0], np.nan)
            sigma = np.full(raw.shape[0], np.nan)
    order = np.argsort(wavelength, kind="stable")  # the Redman file has two lines out of order
    table = QTable()
    table["wavelength"] = wavelength[order] * u.nm
    table["intensity"] = intensity[order]
    table["wavelength_uncertainty"] = sigma[order] * u.nm
    table["id"] = ids[order]
    table.meta.update(
        name=name, wavelength_medium="vacuum", description=description, reference=reference, file=filename
    )
    return table


def thar_lines(
    name="redman", *, medium="vacuum", formula="edlen1966", duplicates=None, legacy=False
) -> QTable:
    """A packaged ThAr line list.

    Parameters
    ----------
    name : {"redman", "eso"}
        Which list (see the module docstring).
    medium : {"vacuum", "air"}
        Medium of the returned wavelengths. The lists are vacuum; ``"air"`` converts them with
        :func:`nres.instrument.vacuum_to_air`.
    formula : {"edlen1966", "ciddor1996"}
        Air dispersion formula used when ``medium="air"`` (Edlen 1966 gives back the original ESO
        air atlas to 5e-7 A).
    duplicates : {"drop", "keep"}, optional
        Rows repeating an earlier line's exact wavelength (two in the Redman file) are dropped by
        default; ``"keep"`` returns them, as the original pipeline used them (legacy).
    legacy : bool
        Shorthand for all legacy options (``duplicates="keep"``).

    Returns
    -------
    QTable, one row per line, sorted by wavelength
        ``wavelength`` (Quantity, nm), ``intensity`` (relative brightness; NaN where the list has
        none, i.e. for ESO), ``wavelength_uncertainty`` (Quantity, nm; NaN where unknown), ``id``
        (line number in the original file). ``meta`` holds ``name``, ``wavelength_medium``,
        ``reference`` and, for air, ``air_formula``. Neither list carries species. A fresh copy
        on every call.
    """
    if name not in LINE_LISTS:
        msg = f"thar_lines: name={name!r} is not a packaged list; expected one of {sorted(LINE_LISTS)}"
        raise InvalidParameterError(msg)
    if medium not in ("vacuum", "air"):
        msg = f"thar_lines: medium={medium!r}; expected 'vacuum' or 'air'"
        raise InvalidParameterError(msg)
    if formula not in FORMULAS:
        msg = f"thar_lines: formula={formula!r}; expected one of {FORMULAS}"
        raise InvalidParameterError(msg)
    opts = resolve("thar_lines", legacy, duplicates=duplicates)
    table = _load(name).copy(copy_data=True)
    if opts["duplicates"] == "drop":
        lam = table["wavelength"].to_value(u.nm)
        repeat = np.concatenate([[False], np.diff(lam) == 0.0])  # the table is sorted
        table = table[~repeat]
    if medium == "air":
        table["wavelength"] = vacuum_to_air(table["wavelength"], formula=formula)
        table.meta["wavelength_medium"] = "air"
        table.meta["air_formula"] = formula
    return table


def _wavelength_nm(lines, name):
    if hasattr(lines, "colnames"):
        lines = lines["wavelength"]
    if not isinstance(lines, u.Quantity):
        msg = f"match_lines: {name} must be a line table or a wavelength Quantity"
        raise InvalidParameterError(msg)
    return np.asarray(lines.to_value(u.nm), dtype=np.float64).ravel()


def _nearest(sorted_values, query):
    """Index into ``sorted_values`` of the element nearest to each ``query`` value."""
    j = np.clip(np.searchsorted(sorted_values, query), 1, sorted_values.size - 1)
    left_closer = np.abs(sorted_values[j - 1] - query) <= np.abs(sorted_values[j] - query)
    return np.where(left_closer, j - 1, j)


def match_lines(lines, reference, *, tolerance=0.0005 * u.nm) -> QTable:
    """Pair the lines of two lists that are each other's nearest neighbour within ``tolerance``.

    Parameters
    ----------
    lines, reference : QTable with a ``wavelength`` column, or Quantity array
        The two lists (same medium). At least two lines each.
    tolerance : Quantity
        Largest accepted wavelength difference. The default 0.0005 nm (250 m/s at 600 nm) is ten
        times the ESO-Redman scatter and a tenth of the typical distance between listed lines.

    Returns
    -------
    QTable, one row per pair, sorted by reference wavelength
        ``wavelength`` (reference, nm), ``wavelength_other`` (nm), ``index_reference``,
        ``index_other`` (rows of the inputs), ``velocity`` = c (other / reference - 1) (m/s):
        the Doppler velocity that takes the reference list onto the other.
    """
    lam = _wavelength_nm(lines, "lines")
    ref = _wavelength_nm(reference, "reference")
    if lam.size < 2 or ref.size < 2:
        msg = "match_lines: both lists need at least two lines"
        raise InvalidParameterError(msg)
    tol = u.Quantity(tolerance).to_value(u.nm)
    ref_order = np.argsort(ref, kind="stable")
    lam_order = np.argsort(lam, kind="stable")
    ref_sorted, lam_sorted = ref[ref_order], lam[lam_order]
    k = _nearest(lam_sorted, ref_sorted)  # nearest other line of each reference line
    back = _nearest(ref_sorted, lam_sorted[k])  # and its nearest reference line
    ok = (back == np.arange(ref_sorted.size)) & (np.abs(lam_sorted[k] - ref_sorted) <= tol)
    out = QTable()
    out["wavelength"] = ref_sorted[ok] * u.nm
    out["wavelength_other"] = lam_sorted[k[ok]] * u.nm
    out["index_reference"] = ref_order[ok]
    out["index_other"] = lam_order[k[ok]]
    out["velocity"] = C_M_S * (lam_sorted[k[ok]] / ref_sorted[ok] - 1.0) * u.m / u.s
    out.meta["tolerance_nm"] = tol
    return out


def offset_by_band(matches, *, band_width=100 * u.nm) -> QTable:
    """Median velocity offset of matched lines per wavelength band.

    Parameters
    ----------
    matches : QTable
        Output of :func:`match_lines`.
    band_width : Quantity
        Width of the bands, which start at multiples of it.

    Returns
    -------
    QTable, one row per non-empty band
        ``band_start``, ``band_end`` (nm), ``n_lines``, ``median_velocity`` (m/s). ``meta`` holds
        the overall ``median_velocity`` (Quantity m/s) and ``n_lines``.
    """
    width = u.Quantity(band_width).to_value(u.nm)
    lam = matches["wavelength"].to_value(u.nm)
    vel = matches["velocity"].to_value(u.m / u.s)
    band = np.floor(lam / width).astype(np.int64)
    out = QTable()
    starts = np.unique(band)
    out["band_start"] = starts * width * u.nm
    out["band_end"] = (starts + 1) * width * u.nm
    out["n_lines"] = [int(np.sum(band == b)) for b in starts]
    out["median_velocity"] = [float(np.median(vel[band == b])) for b in starts] * (u.m / u.s)
    out.meta["median_velocity"] = float(np.median(vel)) * u.m / u.s if vel.size else np.nan * u.m / u.s
    out.meta["n_lines"] = int(vel.size)
    return out
