"""Batch runner: stages of pure tasks on any ``concurrent.futures.Executor``; the driver records results.

A *task* is a picklable, pure function ``function(raw_path, calibration_paths, options)`` that
returns ``(product_paths, qc_dict)`` or raises. :func:`run_stage` runs the tasks of one stage in
parallel on an executor (a local process pool by default, each worker with one numba thread; a
Dask cluster through :func:`dask_executor`), records every outcome in the database (only this
driver process writes to it), and goes on after failures, which are stored with their reason
(``"ExceptionClass: message"``). A file whose checksum was already processed successfully is
skipped unless ``force=True``. :func:`run_stages` runs stages in the order of :data:`STAGE_ORDER`
(bias, dark, flats, arcs, targets); a stage may be given as a callable that builds its tasks once
the previous stages are done (so they can pick the new calibrations). :func:`classify_directory`
sorts the raw files of a directory into stages from their headers.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidParameterError

__all__ = [
    "Task",
    "TaskResult",
    "Classified",
    "STAGE_ORDER",
    "run_stage",
    "run_stages",
    "classify_directory",
    "record_failures",
    "local_executor",
    "dask_executor",
    "file_checksum",
    "frame_fields",
]

log = logging.getLogger("nres.pipeline.batch")

#: Stages in the order they run; the name is the OBSTYPE of their raw frames.
STAGE_ORDER = ("BIAS", "DARK", "LAMPFLAT", "DOUBLE", "TARGET")
#: Raw file patterns looked for by :func:`classify_directory`.
RAW_PATTERNS = ("*.fits", "*.fits.fz")


@dataclass(frozen=True)
class Task:
    """One frame to process.

    Attributes
    ----------
    function : callable
        ``function(path, calibrations, options) -> (product_paths, qc)``; must be picklable (a
        module-level function) and pure: it reads its inputs and writes only its products.
    path : str
        The raw file.
    calibrations : dict of str -> str
        Calibration kind -> path (e.g. ``{"BIAS": ".../bias_....fits"}``).
    options : dict
        Keyword options of the recipe.
    info : dict
        Header facts recorded with the result (see :func:`frame_fields`).
    """

    function: Callable
    path: str
    calibrations: Mapping = field(default_factory=dict)
    options: Mapping = field(default_factory=dict)
    info: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    """Outcome of one task: ``status`` is ``"done"``, ``"failed"`` or ``"skipped"``."""

    path: str
    checksum: str
    status: str
    products: tuple = ()
    qc: dict = field(default_factory=dict)
    reason: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True unless the task failed."""
        return self.status != "failed"


@dataclass(frozen=True)
class Classified:
    """Raw files of a directory sorted by stage (:func:`classify_directory`).

    ``stages[obstype]`` lists ``(path, RawInfo)`` in name order; ``failures`` lists
    ``(path, reason)`` of unreadable files and of frame types without a stage.
    """

    stages: dict
    failures: list


def file_checksum(path, *, chunk_size: int = 1 << 20) -> str:
    """md5 hex digest of a file's bytes (as the original's processing-state table used)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(os.fspath(path), "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _missing_checksum(path) -> str:
    """Key of a file that could not be read: stable per path, never equal to an md5 of content."""
    return "unreadable-" + hashlib.md5(os.fspath(path).encode(), usedforsecurity=False).hexdigest()


def frame_fields(info) -> dict:
    """The :meth:`Database.record_frame` fields of a :class:`~nres.io.RawInfo`."""
    return {
        "obstype": info.obstype,
        "site": info.site,
        "instrument": info.instrument,
        "camera": info.camera,
        "date_obs": info.date_obs,
        "mjd_obs": info.mjd_obs,
        "day_obs": info.day_obs,
        "fiber_state": info.fiber_state,
    }


def _init_worker() -> None:
    """Worker initializer: one numba thread per worker (parallelism comes from the workers)."""
    from .._jit import set_num_threads

    set_num_threads(1)


def local_executor(max_workers: int | None = None) -> ProcessPoolExecutor:
    """A local process pool whose workers use one numba thread each.

    Workers are started with ``spawn`` (not ``fork``): forking a process that already runs numba
    or BLAS threads can deadlock.
    """
    n = max_workers or os.cpu_count() or 1
    return ProcessPoolExecutor(
        max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
    )


def dask_executor(client):
    """A ``concurrent.futures`` executor on a Dask cluster (``distributed.Client``).

    Sets one numba thread on every worker (``client.run``) and returns
    ``client.get_executor(pure=False)`` (``pure=False``: a forced re-run really runs again instead
    of returning the cluster's cached result).
    """
    client.run(_init_worker)
    return client.get_executor(pure=False)


def _execute(function, path, calibrations, options):
    """Run one task in a worker; never raises (the outcome travels back as plain data)."""
    t0 = time.perf_counter()
    try:
        out = function(path, dict(calibrations), dict(options))
        if not (isinstance(out, tuple | list) and len(out) == 2 and isinstance(out[1], Mapping)):
            name = getattr(function, "__name__", function)
            msg = f"task {name!r} returned {out!r}; expected (product_paths, qc)"
            raise InvalidParameterError(msg)
        products = tuple(os.fspath(p) for p in out[0])
        from .db import jsonable

        return "done", products, jsonable(dict(out[1])), None, time.perf_counter() - t0
    except Exception as err:  # every failure is data: the batch goes on
        return "failed", (), {}, _reason(err), time.perf_counter() - t0


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def run_stage(
    tasks: Iterable[Task],
    executor: Executor | None = None,
    *,
    db,
    progress: bool = True,
    force: bool = False,
    stage: str | None = None,
    max_tries: int | None = None,
) -> list[TaskResult]:
    """Run the tasks of one stage in parallel and record each outcome in ``db``.

    Parameters
    ----------
    tasks : iterable of Task
        The frames of the stage.
    executor : concurrent.futures.Executor, optional
        Where tasks run. Default: a :func:`local_executor` created and shut down here.
    db : nres.pipeline.Database
        Receives one :meth:`~nres.pipeline.Database.record_frame` per task run (from this process
        only).
    progress : bool
        Show a tqdm progress bar (on stderr).
    force : bool
        Run tasks whose file (by checksum) was already processed successfully.
    stage : str, optional
        Name recorded with each frame and shown on the progress bar.
    max_tries : int, optional
        Skip a file that already failed this many times (default: always retry failed files).

    Returns
    -------
    list of TaskResult
        In the order of ``tasks``; ``status`` ``"done"``, ``"failed"`` (with ``reason``) or
        ``"skipped"``.
    """
    from tqdm.auto import tqdm

    tasks = list(tasks)
    for task in tasks:
        if not isinstance(task, Task):
            raise InvalidParameterError(
                f"tasks: expected nres.pipeline.batch.Task items, got {type(task).__name__}"
            )
    results: list[TaskResult | None] = [None] * len(tasks)
    own = executor is None
    pending = {}
    try:
        for i, task in enumerate(tasks):
            path = os.fspath(task.path)
            try:
                checksum = file_checksum(path)
            except OSError as err:
                results[i] = _record(
                    db, task, _missing_checksum(path), "failed", reason=_reason(err), stage=stage
                )
                continue
            previous = db.frame(checksum)
            if previous is not None and not force:
                if previous["success"]:
                    results[i] = TaskResult(
                        path, checksum, "skipped", tuple(previous["products"]), previous["qc"]
                    )
                    continue
                if max_tries is not None and previous["tries"] >= max_tries:
                    reason = f"skipped after {previous['tries']} failed tries: {previous['reason']}"
                    results[i] = TaskResult(path, checksum, "skipped", reason=reason)
                    continue
            if executor is None:
                executor = local_executor()
            try:
                future = executor.submit(_execute, task.function, path, task.calibrations, task.options)
            except Exception as err:  # e.g. an executor already shut down
                results[i] = _record(db, task, checksum, "failed", reason=_reason(err), stage=stage)
                continue
            pending[future] = (i, checksum)
        bar = tqdm(
            total=len(pending), desc=stage or "stage", unit="frame", disable=not progress or not pending
        )
        with bar:
            for future in as_completed(pending):
                i, checksum = pending[future]
                try:
                    status, products, qc, reason, seconds = future.result()
                except Exception as err:  # the pool broke, the task could not be pickled...
                    status, products, qc, reason, seconds = "failed", (), {}, _reason(err), 0.0
                results[i] = _record(
                    db,
                    tasks[i],
                    checksum,
                    status,
                    products=products,
                    qc=qc,
                    reason=reason,
                    stage=stage,
                    seconds=seconds,
                )
                bar.update(1)
    finally:
        if own and executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return results


def _record(db, task, checksum, status, *, products=(), qc=None, reason=None, stage=None, seconds=0.0):
    info = dict(task.info)
    db.record_frame(
        task.path,
        checksum=checksum,
        success=status == "done",
        reason=reason,
        qc=qc,
        products=products,
        stage=stage,
        **info,
    )
    result = TaskResult(
        os.fspath(task.path), checksum, status, tuple(products), dict(qc or {}), reason, seconds
    )
    if status == "failed":
        log.warning("%s failed: %s", task.path, reason, extra={"path": os.fspath(task.path), "stage": stage})
    else:
        log.info(
            "%s %s in %.2f s",
            task.path,
            status,
            seconds,
            extra={"path": os.fspath(task.path), "stage": stage},
        )
    return result


def run_stages(
    stages: Mapping[str, Iterable[Task] | Callable[[], Iterable[Task]]],
    executor: Executor | None = None,
    *,
    db,
    progress: bool = True,
    force: bool = False,
    max_tries: int | None = None,
) -> dict[str, list[TaskResult]]:
    """Run stages one after the other in :data:`STAGE_ORDER`, the frames of each in parallel.

    Parameters
    ----------
    stages : mapping of stage name -> tasks or callable returning tasks
        Keys among :data:`STAGE_ORDER`. A callable is called when its stage starts, after all
        earlier stages have finished and been recorded, so it can select their products.
    executor, db, progress, force, max_tries
        As :func:`run_stage`; one executor serves all stages (a local pool is created once when
        None).

    Returns
    -------
    dict
        Stage name -> its list of :class:`TaskResult` (stages absent from ``stages`` are absent).
    """
    unknown = set(stages) - set(STAGE_ORDER)
    if unknown:
        raise InvalidParameterError(
            f"stages: unknown stage(s) {sorted(unknown)}; expected among {STAGE_ORDER}"
        )
    own = executor is None
    out = {}
    try:
        for name in STAGE_ORDER:
            if name not in stages:
                continue
            tasks = stages[name]
            tasks = list(tasks() if callable(tasks) else tasks)
            if tasks and executor is None:
                executor = local_executor()
            out[name] = run_stage(
                tasks, executor, db=db, progress=progress, force=force, stage=name, max_tries=max_tries
            )
    finally:
        if own and executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return out


def classify_directory(raw_dir, *, patterns=RAW_PATTERNS) -> Classified:
    """Sort the raw files of ``raw_dir`` into stages by OBSTYPE, reading headers only.

    Parameters
    ----------
    raw_dir : str or os.PathLike
        Directory with raw NRES files (not searched recursively).
    patterns : sequence of str
        Glob patterns of raw files.

    Returns
    -------
    Classified
        ``stages`` (every name of :data:`STAGE_ORDER`, possibly empty lists) and ``failures``:
        files that cannot be read (corrupt, truncated, missing keywords, unknown OBSTYPE) or whose
        frame type has no stage (SPECTRUM, EXPERIMENTAL), each with its reason.
    """
    from ..io.headers import read_raw_info

    raw_dir = Path(os.fspath(raw_dir))
    if not raw_dir.is_dir():
        from ..errors import InvalidInputFileError

        raise InvalidInputFileError(raw_dir, "is not a directory of raw files")
    paths = sorted({p for pattern in patterns for p in raw_dir.glob(pattern) if p.is_file()})
    stages = {name: [] for name in STAGE_ORDER}
    failures = []
    for path in paths:
        try:
            info = read_raw_info(path)
        except Exception as err:  # any unreadable file is recorded, never fatal for the night
            failures.append((os.fspath(path), _reason(err)))
            continue
        if info.obstype not in stages:
            failures.append((os.fspath(path), f"UnsupportedObstype: no stage reduces OBSTYPE {info.obstype}"))
            continue
        stages[info.obstype].append((os.fspath(path), info))
    return Classified(stages, failures)


def record_failures(db, failures, *, stage: str = "classify") -> list[TaskResult]:
    """Record ``(path, reason)`` pairs (e.g. :attr:`Classified.failures`) as failed frames."""
    results = []
    for path, reason in failures:
        try:
            checksum = file_checksum(path)
        except OSError:
            checksum = _missing_checksum(path)
        db.record_frame(path, checksum=checksum, success=False, reason=reason, stage=stage)
        log.warning("%s failed: %s", path, reason, extra={"path": os.fspath(path), "stage": stage})
        results.append(TaskResult(os.fspath(path), checksum, "failed", reason=reason))
    return results
