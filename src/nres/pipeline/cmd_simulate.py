"""``nres simulate``: write a simulated frame (FITS) and its truth (npz + ECSV); with ``--night``, a
whole night of raw NRES files in the archive layout and its truth table (``nres.sim.simulate_night``)."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument(
        "--type",
        dest="obstype",
        default="TARGET",
        choices=["BIAS", "DARK", "LAMPFLAT", "DOUBLE", "TARGET"],
        help="OBSTYPE to simulate",
    )
    parser.add_argument("--site", default="lsc", help="NRES site code")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--window",
        type=int,
        nargs=4,
        metavar=("Y0", "Y1", "X0", "X1"),
        help="full-detector crop rows Y0:Y1, columns X0:X1",
    )
    parser.add_argument(
        "--orders",
        type=int,
        nargs=2,
        metavar=("M0", "M1"),
        help="crop to physical orders M0..M1 (with --columns)",
    )
    parser.add_argument("--columns", type=int, nargs=2, default=(0, 4096), metavar=("X0", "X1"))
    parser.add_argument("--rv", type=float, default=0.0, help="star radial velocity, km/s")
    parser.add_argument("--mjd", type=float, default=58400.5)
    parser.add_argument("--raw", action="store_true", help="raw-like ADU frame with overscan")
    parser.add_argument("--out", default=".", help="output directory")
    night = parser.add_argument_group("a whole night of raw files (--night)")
    night.add_argument("--night", action="store_true", help="simulate a night in the archive layout")
    night.add_argument("--day-obs", help="DAY-OBS of the night, YYYY-MM-DD (with --night)")
    night.add_argument("--n-bias", type=int, default=5)
    night.add_argument("--n-dark", type=int, default=3)
    night.add_argument("--n-flat", type=int, default=2, help="lamp flats per fiber pair")
    night.add_argument("--n-arc", type=int, default=2, help="ThAr arcs per fiber pair")
    night.add_argument("--n-exposures", type=int, default=3, help="exposures per default target star")
    night.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_night(args, window) -> int:
    import dataclasses

    from ..errors import InvalidParameterError
    from ..sim import simulate_night
    from ..sim.night import DEFAULT_TARGETS

    if not args.day_obs:
        msg = "nres simulate --night: --day-obs YYYY-MM-DD is required"
        raise InvalidParameterError(msg)
    targets = [dataclasses.replace(t, n_exposures=args.n_exposures) for t in DEFAULT_TARGETS]
    path = simulate_night(
        args.site, args.day_obs, args.out, n_bias=args.n_bias, n_dark=args.n_dark, n_flat=args.n_flat,
        n_arc=args.n_arc, targets=targets, window=window, seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip
    print(path)
    return 0


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from ..sim import simulate

    window = tuple(args.window) if args.window else None
    if args.night:
        if args.orders:
            window = {"orders": tuple(args.orders), "columns": tuple(args.columns)}
        return _run_night(args, window)
    if args.orders:
        window = {"orders": tuple(args.orders), "columns": tuple(args.columns)}
    frame, truth = simulate(
        args.obstype,
        site=args.site,
        seed=args.seed,
        window=window,
        raw=args.raw,
        mjd=args.mjd,
        rv=args.rv * u.km / u.s,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"sim_{args.site}_{args.obstype.lower()}_{args.seed}"
    path = out / f"{stem}.fits"
    hdr_frame = frame.copy()
    hdr_frame.data = frame.data.astype("float32") if not args.raw else frame.data
    hdr_frame.write(path, overwrite=True, hdu_flags="FLAGS" if not args.raw else None)
    files = [path] + truth.write(out / f"{stem}_truth")
    for f in files:
        print(f)
    return 0
