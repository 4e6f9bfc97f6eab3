"""``reduce_night``: a directory of raw files to products, stage by stage, frames of a stage in parallel.

Order (the original's muncha and BANZAI's stage lists): BIAS -> master bias; DARK -> master dark;
LAMPFLAT -> master flat per fiber state with its traces, profiles and blaze; DOUBLE -> one
wavelength solution per arc; TARGET -> spectra and RVs. Frames of one stage run in parallel on the
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

__all__ = ["reduce_night", "NightResult"]

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
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
    return result


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
