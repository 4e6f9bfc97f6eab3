"""``nres model``: wavelength coverage of every order and fiber of a site's physical model.

Prints one line per (fiber, order): the wavelength at the first and last detector column and the
blaze-centre (Littrow) wavelength, and writes a PNG of the coverage against order.
"""

from __future__ import annotations

import time

__all__ = ["add_arguments", "run", "coverage_rows", "plot_coverage"]


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument("--site", default="lsc", help="NRES site: lsc, elp, cpt, tlv or bpl (default lsc)")
    parser.add_argument(
        "--mjd",
        type=float,
        default=None,
        help="MJD of the data (default: now); selects the spectrographs.csv row",
    )
    parser.add_argument(
        "--fiber",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="print only this fiber (default: all three)",
    )
    parser.add_argument(
        "--plot",
        default=None,
        metavar="PATH",
        help="PNG to write (default: nres_model_<site>.png in the current directory)",
    )


def coverage_rows(model, fibers=(0, 1, 2)):
    """``(fiber, order, lam_min_nm, lam_max_nm, lam_blaze_nm)`` for every fiber and order.

    ``lam_min``/``lam_max`` are the wavelengths at columns 0 and nx - 1; ``lam_blaze`` is
    :meth:`~nres.instrument.PhysicalModel.blaze_wavelength` (fiber-independent).
    """
    import astropy.units as u
    import numpy as np

    grid = model.wavelength_grid().to_value(u.nm)
    blaze = model.blaze_wavelength(model.orders).to_value(u.nm)
    rows = []
    for fiber in fibers:
        for i, order in enumerate(model.orders):
            rows.append(
                (int(fiber), int(order), float(grid[fiber, i, 0]), float(grid[fiber, i, -1]), float(blaze[i]))
            )
    return np.array(
        rows,
        dtype=[("fiber", "i8"), ("order", "i8"), ("lam_min", "f8"), ("lam_max", "f8"), ("lam_blaze", "f8")],
    )


def plot_coverage(rows, path, *, title="") -> None:
    """Write a PNG of wavelength coverage (bars from lam_min to lam_max) against order, per fiber."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 9))
    colours = {0: "tab:blue", 1: "tab:orange", 2: "tab:green"}
    offsets = {0: -0.25, 1: 0.0, 2: 0.25}
    for fiber in sorted(set(rows["fiber"].tolist())):
        r = rows[rows["fiber"] == fiber]
        y = r["order"] + offsets[fiber]
        ax.hlines(y, r["lam_min"], r["lam_max"], colors=colours[fiber], lw=1.5, label=f"fiber {fiber}")
    first = rows[rows["fiber"] == rows["fiber"][0]]
    ax.plot(first["lam_blaze"], first["order"], "k|", ms=6, label="blaze centre")
    ax.set_xlabel("vacuum wavelength (nm)")
    ax.set_ylabel("diffraction order m")
    ax.set_title(title)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from pathlib import Path

    from ..instrument import PhysicalModel
    from ..instrument.sites import get_site

    site = get_site(args.site)
    mjd = args.mjd if args.mjd is not None else time.time() / 86400.0 + 40587.0  # Unix epoch = MJD 40587
    model = PhysicalModel.for_site(site, mjd=mjd)
    fibers = (0, 1, 2) if args.fiber is None else (args.fiber,)
    rows = coverage_rows(model, fibers)
    print(
        f"NRES physical model, site {site.code} ({site.instrument or 'lab'}), data MJD {mjd:.5f}; "
        f"spectrographs.csv row of MJD {model.mjd}"
    )
    print("wavelengths in vacuum nm at columns 0 and 4095; blaze = Littrow wavelength of the order")
    print(f"{'fiber':>5} {'order':>5} {'index':>5} {'lam_min':>12} {'lam_max':>12} {'lam_blaze':>12}")
    for r in rows:
        print(
            f"{r['fiber']:>5d} {r['order']:>5d} {r['order'] - model.ord0:>5d} {r['lam_min']:>12.5f} "
            f"{r['lam_max']:>12.5f} {r['lam_blaze']:>12.5f}"
        )
    path = Path(args.plot) if args.plot else Path.cwd() / f"nres_model_{site.code}.png"
    plot_coverage(rows, path, title=f"NRES {site.code} physical model (csv row MJD {model.mjd})")
    print(f"coverage plot written to {path.resolve()}")
    return 0
