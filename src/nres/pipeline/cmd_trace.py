"""``nres trace``: trace the orders of a processed lamp flat (or a 0+1 / 1+2 pair) and write them."""

from __future__ import annotations

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument(
        "flats",
        nargs="+",
        metavar="FLAT",
        help="processed lamp flat(s) (FITS, electrons, with variance); a second flat "
        "lighting the other telescope fiber gives all three fibers",
    )
    parser.add_argument("--out", required=True, help="output nres TRACES file (FITS)")
    parser.add_argument("--site", default=None, help="site of the reference table (default: SITEID)")
    parser.add_argument(
        "--fibers", default=None, help="lit fibers of the first flat, e.g. 0,1 (default: from OBJECTS)"
    )
    parser.add_argument("--degree", type=int, default=6, help="Legendre degree of each trace")
    parser.add_argument("--idl-out", default=None, help="also write the original's TRACE layout here")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _read(path):
    from astropy.nddata import CCDData

    from ..errors import InvalidInputFileError

    try:
        return CCDData.read(path, unit="electron")
    except FileNotFoundError as err:
        raise InvalidInputFileError(path, "file does not exist") from err
    except (OSError, ValueError) as err:
        raise InvalidInputFileError(path, f"not a processed flat ({err})") from err


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from ..extract import find_traces, refine_traces

    fibers = None if args.fibers is None else tuple(int(f) for f in args.fibers.split(","))
    flats = [_read(p) for p in args.flats[:2]]
    traces = find_traces(flats[0], site=args.site, fibers=fibers, degree=args.degree)
    if len(flats) == 2:
        other = find_traces(flats[1], site=args.site, degree=args.degree)
        new = other.select(fibers=sorted(set(other.fibers.tolist()) - set(traces.fibers.tolist())))
        import numpy as np

        from ..traces import Traces

        union = Traces(
            np.vstack([traces.coefficients, new.coefficients]),
            np.concatenate([traces.orders, new.orders]),
            np.concatenate([traces.fibers, new.fibers]),
            x_domain=traces.x_domain,
            x_valid=np.vstack([traces.x_valid, new.x_valid]),
            box_height=traces.box_height,
            meta=traces.meta,
            nuisance=np.concatenate([traces.nuisance, new.nuisance]),
        )
        traces = refine_traces(flats[0], union, flat2=flats[1], fibers=fibers)
    traces.write(args.out, overwrite=args.overwrite)
    if args.idl_out:
        from ..io.idl_trace_fits import write_idl_trace

        meta = flats[0].meta
        write_idl_trace(
            args.idl_out,
            traces,
            overwrite=args.overwrite,
            header={k: meta[k] for k in ("SITEID", "INSTRUME", "DAY-OBS") if k in meta},
        )
    fib = sorted(set(traces.fibers.tolist()))
    print(
        f"{args.out}: {len(traces)} traces, fibers {fib}, "
        f"orders {traces.orders.min()}..{traces.orders.max()}, "
        f"fit rms {traces.meta.get('FITRMS', float('nan')):.4f} px"
    )
    return 0
