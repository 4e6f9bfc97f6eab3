"""``nres stack --type BIAS --site lsc --camera fa09 --start MJD --end MJD --db URL``: make masters."""

from __future__ import annotations

__all__ = ["add_arguments", "run"]

DEFAULT_URL = "sqlite:///nres.sqlite"  # literal: nres --help must not import SQLAlchemy


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument("--type", required=True, type=str.upper, choices=("BIAS", "DARK", "LAMPFLAT"),
                        help="frame type to stack")  # fmt: skip
    parser.add_argument("--site", required=True, help="SITEID, e.g. lsc")
    parser.add_argument("--camera", required=True, help="INSTRUME, e.g. fa09")
    parser.add_argument("--start", type=float, required=True, help="first MJD of the inputs")
    parser.add_argument("--end", type=float, required=True, help="last MJD of the inputs")
    parser.add_argument(
        "--db", default=DEFAULT_URL, help=f"SQLAlchemy URL or SQLite file (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="directory of the masters (default: the inputs')"
    )
    parser.add_argument("--min-frames", type=int, default=None, help="fewest inputs (default per type)")


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from .calibrations import stack_calibrations
    from .db import Database

    rows = stack_calibrations(
        args.type, site=args.site, camera=args.camera, start=args.start, end=args.end, db=Database(args.db),
        out_dir=args.out, min_frames=args.min_frames,
    )  # fmt: skip
    for row in rows:
        print(f"{row['obstype']} {row['fiber_state'] or '-'} {row['nframes']} frames: {row['path']}")
    return 0
