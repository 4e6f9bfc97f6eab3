"""``nres nightly --site lsc --day-obs 20190405 --db URL --out DIR``: the original's nightly cron job.

After a night's frames are reduced (``nres night``), this stacks that night's processed
calibrations into masters (:func:`~nres.pipeline.calibrations.stack_calibrations`: BIAS, DARK,
then LAMPFLAT per fiber pair, whose traces, profiles and blaze are measured again on the master
flat: the refined traces later frames use) and combines its DOUBLEs of both fiber pairs into a
TRIPLE (:func:`~nres.pipeline.night.make_triple`). The night is the database's frames of the site
with that DAY-OBS (default: yesterday, UTC). Exit status 0 if any master was made, 2 if none.
"""

from __future__ import annotations

__all__ = ["add_arguments", "run", "nightly"]

DEFAULT_URL = "sqlite:///nres.sqlite"  # literal: nres --help must not import SQLAlchemy


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument("--site", required=True, help="SITEID, e.g. lsc")
    parser.add_argument("--day-obs", default=None, help="DAY-OBS YYYYMMDD of the night (default yesterday)")
    parser.add_argument(
        "--db", default=DEFAULT_URL, help=f"SQLAlchemy URL or SQLite file (default {DEFAULT_URL})"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory of the masters")
    parser.add_argument("--min-frames", type=int, default=None, help="fewest inputs (default per type)")


def nightly(db, *, site, day_obs, out_dir, min_frames=None) -> list[dict]:
    """Masters and TRIPLE of one night's processed calibrations; the registered rows.

    Raises
    ------
    MissingCalibrationError
        No processed calibration frame of ``site`` with DAY-OBS ``day_obs`` in ``db``.
    """
    import logging

    from ..errors import MissingCalibrationError
    from .calibrations import STACKABLE, stack_calibrations
    from .night import make_triple

    log = logging.getLogger("nres.pipeline.nightly")
    site, day = str(site).lower(), str(day_obs).replace("-", "")
    frames = [
        r for r in db.frames_table(success=True)
        if str(r["site"]).lower() == site and str(r["day_obs"]) == day and r["mjd_obs"] is not None
    ]  # fmt: skip
    if not frames:
        msg = f"nightly: no processed frame of site {site} with DAY-OBS {day} in the database"
        raise MissingCalibrationError(msg)
    rows = []
    for camera in sorted({str(r["camera"]) for r in frames}):
        mine = [r for r in frames if str(r["camera"]) == camera]
        start = min(float(r["mjd_obs"]) for r in mine) - 1e-6
        end = max(float(r["mjd_obs"]) for r in mine) + 1e-6
        for kind in STACKABLE:
            if not any(str(r["obstype"]) == kind for r in mine):
                continue
            try:
                rows += stack_calibrations(kind, site=site, camera=camera, start=start, end=end, db=db,
                                           out_dir=out_dir, min_frames=min_frames)  # fmt: skip
            except MissingCalibrationError as err:
                log.warning("%s", err)
        triple = make_triple(db, site=site, camera=camera, start=start, end=end, out_dir=out_dir)
        rows += [triple] if triple else []
    return rows


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from .db import Database

    day = args.day_obs or (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    rows = nightly(Database(args.db), site=args.site, day_obs=day, out_dir=args.out,
                   min_frames=args.min_frames)  # fmt: skip
    for row in rows:
        print(f"{row['obstype']} {row['fiber_state'] or '-'} {row['nframes']} frames: {row['path']}")
    return 0 if rows else 2
