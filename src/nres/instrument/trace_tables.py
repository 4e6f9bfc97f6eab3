"""Reference order traces of each NRES unit, from the real per-site trace tables.

The tables (``instrument/data/traces/*.txt``, sources in ``DATA_SOURCES``) were fitted in 2018 on
real lamp flats with Brandt's ``echelle_orders.py`` and shipped with the original pipeline as
trace seeds. Each gives y at 42 columns for the 67 orders of fibers 0 and 1, in nres's own
convention (0-based pixel indices, centres at integers; see :mod:`nres.io.idl_traces`). Fiber 2
is not measured and is extrapolated at the measured fiber spacing of each order and column.

Geometry (checked by the tests): order index i = m - 52; m = 52 (red) is at the bottom
(y ~ 65-200), m = 118 (blue) at the top, partly above row 4095 at the detector ends; within an
order fiber 0 is at the largest y, fiber 1 ~17 (red) to ~24 (blue) px below, fiber 2 as far again.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from dataclasses import replace
from importlib import resources

from astropy.table import Table

from ..errors import InvalidParameterError, MissingCalibrationError
from ..io.idl_traces import add_missing_fiber, read_trace_samples, samples_to_traces
from ..traces import Traces

__all__ = ["reference_trace_files", "reference_traces", "REFERENCE_TRACE_DEGREE"]

#: Legendre degree of the reference traces: the tables are degree-4 polynomials in x (degree 3
#: leaves ~1 px residuals, degree 4 reproduces the printed 0.01 px samples to <= 0.008 px).
REFERENCE_TRACE_DEGREE = 4

#: NRES sites (bpl is the lab unit, which has no table).
_SITES = ("lsc", "elp", "cpt", "tlv", "bpl")

# "...on file cptnrs03-fa13-20181113-0016-w00.fits.fz": site, unit, camera, day-obs of the flat
_FLAT = re.compile(r"(?P<site>[a-z]{3})nrs(?P<unit>\d\d)-(?P<camera>f[al]\d\d)-(?P<date>\d{8})")
# "Fitted on 2018-8-6" / "Fit on 2018-11-13"
_FITTED = re.compile(r"Fit(?:ted)? on (\d{4})-(\d{1,2})-(\d{1,2})")


def _files():
    return resources.files("nres.instrument") / "data" / "traces"


@functools.lru_cache(maxsize=1)
def _catalogue() -> Table:
    rows = []
    for entry in sorted(_files().iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".txt"):
            continue
        first = entry.read_text().splitlines()[0]
        flat, fitted = _FLAT.search(first), _FITTED.search(first)
        if flat is None or fitted is None:  # pragma: no cover - packaged data are fixed
            msg = f"{entry.name}: cannot parse the flat name and fit date from its first line"
            raise RuntimeError(msg)
        day = _dt.datetime.strptime(flat["date"], "%Y%m%d").date()
        rows.append(
            (
                flat["site"],
                f"nres{flat['unit']}",
                flat["camera"],
                day.isoformat(),
                _dt.date(*map(int, fitted.groups())).isoformat(),
                entry.name,
            )
        )
    names = ("site", "instrument", "camera", "date", "fitted", "file")
    return Table(rows=rows, names=names)


def _rows() -> list[dict]:
    cat = _catalogue()
    return [{k: str(v) for k, v in zip(cat.colnames, r, strict=True)} for r in cat.iterrows()]


def reference_trace_files() -> Table:
    """The packaged reference trace tables.

    Returns
    -------
    astropy.table.Table, one row per file
        ``site``, ``instrument`` (nres01..04), ``camera`` (INSTRUME, e.g. fa09), ``date`` (DAY-OBS
        of the lamp flat the table was fitted on, ISO), ``fitted`` (date of the fit), ``file``.
    """
    return _catalogue().copy()


def _parse_date(date):
    if date is None:
        return None
    if isinstance(date, _dt.datetime):
        return date.date()
    if isinstance(date, _dt.date):
        return date
    try:
        from astropy.time import Time

        if isinstance(date, int | float) and not isinstance(date, bool):
            return Time(float(date), format="mjd").to_datetime().date()
        return Time(date).to_datetime().date()
    except (ValueError, TypeError) as err:
        msg = f"reference_traces: date={date!r} is not a date (ISO string, MJD, datetime or astropy Time)"
        raise InvalidParameterError(msg) from err


def _select(site, camera, date) -> dict:
    if site not in _SITES:
        msg = f"reference_traces: site={site!r} is not an NRES site; expected one of {_SITES}"
        raise InvalidParameterError(msg)
    cat = _rows()
    rows = [r for r in cat if r["site"] == site]
    if camera is not None:
        rows = [r for r in rows if r["camera"] == camera]
    day = _parse_date(date)
    if day is not None:
        rows = [r for r in rows if r["date"] <= day.isoformat()]
    if not rows:
        have = ", ".join(f"{r['site']}/{r['camera']}/{r['date']}" for r in cat)
        msg = (
            f"no reference trace table for site {site!r}"
            + (f", camera {camera!r}" if camera is not None else "")
            + (f", on or before {day.isoformat()}" if day is not None else "")
            + f"; packaged tables (site/camera/date): {have}"
        )
        raise MissingCalibrationError(msg)
    return max(rows, key=lambda r: (r["date"], r["fitted"]))


@functools.cache
def _traces_of(filename) -> Traces:
    row = next(r for r in _rows() if r["file"] == filename)
    with resources.as_file(_files() / filename) as path:
        samples = read_trace_samples(path, y_convention="numpy")
    traces = samples_to_traces(
        add_missing_fiber(samples),
        degree=REFERENCE_TRACE_DEGREE,
        meta={
            "SITE": row["site"],
            "TELESCOP": row["instrument"],
            "CAMERA": row["camera"],
            "DAYOBS": row["date"].replace("-", ""),
        },
    )
    order = sorted(range(len(traces)), key=lambda k: (traces.fibers[k], traces.orders[k]))
    return traces[order]


def reference_traces(site, *, camera=None, date=None) -> Traces:
    """Reference traces of a site's NRES unit: fibers 0, 1, 2 and orders 52..118.

    Parameters
    ----------
    site : {"lsc", "elp", "cpt", "tlv"}
        NRES site code.
    camera : str, optional
        Camera (INSTRUME, e.g. "fa13"); only tables of that camera are considered.
    date : str, float (MJD), datetime.date or astropy Time, optional
        Only tables fitted on flats taken on or before this date are considered. Without camera
        and date the newest table of the site is used.

    Returns
    -------
    Traces
        201 traces (fiber-major, orders ascending), degree-4 Legendre series over x = 0..4095 in
        full-detector coordinates; ``x_valid`` is where each centre lies on rows 0..4095;
        ``meta`` names the site, unit, camera, day-obs and source file and holds the largest fit
        residual (``FITMAX``, px) against the table samples.

    Raises
    ------
    InvalidParameterError
        Unknown site or unparseable date.
    MissingCalibrationError
        No packaged table matches (e.g. the lab unit bpl, or a date before the first table).
    """
    row = _select(site, camera, date)
    return replace(_traces_of(row["file"]))  # a new object (its own meta dict); arrays are read-only
