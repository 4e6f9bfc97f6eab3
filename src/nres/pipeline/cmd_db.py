"""``nres db``: import and export the original pipeline's CSV tables (standards, zeros, targets, rv).

``nres db import-csv KIND FILE --db URL`` loads a CSV table into the database (created on demand);
``nres db export-csv KIND FILE --db URL`` writes it back in the original's format.
"""

from __future__ import annotations

__all__ = ["add_arguments", "run"]

# literals, so that ``nres --help`` does not import SQLAlchemy (a test checks they match
# nres.pipeline.db.DEFAULT_URL and nres.pipeline.legacy_csv.CSV_KINDS)
DEFAULT_URL = "sqlite:///nres.sqlite"
CSV_KINDS = ("standards", "zeros", "targets", "rv")


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    imp = sub.add_parser(
        "import-csv",
        help="load one of the original's CSV tables into the database",
        description="load one of the original's CSV tables into the database",
    )
    exp = sub.add_parser(
        "export-csv",
        help="write a database table in the original's CSV format",
        description="write a database table in the original's CSV format",
    )
    for p in (imp, exp):
        p.add_argument("kind", choices=CSV_KINDS, help="which table")
        p.add_argument("csv", metavar="FILE", help="the CSV file")
        p.add_argument(
            "--db", default=DEFAULT_URL, help=f"SQLAlchemy URL or SQLite file (default {DEFAULT_URL})"
        )
        p.add_argument("--root", default=None, help="directory the Filename column is relative to (reduced/)")
    imp.add_argument("--replace", action="store_true", help="empty the table first")
    imp.add_argument(
        "--instrument", default=None, help="standards: TELESCOP of every row (default: from Site)"
    )
    exp.add_argument("--no-overwrite", action="store_true", help="fail if FILE exists")


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from .db import Database

    db = Database(args.db)
    try:
        if args.db_command == "import-csv":
            n = db.import_csv(
                args.kind, args.csv, replace=args.replace, instrument=args.instrument, root=args.root
            )
            print(f"{args.csv}: {n} {args.kind} rows imported into {db.url}")
        else:
            n = db.export_csv(args.kind, args.csv, root=args.root, overwrite=not args.no_overwrite)
            print(f"{args.csv}: {n} {args.kind} rows exported from {db.url}")
    finally:
        db.close()
    return 0
