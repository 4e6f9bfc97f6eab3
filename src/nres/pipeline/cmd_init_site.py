"""``nres init-site``: directory layout and database for a new site (the original's cold start).

The original's cold start (idl-rv-ops.md 25) made ``<root>/<site>/<nresNN>/reduced/`` with 21
subdirectories, copied the shipped CSV tables (not another site's, which would drag in foreign
calibrations) and then stacked biases, darks, flats and arcs. :func:`init_site` does the first
part: the layout, a fresh database with the shipped target list (the original's targets.csv,
packaged in :mod:`nres.instrument` data) and, with ``layout="idl"``, the original's subdirectories
and empty CSV tables for tools that expect them. Calibrations then come from reducing the site's
first nights (bias -> dark -> flats -> arcs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["add_arguments", "run", "init_site", "SiteLayout", "NRES_SUBDIRS", "IDL_SUBDIRS", "TARGETS_CSV"]

#: Subdirectories of ``reduced/`` in the nres layout.
NRES_SUBDIRS = ("bias", "dark", "flat", "arc", "trace", "zero", "spec", "rv", "plot", "qc", "csv", "log")
#: The original's 21 subdirectories of ``reduced/`` (idl-rv-ops.md 22).
IDL_SUBDIRS = (
    "bias",
    "blaz",
    "ccor",
    "class",
    "config",
    "csv",
    "dark",
    "dble",
    "diag",
    "expm",
    "extr",
    "flat",
    "plot",
    "rv",
    "spec",
    "tar",
    "temp",
    "thar",
    "trace",
    "trip",
    "zero",
)
#: The shipped target list (LCOGT/nres-pipe csv/targets.csv, see instrument/data/DATA_SOURCES).
TARGETS_CSV = Path(__file__).parents[1] / "instrument" / "data" / "targets.csv"


@dataclass(frozen=True)
class SiteLayout:
    """Where a site's data go: ``instance`` = ``<root>/<site>/<instrument>``, ``reduced``, ``db_url``."""

    site: str
    instrument: str
    instance: Path
    reduced: Path
    db_url: str


def init_site(
    root,
    site: str,
    *,
    instrument: str | None = None,
    db_url: str | None = None,
    layout: str = "nres",
    targets=TARGETS_CSV,
) -> SiteLayout:
    """Create the layout and database of a new site (idempotent: existing content is kept).

    Parameters
    ----------
    root : str or os.PathLike
        Data root (the original's ``NRES_DATA_ROOT``).
    site : str
        Site code (lsc, elp, cpt, tlv, bpl).
    instrument : str, optional
        NRES unit (TELESCOP); default the site's (required for the lab, bpl).
    db_url : str, optional
        Database URL; default an SQLite file ``<instance>/nres.sqlite``.
    layout : {"nres", "idl"}
        ``"idl"`` also creates the original's 21 ``reduced/`` subdirectories and empty
        standards/zeros/rv CSV tables plus the targets table in ``reduced/csv/``.
    targets : path or None
        Target list imported into an empty targets table (None: none).

    Returns
    -------
    SiteLayout
    """
    from ..errors import InvalidParameterError
    from ..instrument.sites import get_site
    from .db import Base, Database

    info = get_site(site)
    unit = (instrument or info.instrument or "").lower()
    if not unit:
        raise InvalidParameterError(
            f"init-site: site {info.code!r} has no NRES unit; pass instrument='nres0N'"
        )
    if layout not in ("nres", "idl"):
        raise InvalidParameterError(f"layout: expected 'nres' or 'idl', got {layout!r}")
    instance = Path(os.fspath(root)) / info.code / unit
    reduced = instance / "reduced"
    subdirs = NRES_SUBDIRS + (IDL_SUBDIRS if layout == "idl" else ())
    for name in subdirs:
        (reduced / name).mkdir(parents=True, exist_ok=True)
    (instance / "raw").mkdir(parents=True, exist_ok=True)
    url = db_url or f"sqlite:///{(instance / 'nres.sqlite').resolve()}"
    db = Database(url)
    try:
        Base.metadata.create_all(db.engine)  # the SQLite file exists even when nothing is imported
        if targets is not None and len(db.targets_table()) == 0:
            db.import_csv("targets", targets)
        if layout == "idl":
            for kind in ("standards", "zeros", "targets", "rv"):
                out = reduced / "csv" / f"{kind}.csv"
                if not out.exists():
                    db.export_csv(kind, out, root=reduced)
    finally:
        db.close()
    return SiteLayout(info.code, unit, instance, reduced, url)


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument("root", help="data root directory")
    parser.add_argument("--site", required=True, help="site code: lsc, elp, cpt, tlv or bpl")
    parser.add_argument("--instrument", default=None, help="NRES unit, e.g. nres01 (default: the site's)")
    parser.add_argument("--db", default=None, help="database URL (default <root>/<site>/<unit>/nres.sqlite)")
    parser.add_argument(
        "--layout",
        choices=("nres", "idl"),
        default="nres",
        help="'idl' adds the original's reduced/ subdirectories and CSV tables",
    )
    parser.add_argument("--no-targets", action="store_true", help="do not load the shipped target list")


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    out = init_site(
        args.root,
        args.site,
        instrument=args.instrument,
        db_url=args.db,
        layout=args.layout,
        targets=None if args.no_targets else TARGETS_CSV,
    )
    print(f"site {out.site} ({out.instrument}): raw files go to {out.instance / 'raw'}")
    print(f"products under {out.reduced}; database {out.db_url}")
    return 0
