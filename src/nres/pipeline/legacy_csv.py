"""The original pipeline's CSV "databases", imported into and exported from the nres database.

Four tables of the IDL pipeline's ``reduced/csv/`` (idl-rv-ops.md 24, 12.2;
idl-calib-trace-extract.md 4.3):

============= ======================================================================= =============
kind          columns (in file order)                                                  database table
============= ======================================================================= =============
``standards`` Type, Filename, Navg, Site, Camera, JDdata, Flags                          calibrations
``zeros``     Filename, Navg, Site, Camera, Jdate, Target, Teff, Logg, B-V, J-K, Flags   zero_templates
``targets``   Name, RA(deg), Dec(deg), Vmag, Bmag, gmag, rmag, imag, Jmag, Kmag, PMRA,   targets
              PMDE, Plax, RV, Teff, Logg, ZERO
``rv``        Targname, CrDate, BJD, Site, Exptime, Orgname, Specfile, Nmatch, Amoerr,   rv_results
              RMSgood, Mgbdisp, RVkm/s, AmpCC, WidCC, Lammid, Baryshift, Rshiftavg,
              RshiftMed, RshiftErr
============= ======================================================================= =============

Columns are read by position (the shipped standards.csv has a malformed header line); the first
line is the header. The original's placeholder rows (``xxxx...``) are skipped. Conversions:

- standards: JDdata is a full JD (MJD = JD - 2400000.5); Flags char 0 ``'0'`` = usable (else
  ``is_bad``), char 2 = lit fibers (``1`` -> ``"110"``, ``2`` -> ``"011"``, ``3`` -> ``"111"``); Type
  ``FLAT`` is stored as ``LAMPFLAT``. The instrument (TELESCOP), absent from the file, comes from the
  site (:data:`nres.instrument.sites.SITES`) unless given.
- zeros: Jdate is a full JD; Flags char 0 usable, char 1 ``'1'`` = vetted RV standard.
- targets: magnitudes of -99.9 mean unknown (stored as NULL), ZERO ``NULL`` means none.
- rv: CrDate is the data MJD (MJD-OBS) despite its name; RVkm/s is ``c rcc`` without barycentric
  correction. Rows written by nres without the original's fields export ``rv_observed`` (km/s) as
  RVkm/s and ``barycentric_correction / c`` as Baryshift; other missing fields are left empty.

Numbers are written in Python's shortest round-trip form, strings double-quoted as IDL's
``write_csv`` did, so ``import -> export -> import`` reproduces every value exactly.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from ..errors import InvalidInputFileError, InvalidParameterError
from .db import (
    Calibration,
    RVRecord,
    Target,
    ZeroTemplate,
    calibration_values,
    normalise_target_name,
    rv_values,
    target_values,
    zero_values,
)

__all__ = ["import_csv", "export_csv", "CSV_KINDS", "HEADERS", "JD_MJD_OFFSET"]

#: Header line written for each kind (read back by position).
HEADERS = {
    "standards": ("Type", "Filename", "Navg", "Site", "Camera", "JDdata", "Flags"),
    "zeros": ("Filename", "Navg", "Site", "Camera", "Jdate", "Target", "Teff", "Logg", "B-V", "J-K", "Flags"),
    "targets": (
        "Name",
        "RA(deg)",
        "Dec(deg)",
        "Vmag",
        "Bmag",
        "gmag",
        "rmag",
        "imag",
        "Jmag",
        "Kmag",
        "PMRA",
        "PMDE",
        "Plax",
        "RV",
        "Teff",
        "Logg",
        "ZERO",
    ),
    "rv": (
        "Targname",
        "CrDate",
        "BJD",
        "Site",
        "Exptime",
        "Orgname",
        "Specfile",
        "Nmatch",
        "Amoerr",
        "RMSgood",
        "Mgbdisp",
        "RVkm/s",
        "AmpCC",
        "WidCC",
        "Lammid",
        "Baryshift",
        "Rshiftavg",
        "RshiftMed",
        "RshiftErr",
    ),
}
CSV_KINDS = tuple(HEADERS)
#: JD = MJD + 2400000.5 (the original's ZERO builder used 2400000 - 0.5 by mistake; not here)
JD_MJD_OFFSET = 2400000.5
#: targets.csv's "unknown" value of magnitudes and other numbers
MISSING = -99.9
_SPEED_OF_LIGHT_MS = 299792458.0
_FIBERS_OF_FLAG = {"1": "110", "2": "011", "3": "111"}
_FLAG_OF_FIBERS = {v: k for k, v in _FIBERS_OF_FLAG.items()}
_TYPE_IN = {"FLAT": "LAMPFLAT"}
_TYPE_OUT = {v: k for k, v in _TYPE_IN.items()}
_MAGS = ("vmag", "bmag", "gmag", "rmag", "imag", "jmag", "kmag")
_TARGET_NUMBERS = _MAGS + ("pmra", "pmdec", "parallax", "rv", "teff", "logg")
# rv.csv column -> RVRecord column, after Targname, CrDate
_RV_COLUMNS = (
    "bjd_tdb",
    "site",
    "exptime",
    "orgname",
    "specfile",
    "n_lines",
    "amoeba_error",
    "wavelength_rms",
    "mgb_dispersion",
    "rv_ccf",
    "ccf_amplitude",
    "ccf_fwhm",
    "lambda_mid",
    "z_barycentric",
    "z_block_mean",
    "z_block_median",
    "z_block_error",
)
_RV_TEXT = {"site", "orgname", "specfile"}


def _kind(kind) -> str:
    k = str(kind).strip().lower().removesuffix(".csv")
    if k not in HEADERS:
        raise InvalidParameterError(f"kind: expected one of {', '.join(CSV_KINDS)}, got {kind!r}")
    return k


# ----- reading --------------------------------------------------------------------------------
def _rows(path: Path, kind: str):
    """(line number, fields) of the data rows; header checked by column count only."""
    if not path.is_file():
        raise InvalidInputFileError(path, f"{kind}.csv does not exist")
    ncol = len(HEADERS[kind])
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as err:
        raise InvalidInputFileError(path, f"not a CSV text file ({err})") from None
    if not lines:
        raise InvalidInputFileError(path, f"empty file; expected a header line {','.join(HEADERS[kind])}")
    if len(lines[0]) != ncol:
        msg = f"header has {len(lines[0])} columns; a {kind}.csv has {ncol}: {','.join(HEADERS[kind])}"
        raise InvalidInputFileError(path, msg)
    out = []
    for number, fields in enumerate(lines[1:], start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != ncol:
            raise InvalidInputFileError(path, f"line {number}: {len(fields)} columns, expected {ncol}")
        fields = [f.strip() for f in fields]
        if _placeholder(fields[0]):
            continue
        out.append((number, fields))
    return out


def _placeholder(text: str) -> bool:
    """The original's template rows: names made of x's (``xxxx``, ``xxxx/xxxxxxxx.fits``)."""
    core = text.removesuffix(".fits").replace("/", "").replace(".", "")
    return bool(core) and set(core.lower()) == {"x"}


def _number(text, path, number, column, *, integer=False):
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputFileError(path, f"line {number}: {column} = {text!r} is not a number") from None
    if integer:
        if not value.is_integer():
            raise InvalidInputFileError(path, f"line {number}: {column} = {text!r} is not an integer")
        return int(value)
    return value


def _flags(text, path, number) -> str:
    if len(text) != 4:
        raise InvalidInputFileError(path, f"line {number}: Flags {text!r} is not 4 characters")
    return text


def _instrument_of(site, instrument, path):
    if instrument is not None:
        return str(instrument).lower()
    from ..instrument.sites import SITES

    unit = SITES.get(site.lower()).instrument if site.lower() in SITES else None
    if unit is None:
        msg = f"standards.csv rows of site {site!r}: no NRES unit known there; pass instrument='nres0N'"
        raise InvalidInputFileError(path, msg)
    return unit


def _under(root, name: str) -> str:
    return name if root is None else os.fspath(Path(root) / name)


def import_csv(
    db, kind: str, path, *, replace: bool = False, instrument: str | None = None, root=None
) -> int:
    """Import one of the original's CSV tables into ``db``.

    Parameters
    ----------
    db : nres.pipeline.Database
        Destination.
    kind : {"standards", "zeros", "targets", "rv"}
        Which table.
    path : str or os.PathLike
        The CSV file.
    replace : bool
        Empty the destination table first. Otherwise rows are added: calibrations and ZEROs of a
        path already known are updated; a target already known (by normalised name) is updated
        once, further rows of the same name are added (the original's list has duplicates);
        RV rows are appended.
    instrument : str, optional
        standards only: TELESCOP of every row (default: the NRES unit of each row's site).
    root : str or os.PathLike, optional
        standards/zeros: directory the Filename column is relative to (the original's
        ``reduced/``); stored paths are joined to it. Default: stored as written.

    Returns
    -------
    int
        Rows imported.

    Raises
    ------
    InvalidInputFileError
        Missing file, wrong column count, unparseable number or flags (the message names the file
        and line).
    """
    kind = _kind(kind)
    path = Path(os.fspath(path))
    rows = _rows(path, kind)
    if kind == "standards":
        model, key, items = Calibration, "path", []
        for n, (typ, name, navg, site, camera, jd, flags) in rows:
            flags = _flags(flags, path, n)
            typ = typ.upper()
            full = _under(root, name)
            mjd = _number(jd, path, n, "JDdata") - JD_MJD_OFFSET
            values = calibration_values(
                _TYPE_IN.get(typ, typ),
                site=site,
                instrument=_instrument_of(site, instrument, path),
                camera=camera,
                mjd_start=mjd,
                fiber_state=_FIBERS_OF_FLAG.get(flags[2], ""),
                nframes=max(1, _number(navg, path, n, "Navg", integer=True)),
                is_bad=flags[0] != "0",
                flags=flags,
            )
            items.append((full, {"path": full, **values}))
    elif kind == "zeros":
        model, key, items = ZeroTemplate, "path", []
        for n, (name, navg, site, camera, jd, target, teff, logg, bv, jk, flags) in rows:
            flags = _flags(flags, path, n)
            full = _under(root, name)
            values = zero_values(
                target=target,
                site=site,
                camera=camera,
                mjd_obs=_number(jd, path, n, "Jdate") - JD_MJD_OFFSET,
                nframes=_number(navg, path, n, "Navg", integer=True),
                teff=_number(teff, path, n, "Teff"),
                logg=_number(logg, path, n, "Logg"),
                b_v=_number(bv, path, n, "B-V"),
                j_k=_number(jk, path, n, "J-K"),
                is_bad=flags[0] != "0",
                is_standard=flags[1] == "1",
                flags=flags,
            )
            items.append((full, {"path": full, **values}))
    elif kind == "targets":
        model, key, items = Target, "key", []
        known = {normalise_target_name(r) for r in db.targets_table()["name"]} if not replace else set()
        for n, (name, ra, dec, *numbers, zero) in rows:
            fields = {}
            for column, text in zip(_TARGET_NUMBERS, numbers, strict=True):
                value = _number(text, path, n, column)
                fields[column] = None if value is None or (column in _MAGS and value == MISSING) else value
            fields["zero"] = None if zero.upper() in ("NULL", "") else zero
            try:
                values = target_values(
                    name, ra=_number(ra, path, n, "RA"), dec=_number(dec, path, n, "Dec"), **fields
                )
            except (InvalidParameterError, TypeError) as err:
                raise InvalidInputFileError(path, f"line {n}: {err}") from None
            k = values["key"] if values["key"] in known else None
            known.discard(values["key"])
            items.append((k, values))
    else:
        model, key, items = RVRecord, None, []
        for n, (targname, crdate, *rest) in rows:
            fields = {}
            for column, text in zip(_RV_COLUMNS, rest, strict=True):
                if column in _RV_TEXT:
                    fields[column] = text or None
                else:
                    fields[column] = _number(text, path, n, column, integer=column == "n_lines")
            items.append(
                (None, rv_values(target=targname, mjd_obs=_number(crdate, path, n, "CrDate"), **fields))
            )
    if replace:
        db._clear(model)
    db._store(model, key, items)
    return len(items)


# ----- writing --------------------------------------------------------------------------------
def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return '"' + str(value).replace('"', '""') + '"'


def _relative(root, name: str) -> str:
    if root is None:
        return name
    try:
        return Path(name).relative_to(Path(root)).as_posix()
    except ValueError:
        return name


def _standards_flags(row) -> str:
    flags = row["flags"] if row["flags"] and len(row["flags"]) == 4 else "0000"
    usable = "1" if row["is_bad"] else "0"
    if flags[0] != "0" and row["is_bad"]:
        usable = flags[0]  # keep the original's reason character
    fibers = _FLAG_OF_FIBERS.get(row["fiber_state"], flags[2] if row["flags"] else "0")
    return usable + flags[1] + fibers + flags[3]


def _zero_flags(row) -> str:
    flags = row["flags"] if row["flags"] and len(row["flags"]) == 4 else "0000"
    usable = (flags[0] if flags[0] != "0" else "1") if row["is_bad"] else "0"
    return usable + ("1" if row["is_standard"] else "0") + flags[2:]


def _records(db, model, order):
    from sqlalchemy import select

    with db.session() as s:
        return [
            {c.key: getattr(r, c.key) for c in model.__table__.columns}
            for r in s.scalars(select(model).order_by(*order))
        ]


def export_csv(db, kind: str, path, *, root=None, overwrite: bool = True) -> int:
    """Write a table of ``db`` in the original's CSV format (atomically).

    Parameters
    ----------
    db : nres.pipeline.Database
        Source.
    kind : {"standards", "zeros", "targets", "rv"}
        Which table. Rows are sorted as the original kept them: standards and zeros by JD, rv by
        CrDate; targets keep their stored order (the order of the imported file).
    path : str or os.PathLike
        Output CSV.
    root : str or os.PathLike, optional
        standards/zeros: write paths relative to this directory (the original's ``reduced/``).
    overwrite : bool
        Replace an existing file (default True).

    Returns
    -------
    int
        Rows written.
    """
    from .products import atomic_path

    kind = _kind(kind)
    lines = [",".join(HEADERS[kind])]
    if kind == "standards":
        for r in _records(db, Calibration, (Calibration.mjd_obs, Calibration.id)):
            typ = _TYPE_OUT.get(r["obstype"], r["obstype"])
            jd = r["mjd_obs"] + JD_MJD_OFFSET
            fields = (
                typ,
                _relative(root, r["path"]),
                r["nframes"],
                r["site"],
                r["camera"],
                jd,
                _standards_flags(r),
            )
            lines.append(",".join(_text(v) for v in fields))
    elif kind == "zeros":
        for r in _records(db, ZeroTemplate, (ZeroTemplate.mjd_obs, ZeroTemplate.id)):
            fields = (
                _relative(root, r["path"]),
                r["nframes"],
                r["site"],
                r["camera"],
                r["mjd_obs"] + JD_MJD_OFFSET,
                r["target"],
                r["teff"],
                r["logg"],
                r["b_v"],
                r["j_k"],
                _zero_flags(r),
            )
            lines.append(",".join(_text(v) for v in fields))
    elif kind == "targets":
        for r in _records(db, Target, (Target.id,)):
            numbers = [MISSING if (c in _MAGS and r[c] is None) else r[c] for c in _TARGET_NUMBERS]
            fields = (r["name"], r["ra"], r["dec"], *numbers, r["zero"] or "NULL")
            lines.append(",".join(_text(v) for v in fields))
    else:
        for r in _records(db, RVRecord, (RVRecord.mjd_obs, RVRecord.id)):
            r = dict(r)
            if r["rv_ccf"] is None and r["rv_observed"] is not None:
                r["rv_ccf"] = r["rv_observed"] / 1000.0
            if r["z_barycentric"] is None and r["barycentric_correction"] is not None:
                r["z_barycentric"] = r["barycentric_correction"] / _SPEED_OF_LIGHT_MS
            fields = (r["target"], r["mjd_obs"], *(r[c] for c in _RV_COLUMNS))
            lines.append(",".join(_text(v) for v in fields))
    path = Path(os.fspath(path))
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) - 1
