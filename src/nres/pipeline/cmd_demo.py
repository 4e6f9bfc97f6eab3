"""``nres demo``: the demonstration job. Until the reduction pipeline exists it runs ``nres model``
for lsc (the physical model's wavelength coverage table and plot)."""

from __future__ import annotations

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    parser.add_argument(
        "--plot",
        default=None,
        metavar="PATH",
        help="PNG to write (default: nres_model_lsc.png in the current directory)",
    )


def run(args) -> int:
    import argparse

    from . import cmd_model

    print("nres demo: the full demonstration (simulate and reduce a night) arrives with the pipeline;")
    print("for now it runs `nres model --site lsc`.")
    return cmd_model.run(argparse.Namespace(site="lsc", mjd=None, fiber=None, plot=args.plot))
