"""``nres night DIR --db URL --out DIR``: reduce a night of raw files (bias, dark, flats, arcs, targets)."""

from __future__ import annotations

__all__ = ["add_arguments", "run"]

DEFAULT_URL = "sqlite:///nres.sqlite"  # literal: nres --help must not import SQLAlchemy


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument("raw_dir", metavar="DIR", help="directory of raw NRES files")
    parser.add_argument(
        "--db", default=DEFAULT_URL, help=f"SQLAlchemy URL or SQLite file (default {DEFAULT_URL})"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory of the products")
    parser.add_argument("--executor", choices=("local", "dask"), default="local", help="where frames run")
    parser.add_argument(
        "--scheduler", default=None, metavar="ADDR", help="Dask scheduler address (--executor dask)"
    )
    parser.add_argument("--workers", type=int, default=None, help="local processes (default: CPU count)")
    parser.add_argument("--force", action="store_true", help="reduce frames and masters again")
    parser.add_argument(
        "--min-frames", type=int, default=None, help="fewest frames per master (default per type)"
    )
    parser.add_argument(
        "--template", default=None, help="RV reference: 'simulated' (simulated nights) or a line-mask file"
    )
    parser.add_argument("--no-plot", action="store_true", help="no summary figure for TARGET frames")
    parser.add_argument(
        "--summary-format", choices=("png", "pdf", "both"), default="png", help="summary figure file type(s)"
    )
    parser.add_argument("--e91", action="store_true", help="also write the original's e91 file per TARGET")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from .db import Database
    from .night import reduce_night

    db = Database(args.db)
    executor = client = None
    if args.executor == "dask":
        from distributed import Client

        from .batch import dask_executor

        client = Client(args.scheduler) if args.scheduler else Client()
        executor = dask_executor(client)
    try:
        result = reduce_night(
            args.raw_dir, args.out, db=db, executor=executor, force=args.force,
            progress=not args.no_progress, min_frames=args.min_frames, template=args.template,
            plot=not args.no_plot, max_workers=args.workers, summary_format=args.summary_format,
            e91=args.e91,
        )  # fmt: skip
    finally:
        if client is not None:
            client.close()
    counts = f"{result.n_done} frames reduced, {len(result.masters)} masters, {len(result.failures)} failures"
    print(f"nres night: {counts}")
    for path, reason in result.failures:
        print(f"  FAILED {path}: {reason}")
    return 1 if result.failures else 0
