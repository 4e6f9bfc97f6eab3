"""Calibration bookkeeping of the driver: selection for a frame, registration of results, stacking.

:func:`stack_calibrations` is the original's ``nres_stack_calibrations``: the processed frames of
one type (from the database's successful frames) between two MJDs are stacked into masters with
:func:`nres.calib.stack` (per fiber state for lamp flats), written with their NGOOD plane and
registered as calibrations; a master lamp flat also gets its traces, profiles and blaze (a
``TRACE`` calibration). Only the driver process calls these (they write the database).

Cosmic rays of few-frame masters: sigma clipping needs :data:`MIN_CLIP_FRAMES` (3) inputs to reject
a hit (with two, the median is their mean and both deviate alike; one is kept as it is). The
recipes flag every calibration frame's hits (``nres.pipeline.recipes._process``), and the stack
leaves flagged pixels out; inputs of a stack of fewer than 3 frames that were processed without
the flagging (no ``nres.calib.flag_cosmic_rays`` in their provenance) are flagged here. Where no
input is left (a hit in a one-frame master) the master pixel is NO_WEIGHT and masked, and a master
bias or dark gets the median of its row's neighbours there (:func:`nres.calib.fill_masked`): the
frames it calibrates then have that pixel masked (BAD_PIXEL) with a sensible value, not a hole
of -(hit) x EXPTIME nor NaN.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import InvalidParameterError, MissingCalibrationError
from .products import master_calibration_name

__all__ = ["select_calibrations", "register_results", "stack_calibrations", "STACKABLE", "MIN_CLIP_FRAMES"]

log = logging.getLogger("nres.pipeline.calibrations")

#: Frame types :func:`stack_calibrations` combines.
STACKABLE = ("BIAS", "DARK", "LAMPFLAT")
#: Fewest inputs whose sigma-clipped stack rejects a cosmic ray in one of them (median and MAD of
#: three values: the hit is beyond 3 MAD-sigma of the other two).
MIN_CLIP_FRAMES = 3


def select_calibrations(db, info) -> dict:
    """Paths of the calibrations a raw frame's recipe needs, chosen in ``db``.

    Nearest in time among usable calibrations of the same instrument and camera (and fiber state
    for TRACE and DOUBLE); raises :class:`~nres.errors.MissingCalibrationError` naming the first
    one missing.
    """
    from .recipes import REQUIRED_CALIBRATIONS

    out = {}
    for kind, by_fibers in REQUIRED_CALIBRATIONS.get(info.obstype, {}).items():
        rules = {"fiber_state": info.fiber_state} if by_fibers else {}
        try:
            row = db.select_calibration(
                kind, mjd_obs=info.mjd_obs, instrument=info.instrument, camera=info.camera, **rules
            )
        except MissingCalibrationError as err:
            fibers = f" with fibers {info.fiber_state}" if by_fibers else ""
            msg = f"{info.obstype} needs a {kind}{fibers} for {info.instrument}/{info.camera}: {err}"
            raise MissingCalibrationError(msg) from None
        out[kind] = row["path"]
    return out


def register_results(db, results_infos, *, calibrations: bool = True, kinds=None) -> None:
    """Record what successful tasks produced: their calibration products and their RVs.

    Parameters
    ----------
    db : Database
    results_infos : iterable of (TaskResult, RawInfo)
    calibrations : bool
        Register ``qc["calibration"]`` products.
    kinds : container of str, optional
        Only register calibrations of these kinds (default all).
    """
    for result, info in results_infos:
        if result.status != "done":
            continue
        qc = result.qc or {}
        cal = qc.get("calibration")
        if calibrations and cal and (kinds is None or cal["obstype"] in kinds):
            db.add_calibration(
                cal["obstype"], cal["path"], site=info.site, instrument=info.instrument, camera=info.camera,
                mjd_start=info.mjd_obs, fiber_state=cal.get("fiber_state", ""), nframes=1,
            )  # fmt: skip
        if "rv_m_s" in qc and np.isfinite(qc["rv_m_s"]):
            product = next((p for p in result.products if str(p).endswith("-1d.fits")), None)
            db.add_rv(
                target=qc.get("target") or "unknown", mjd_obs=info.mjd_obs, checksum=result.checksum,
                bjd_tdb=qc.get("bjd_tdb"), site=info.site, instrument=info.instrument, camera=info.camera,
                fiber=qc.get("rv_fiber"), exptime=info.exptime, orgname=Path(result.path).name,
                specfile=product, rv=qc["rv_m_s"], rv_err=qc.get("rv_err_m_s"),
                rv_observed=qc.get("rv_observed_m_s"),
                barycentric_correction=qc.get("barycentric_correction_m_s"),
                wavelength_rms=None, qc={k: v for k, v in qc.items() if k != "calibration"},
            )  # fmt: skip


def _flagged_inputs(paths, kind):
    """The frames of a short stack (< :data:`MIN_CLIP_FRAMES`) read into memory, their cosmic rays
    flagged unless their provenance says they already are."""
    from ..calib import flag_cosmic_rays
    from ..flags import Flag
    from ..provenance import read_provenance
    from .frames import read_frame

    frames = []
    for path in paths:
        frame = read_frame(path)
        if not any(p.get("step") == "nres.calib.flag_cosmic_rays" for p in read_provenance(frame.meta)):
            frame = flag_cosmic_rays(frame, method="contrast", grow_from=Flag.SATURATED)
            log.info("%s: cosmic rays flagged for a %d-frame %s stack", path, len(paths), kind)
        frames.append(frame)
    return frames


def _inputs(db, kind, site, camera, start, end):
    table = db.frames_table(success=True)
    rows = []
    for row in table:
        if str(row["obstype"]) != kind or str(row["site"]).lower() != site or str(row["camera"]) != camera:
            continue
        mjd = row["mjd_obs"]
        if mjd is None or not (start <= float(mjd) <= end):
            continue
        products = row["products"]
        if isinstance(products, str | np.str_):  # JSON text in the table view
            products = json.loads(str(products) or "[]")
        frames = [p for p in products if str(p).endswith(("-2d.fits.fz", "-2d.fits"))]
        if frames and Path(frames[0]).exists():
            rows.append((float(mjd), frames[0], row))
    rows.sort(key=lambda r: r[0])
    return rows


def stack_calibrations(
    kind,
    *,
    site,
    camera,
    start,
    end,
    db,
    out_dir=None,
    min_frames=None,
    method="sigma_clip",
) -> list[dict]:
    """Stack the processed calibration frames of a period into masters and register them.

    Parameters
    ----------
    kind : {"BIAS", "DARK", "LAMPFLAT"}
        Frame type.
    site, camera : str
        SITEID (``"lsc"``) and INSTRUME (``"fa09"``).
    start, end : float
        MJD range of the input frames (inclusive).
    db : Database
        Source of the inputs (successful frames of ``kind`` whose products include a 2-D frame)
        and where masters are registered.
    out_dir : str or os.PathLike, optional
        Where masters go (default: the directory of the first input).
    min_frames : int, optional
        Fewest inputs per master (default :data:`nres.calib.MIN_FRAMES` of the type).
    method : str
        :func:`nres.calib.stack` method.

    Returns
    -------
    list of dict
        The registered calibration rows (for LAMPFLAT: the master flat and its TRACE per fiber state).

    Raises
    ------
    MissingCalibrationError
        Fewer than ``min_frames`` inputs (for every fiber state).
    """
    from ..calib import MIN_FRAMES, fill_masked, stack
    from ..flags import Flag
    from .frames import write_frame

    kind = str(kind).upper()
    if kind not in STACKABLE:
        raise InvalidParameterError(f"kind: expected one of {STACKABLE}, got {kind!r}")
    site = str(site).lower()
    need = int(MIN_FRAMES.get(kind, 1) if min_frames is None else min_frames)
    inputs = _inputs(db, kind, site, str(camera), float(start), float(end))
    groups: dict[str, list] = {}
    for item in inputs:
        state = str(item[2]["fiber_state"] or "") if kind == "LAMPFLAT" else ""
        groups.setdefault(state, []).append(item)
    stored = []
    short = []
    for state, items in sorted(groups.items()):
        if len(items) < need:
            short.append(f"{len(items)} {kind}{' ' + state if state else ''}")
            continue
        paths = [p for _, p, _ in items]
        first = items[0][2]
        inputs = paths if len(paths) >= MIN_CLIP_FRAMES else _flagged_inputs(paths, kind)
        master, ngood = stack(inputs, method=method, min_frames=need, return_ngood=True)
        if kind in ("BIAS", "DARK"):  # no hole, no NaN in the frames a master calibrates
            master = fill_masked(master, flags=Flag.NO_WEIGHT | Flag.COSMIC_RAY)
        name = master_calibration_name(
            kind, site=site, instrument=str(first["instrument"]), camera=str(camera),
            day_obs=str(first["day_obs"]), fiber_state=state or None,
        )  # fmt: skip
        out = Path(os.fspath(out_dir)) if out_dir is not None else Path(paths[0]).parent
        master_path = write_frame(master, out / name, ngood=ngood)
        common = {
            "site": site, "instrument": str(first["instrument"]), "camera": str(camera),
            "mjd_start": items[0][0], "mjd_end": items[-1][0], "nframes": len(items),
        }  # fmt: skip
        stored.append(db.add_calibration(kind, master_path, fiber_state=state, **common))
        log.info("master %s from %d frames: %s", kind, len(items), master_path)
        if kind == "LAMPFLAT":
            from .frames import write_trace_file
            from .recipes import trace_flat

            traces, profiles, blaze = trace_flat(master, site=site)
            trace_path = write_trace_file(
                out / name.replace(".fits", "_trace.fits"), traces, profiles, blaze, header=master.meta
            )
            stored.append(db.add_calibration("TRACE", trace_path, fiber_state=state, **common))
    if not stored:
        found = ", ".join(short) or f"no {kind} frames"
        msg = (
            f"stack_calibrations: {found} processed for {site}/{camera} in MJD {start}..{end}; "
            f"need at least {need} per master"
        )
        raise MissingCalibrationError(msg)
    return stored
