"""The ``nres`` command line.

Each subcommand lives in its own module with two functions, ``add_arguments(parser)`` and
``run(args) -> int``; :data:`COMMANDS` maps the subcommand to that module, so ``nres --help`` stays
fast (modules load only when their command runs).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .._version import __version__
from ..errors import NRESError

__all__ = ["main", "COMMANDS"]

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("nres.pipeline.cmd_simulate", "simulate a frame (FITS) and its truth (npz + ECSV)"),
    "demo": ("nres.pipeline.cmd_demo", "simulate a small night and reduce it end to end (RVs vs truth)"),
    "model": ("nres.pipeline.cmd_model", "wavelength coverage of every order and fiber of a site"),
    "trace": ("nres.pipeline.cmd_trace", "trace the orders of a lamp flat"),
    "db": ("nres.pipeline.cmd_db", "import/export the original's CSV tables (standards, zeros, targets, rv)"),
    "init-site": ("nres.pipeline.cmd_init_site", "directory layout and database for a new site"),
    "reduce": ("nres.pipeline.cmd_reduce", "reduce raw files with the database's calibrations"),
    "night": ("nres.pipeline.cmd_night", "reduce a night of raw files (bias, dark, flats, arcs, targets)"),
    "stack": ("nres.pipeline.cmd_stack", "stack processed calibrations into masters"),
    "nightly": ("nres.pipeline.cmd_nightly", "nightly job: stack a night's masters, traces, TRIPLE"),
    "make-zero": ("nres.pipeline.cmd_make_zero", "build a ZERO template from extracted spectra of one star"),
    "compare-e91": ("nres.pipeline.cmd_compare_e91", "per-order differences: an e91 file vs a 1-D product"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nres", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nres {__version__}")
    levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    parser.add_argument("--log-level", default="WARNING", type=str.upper, choices=levels, help="log level")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (modname, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=modname)
        importlib.import_module(modname).add_arguments(p)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``nres`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    from .logging import setup_logging

    setup_logging(args.log_level, json=args.log_json)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except NRESError as err:
        print(f"nres {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
