"""Provenance: every processing step records its name, nres version and scalar options.

Cards are FITS HIERARCH keywords ``NRES P<k> STEP``, ``NRES P<k> VERSION`` and ``NRES P<k> <OPTION>``
(k = 1, 2, ... in the order the steps ran), so they never collide with 8-character keywords of
the raw data or of other software. Non-scalar options are not recorded (record a summary instead).
"""

from __future__ import annotations

import numbers

import numpy as np

from ._version import __version__

__all__ = ["record_provenance", "read_provenance"]

_PREFIX = "HIERARCH NRES P"
_MAX_VALUE_CHARS = 40  # a HIERARCH card is 80 characters in all


def _steps_in(meta) -> int:
    k = 0
    while f"{_PREFIX}{k + 1} STEP" in meta:
        k += 1
    return k


def _scalar(value):
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        # FITS headers cannot hold NaN/inf: record them as text so the step's record is complete
        return float(value) if np.isfinite(value) else str(float(value))
    if isinstance(value, str):
        return value if len(value) <= _MAX_VALUE_CHARS else value[: _MAX_VALUE_CHARS - 3] + "..."
    if value is None:
        return "None"
    return None


def record_provenance(meta, step: str, **options) -> int:
    """Append one step's provenance to ``meta`` (dict or FITS header) in place.

    Parameters
    ----------
    meta : dict-like
        The output object's ``meta``.
    step : str
        Name of the step, e.g. ``"nres.calib.process_ccd"``.
    **options
        The step's options; scalars (bool, int, float, str, None) are recorded, others skipped.
        A non-finite float is recorded as the string ``"nan"``/``"inf"``/``"-inf"`` and a string
        longer than 40 characters is shortened with ``"..."``.

    Returns
    -------
    k : int
        The index of the new provenance record.
    """
    k = _steps_in(meta) + 1
    meta[f"{_PREFIX}{k} STEP"] = str(step)
    meta[f"{_PREFIX}{k} VERSION"] = __version__
    for name, value in options.items():
        value = _scalar(value)
        if value is None:
            continue
        meta[f"{_PREFIX}{k} {name.upper()}"] = value
    return k


def read_provenance(meta) -> list[dict]:
    """All provenance records of ``meta`` as dicts (``step``, ``version`` and options, lower case)."""
    records = []
    for k in range(1, _steps_in(meta) + 1):
        head = f"{_PREFIX}{k} "
        rec = {}
        for key in list(meta.keys()):
            full = key if key.startswith("HIERARCH ") else f"HIERARCH {key}"
            if full.startswith(head):
                rec[full[len(head) :].lower()] = meta[key]
        records.append(rec)
    return records
