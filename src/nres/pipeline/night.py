"""``reduce_night``: a directory of raw files to products, stage by stage, frames of a stage in parallel.

Order (the original's muncha and BANZAI's stage lists): BIAS -> master bias; DARK -> master dark;
LAMPFLAT -> master flat per fiber state with its traces, profiles and blaze; DOUBLE -> one
wavelength solution per arc, then a TRIPLE (:func:`make_triple`: the DOUBLEs of both fiber pairs
combined) when both pairs have arcs; TARGET -> spectra and RVs, each with the TRIPLE (else its
DOUBLE) corrected for the drift measured on its simultaneous ThAr, and the star's best ZERO
template when the database has one (:func:`extra_calibrations`). Frames of one stage run in parallel on the
executor (a local process pool, one numba thread per worker, by default; Dask through
:func:`nres.pipeline.batch.dask_executor`); this driver alone writes the database. Unreadable
files, unknown frame types and frames whose calibrations are missing are recorded as failures
with their reason and the rest of the night goes on. A re-run skips files already reduced (same
checksum) and masters already made unless ``force=True``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingCalibrationError

__all__ = ["reduce_night", "NightResult", "make_triple", "extra_calibrations", "best_zero"]

log = logging.getLogger("nres.pipeline.night")


@dataclass
class NightResult:
    """What :func:`reduce_night` did: per stage the :class:`~nres.pipeline.batch.TaskResult` list,
    the masters registered, and the failures (path, reason) of every kind."""

    stages: dict = field(default_factory=dict)
    masters: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    @property
    def n_done(self) -> int:
        """Frames reduced in this run (not skipped)."""
        return sum(r.status == "done" for results in self.stages.values() for r in results)


def _mjd_range(items):
    mjds = [info.mjd_obs for _, info in items]
    return min(mjds) - 1e-6, max(mjds) + 1e-6


def _tasks(db, items, function, options, result, stage):
    """Tasks of a stage with their calibrations; frames without them are recorded as failed."""
    from .batch import Task, file_checksum, frame_fields
    from .calibrations import select_calibrations

    tasks, infos = [], []
    for path, info in items:
        try:
            calibrations = select_calibrations(db, info)
        except MissingCalibrationError as err:
            reason = f"{type(err).__name__}: {err}"
            db.record_frame(path, checksum=file_checksum(path), success=False, reason=reason, stage=stage,
                            **frame_fields(info))  # fmt: skip
            log.warning("%s failed: %s", path, reason)
            result.failures.append((path, reason))
            continue
        calibrations = {**calibrations, **extra_calibrations(db, info)}
        tasks.append(Task(function, path, calibrations, options, frame_fields(info)))
        infos.append(info)
    return tasks, infos


def reduce_night(
    raw_dir,
    out_dir,
    *,
    db,
    executor=None,
    force: bool = False,
    progress: bool = True,
    min_frames=None,
    template=None,
    plot: bool = True,
    max_workers: int | None = None,
    triple: bool = True,
    **options,
) -> NightResult:
    """Reduce a night of raw NRES files.

    Parameters
    ----------
    raw_dir : str or os.PathLike
        Directory of raw files (``*.fits``, ``*.fits.fz``).
    out_dir : str or os.PathLike
        Products go here (created).
    db : nres.pipeline.Database
        Records every frame, master, calibration and RV.
    executor : concurrent.futures.Executor, optional
        Where frames run; default a local process pool (``max_workers`` processes) made and shut
        down here.
    force : bool
        Reduce again frames already reduced, and re-stack masters.
    progress : bool
        Progress bars (stderr).
    min_frames : int or dict of type -> int, optional
        Fewest frames per master (default :data:`nres.calib.MIN_FRAMES`). With fewer, the
        frames there are are stacked anyway (logged).
    template : str, optional
        RV reference of the TARGET recipe (``"simulated"`` or a line-mask path; see
        :mod:`nres.pipeline.templates`); None: spectra without RVs.
    plot : bool
        Summary PNG per TARGET.
    max_workers : int, optional
        Workers of the default pool.
    triple : bool
        Combine the night's DOUBLEs of both fiber pairs into a TRIPLE (:func:`make_triple`) that
        the TARGETs then use.
    **options
        Further recipe options (:func:`nres.pipeline.recipes.reduce_file`).

    Returns
    -------
    NightResult
    """
    from .batch import STAGE_ORDER, classify_directory, local_executor, record_failures, run_stage
    from .calibrations import STACKABLE, register_results, stack_calibrations
    from .recipes import RECIPES

    out_dir = Path(os.fspath(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    night = classify_directory(raw_dir)
    result = NightResult()
    record_failures(db, night.failures)
    result.failures.extend(night.failures)
    recipe_options = {**options, "out_dir": os.fspath(out_dir), "template": template, "plot": plot}
    own = executor is None and any(night.stages.values())
    if own:
        executor = local_executor(max_workers)
    try:
        for stage in STAGE_ORDER:
            items = night.stages.get(stage, [])
            if not items:
                continue
            tasks, infos = _tasks(db, items, RECIPES[stage], recipe_options, result, stage)
            results = run_stage(tasks, executor, db=db, progress=progress, force=force, stage=stage)
            result.stages[stage] = results
            for res in results:
                if res.status == "failed":
                    result.failures.append((res.path, res.reason))
            pairs = list(zip(results, infos, strict=True))
            if stage in STACKABLE:
                _masters(db, stage, pairs, items, out_dir, min_frames, force, result, stack_calibrations)
            else:
                register_results(db, pairs)
            if stage == "DOUBLE" and triple:
                for (site, camera), group in _groups(items).items():
                    start, end = _mjd_range(group)
                    made = make_triple(db, site=site, camera=camera, start=start, end=end, out_dir=out_dir)
                    result.masters += [made] if made else []
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
    return result


def _groups(items):
    groups = {}
    for _, info in items:
        groups.setdefault((info.site, info.camera), []).append((None, info))
    return groups


def best_zero(db, target):
    """Path of the best ZERO template of ``target`` in ``db``, or None.

    Among the star's templates (name normalised) not marked bad whose file exists: vetted
    standards first, then the most frames, then the latest.
    """
    if not target:
        return None
    rows = [
        r
        for r in db.zeros_table(target=str(target))
        if not bool(r["is_bad"]) and Path(str(r["path"])).exists()
    ]
    if not rows:
        return None
    best = max(rows, key=lambda r: (bool(r["is_standard"]), int(r["nframes"]), float(r["mjd_obs"])))
    return str(best["path"])


def extra_calibrations(db, info) -> dict:
    """Optional calibrations of a TARGET frame: ``TRIPLE`` (nearest in time, same instrument and
    camera) and ``ZERO`` (:func:`best_zero` of the science fiber's star), when ``db`` has them."""
    if info.obstype != "TARGET":
        return {}
    out = {}
    try:
        row = db.select_calibration(
            "TRIPLE", mjd_obs=info.mjd_obs, instrument=info.instrument, camera=info.camera
        )
    except MissingCalibrationError:
        pass  # no TRIPLE: the DOUBLE of the frame's fibers is the master
    else:
        out["TRIPLE"] = row["path"]
    fiber = info.science_fiber
    target = info.targets.get(fiber) if fiber is not None else None
    zero = best_zero(db, getattr(target, "name", None))
    if zero:
        out["ZERO"] = zero
    return out


def make_triple(db, *, site, camera, start, end, out_dir):
    """Combine the DOUBLE solutions of both fiber pairs in an MJD range into a TRIPLE and register it.

    The DOUBLE calibrations of ``db`` (``site``, ``camera``, MJD ``start``..``end``, usable files)
    of fiber states ``110`` and ``011`` go to :func:`nres.wavecal.combine_doubles`; the result is
    written to ``out_dir`` and registered as a ``TRIPLE`` (fiber state ``111``).

    Returns
    -------
    dict or None
        The registered calibration row; None when one fiber pair has no DOUBLE, or the combination
        fails (logged).
    """
    from ..errors import FitError, InvalidParameterError
    from ..wavecal import WavelengthSolution, combine_doubles
    from .products import master_calibration_name

    table = db.calibrations_table(obstype="DOUBLE", site=site, camera=camera)
    rows = [r for r in table if start <= float(r["mjd_obs"]) <= end and Path(str(r["path"])).exists()]
    rows = [r for r in rows if not bool(r["is_bad"])] if "is_bad" in table.colnames else rows
    states = {str(r["fiber_state"]) for r in rows}
    if not {"110", "011"} <= states:
        log.info("no TRIPLE for %s/%s: DOUBLEs of fiber states %s only", site, camera, sorted(states))
        return None
    rows = sorted(rows, key=lambda r: float(r["mjd_obs"]))
    try:
        triple = combine_doubles([WavelengthSolution.read(str(r["path"])) for r in rows])
    except (FitError, InvalidParameterError) as err:
        log.warning("no TRIPLE for %s/%s: %s", site, camera, err)
        return None
    first = rows[0]
    day_obs = Path(str(first["path"])).name.split("-")[2]
    name = master_calibration_name(
        "TRIPLE", site=site, instrument=str(first["instrument"]), camera=str(camera), day_obs=day_obs
    ).replace(".fits.fz", ".fits")
    path = Path(os.fspath(out_dir)) / name
    triple.write(path, overwrite=True)
    return db.add_calibration(
        "TRIPLE", path, site=site, instrument=str(first["instrument"]), camera=str(camera),
        mjd_start=float(rows[0]["mjd_obs"]), mjd_end=float(rows[-1]["mjd_obs"]), fiber_state="111",
        nframes=len(rows),
    )  # fmt: skip


def _masters(db, stage, pairs, items, out_dir, min_frames, force, result, stack_calibrations):
    fresh = any(r.status == "done" for r, _ in pairs)
    groups = {}
    for _, info in items:
        groups.setdefault((info.site, info.camera), []).append((None, info))
    need = min_frames.get(stage) if isinstance(min_frames, dict) else min_frames
    for (site, camera), group in groups.items():
        start, end = _mjd_range(group)
        if not (fresh or force) and _have_master(db, stage, site, camera, start, end):
            continue
        kwargs = {"site": site, "camera": camera, "start": start, "end": end, "db": db, "out_dir": out_dir}
        try:
            result.masters += stack_calibrations(stage, min_frames=need, **kwargs)
        except MissingCalibrationError as err:
            # fewer frames than a master needs: what there is still calibrates the night (and a
            # dark must be a stack to be in e-/s), so stack it anyway and say so
            log.warning("%s; stacking the frames there are", err)
            try:
                result.masters += stack_calibrations(stage, min_frames=1, **kwargs)
            except MissingCalibrationError as err2:
                log.warning("%s", err2)


def _have_master(db, stage, site, camera, start, end) -> bool:
    table = db.calibrations_table(obstype=stage, site=site, camera=camera)
    for row in table:
        if start <= float(row["mjd_obs"]) <= end and Path(str(row["path"])).exists():
            return True
    return False
