"""Calibration selection: pure functions over a table of available calibrations.

The table (astropy ``Table`` or pandas ``DataFrame``) has one row per calibration with columns

=============== ======= =============================================================
column          type    meaning
=============== ======= =============================================================
``obstype``     str     BIAS, DARK, LAMPFLAT, DOUBLE, TRACE, ... (case-insensitive)
``instrument``  str     spectrograph, TELESCOP (nres01..nres04)
``camera``      str     INSTRUME (fa09, ...)
``fiber_state`` str     lit fibers, e.g. ``"110"`` (fiber 0, 1, 2); ``""`` when irrelevant
``mjd_obs``     float   MJD of the calibration data
``is_bad``      bool    marked unusable
``path``        str     where the product is
``nframes``     int     optional: frames combined (1 = single frame, > 1 = master)
``binning``     str     optional: CCDSUM, e.g. ``"1 1"``
=============== ======= =============================================================

The database that stores the table belongs to ``nres.pipeline``; these rules are tested alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import legacy as _legacy
from ..errors import InvalidParameterError, MissingCalibrationError

__all__ = ["select_calibration", "candidate_calibrations", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("obstype", "instrument", "camera", "fiber_state", "mjd_obs", "is_bad", "path")
_SELECT = "nres.calib.select.select_calibration"
#: the original get_calib window: any master within max(3.5 md, md + 3.5 d) wins over a nearer
#: single frame (idl-calib-trace-extract.md 4.4)
IDL_WINDOW_FACTOR = 3.5
IDL_WINDOW_DAYS = 3.5

_legacy.register(
    _SELECT,
    "rule",
    choices=("nearest", "idl"),
    default="nearest",
    legacy="idl",
    reference="idl-calib-trace-extract.md 4.4",
    summary="get_calib: nearest master (nframes > 1) within max(3.5 md, md + 3.5 d) beats a nearer single",
)


def _frame(table) -> pd.DataFrame:
    df = table.to_pandas() if hasattr(table, "to_pandas") else pd.DataFrame(table)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        msg = f"table: missing column(s) {missing}; expected at least {list(REQUIRED_COLUMNS)}"
        raise InvalidParameterError(msg)
    return df


def candidate_calibrations(
    table,
    *,
    obstype: str,
    mjd_obs: float,
    instrument: str,
    camera: str,
    fiber_state: str | None = None,
    binning: str | None = None,
    only_older: bool = False,
    max_age: float | None = None,
) -> pd.DataFrame:
    """Usable calibrations for a frame, nearest in time first.

    Parameters
    ----------
    table : astropy.table.Table or pandas.DataFrame
        Available calibrations (columns in the module docstring).
    obstype, instrument, camera : str
        Must match exactly (case-insensitive, stripped).
    mjd_obs : float
        MJD of the frame being calibrated.
    fiber_state : str, optional
        Lit-fiber string (``"110"``); required to match when given.
    binning : str, optional
        Must match the ``binning`` column when given.
    only_older : bool
        Keep only calibrations taken at or before ``mjd_obs``.
    max_age : float, optional
        Maximum ``|mjd_obs - calibration mjd_obs|`` in days.

    Returns
    -------
    pandas.DataFrame
        Matching rows not flagged bad, sorted by time distance (column ``dt_days`` added).

    Raises
    ------
    InvalidParameterError
        A required column is missing (or ``binning`` is requested without a ``binning`` column).
    """
    df = _frame(table)

    def same(col, value):
        return df[col].astype(str).str.strip().str.upper() == str(value).strip().upper()

    keep = same("obstype", obstype) & same("instrument", instrument) & same("camera", camera)
    keep &= ~df["is_bad"].astype(bool)
    if fiber_state is not None:
        keep &= same("fiber_state", fiber_state)
    if binning is not None:
        if "binning" not in df.columns:
            raise InvalidParameterError("table: binning requested but the table has no 'binning' column")
        keep &= same("binning", binning)
    dt = df["mjd_obs"].astype(float) - float(mjd_obs)
    if only_older:
        keep &= dt <= 0
    if max_age is not None:
        keep &= dt.abs() <= float(max_age)
    out = df[keep].copy()
    out["dt_days"] = dt[keep].abs()
    return out.sort_values("dt_days", kind="stable")


def select_calibration(table, *, rule: str | None = None, legacy: bool = False, **query) -> dict:
    """The calibration to use for a frame.

    Same type, instrument, camera (and fiber state / binning when given), not flagged bad,
    optionally only older than the frame and not older than ``max_age`` days; the nearest in
    time wins (``rule="nearest"``). ``rule="idl"`` reproduces the original's get_calib
    preference: among candidates within max(3.5 md, md + 3.5 d) of the frame (md = nearest
    distance), the nearest master (``nframes > 1``) wins over nearer single frames.

    Parameters
    ----------
    table : astropy.table.Table or pandas.DataFrame
        Available calibrations (columns in the module docstring; ``nframes`` needed by
        ``rule="idl"``).
    rule : {"nearest", "idl"}, optional
        "nearest" (default) or, legacy, the original's master preference (above).
    legacy : bool
        Shorthand for ``rule="idl"``.
    **query
        ``obstype, mjd_obs, instrument, camera`` (required) and ``fiber_state, binning,
        only_older, max_age``: the keywords of :func:`candidate_calibrations`, passed on to it.

    Returns
    -------
    dict
        The chosen row (with ``dt_days``).

    Raises
    ------
    MissingCalibrationError
        Nothing matches; the message names everything that was looked for.
    InvalidParameterError
        A required column is missing (``nframes`` for ``rule="idl"``) or ``rule`` is unknown.
    """
    opt = _legacy.resolve(_SELECT, legacy, rule=rule)["rule"]
    cand = candidate_calibrations(table, **query)
    if cand.empty:
        q = dict.fromkeys(("fiber_state", "binning", "only_older", "max_age")) | query
        what = f"obstype={q['obstype']!r}, instrument={q['instrument']!r}, camera={q['camera']!r}"
        if q["fiber_state"] is not None:
            what += f", fiber_state={q['fiber_state']!r}"
        if q["binning"] is not None:
            what += f", binning={q['binning']!r}"
        when = f"mjd_obs={q['mjd_obs']}" + (", only older" if q["only_older"] else "")
        when += "" if q["max_age"] is None else f", max_age={q['max_age']} d"
        msg = f"no usable calibration for {what} ({when}) among {len(_frame(table))} rows"
        raise MissingCalibrationError(msg)
    if opt == "idl":
        if "nframes" not in cand.columns:
            msg = "table: rule='idl' prefers masters by the 'nframes' column, which the table lacks"
            raise InvalidParameterError(msg)
        md = float(cand["dt_days"].iloc[0])
        window = max(IDL_WINDOW_FACTOR * md, md + IDL_WINDOW_DAYS)
        masters = cand[(cand["dt_days"] <= window) & (np.asarray(cand["nframes"], dtype=int) > 1)]
        if not masters.empty:
            return masters.iloc[0].to_dict()
    return cand.iloc[0].to_dict()
