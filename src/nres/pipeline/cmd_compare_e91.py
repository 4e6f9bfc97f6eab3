"""``nres compare-e91 E91 PRODUCT_1D``: per-order differences between an e91 file and an nres 1-D product."""

from __future__ import annotations

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument(
        "e91", metavar="E91", help="e91 file (.fits or fpacked .fits.fz), the original's or nres's"
    )
    parser.add_argument("product", metavar="PRODUCT_1D", help="nres -1d.fits product of the same frame")
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the table (ECSV)")


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from .e91 import compare_e91

    table = compare_e91(args.e91, args.product)
    for name in ("dv_median", "dv_max"):
        table[name].info.format = ".3f"
    table["flux_ratio"].info.format = ".5f"
    table.pprint_all()
    meta = table.meta
    print(
        f"RV: e91 {meta['rv_e91'].value:.2f} m/s, product {meta['rv_product'].value:.2f} m/s, "
        f"difference {meta['rv_difference'].value:.2f} m/s; flux: {meta['flux_unit_note']}"
    )
    if args.out:
        from .products import atomic_path

        with atomic_path(args.out) as tmp:
            table.write(tmp, format="ascii.ecsv")
    return 0
