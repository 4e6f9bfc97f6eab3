"""``nres reduce FILE... --db URL --out DIR``: reduce raw files with the database's calibrations."""

from __future__ import annotations

__all__ = ["add_arguments", "run"]

DEFAULT_URL = "sqlite:///nres.sqlite"  # literal: nres --help must not import SQLAlchemy


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="raw NRES files")
    parser.add_argument(
        "--db", default=DEFAULT_URL, help=f"SQLAlchemy URL or SQLite file (default {DEFAULT_URL})"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory of the products")
    parser.add_argument("--force", action="store_true", help="reduce files already reduced (same checksum)")
    parser.add_argument(
        "--template", default=None, help="RV reference: 'simulated' (simulated nights) or a line-mask file"
    )
    parser.add_argument("--no-plot", action="store_true", help="no summary figure for TARGET frames")
    parser.add_argument(
        "--summary-format", choices=("png", "pdf", "both"), default="png", help="summary figure file type(s)"
    )
    parser.add_argument("--e91", action="store_true", help="also write the original's e91 file per TARGET")


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from .db import Database
    from .recipes import reduce_file

    db = Database(args.db)
    failed = 0
    for path in args.files:
        res = reduce_file(path, db=db, out_dir=args.out, force=args.force, template=args.template,
                          plot=not args.no_plot, summary_format=args.summary_format,
                          e91=args.e91)  # fmt: skip
        if res.status == "failed":
            failed += 1
            print(f"{path}: FAILED {res.reason}")
        else:
            print(f"{path}: {res.status}; " + ", ".join(str(p) for p in res.products))
    return 1 if failed else 0
