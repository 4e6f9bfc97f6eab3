"""``nres demo [--out DIR]``: simulate a small windowed night and reduce it end to end.

Three stars of known RV (:data:`nres.sim.night.DEFAULT_TARGETS`: tau Ceti, HD 20794, HD 85512 in
fiber 2) observed in a window of the detector (orders ``--orders``, columns ``--columns``), with
biases, darks, lamp flats and ThAr arcs of both fiber pairs; :func:`nres.pipeline.night.reduce_night`
reduces it (local process pool) against the simulator's noiseless stars as templates. The
measured barycentric RVs are compared with the injected ``c z_star`` of each exposure; the table
(``demo_rvs.ecsv``) goes to the output folder with the products and summary PNGs.

An RV passes when ``|measured - injected| <= max(3 m/s, 4 sigma)`` with sigma the total error of
:func:`nres.pipeline.qc.error_budget`: photon noise and the drift correction's error (independent
between exposures), the master wavelength solution's error (:func:`~nres.pipeline.qc.wavecal_rv_error`)
and the flat's (:func:`~nres.pipeline.qc.flat_rv_error`), which the exposures they calibrate share.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = [
    "add_arguments",
    "run",
    "run_demo",
    "star_summary",
    "DEMO_WINDOW",
    "N_EXPOSURES",
    "N_FLATS",
    "N_ARCS",
]

#: Default window: 8 orders (m = 80..87, 515-560 nm, Mg b in m = 87) x 2048 columns.
DEMO_WINDOW = {"orders": (80, 87), "columns": (1024, 3072)}
DAY_OBS = "2019-04-05"
#: Exposures per star. One 600 s exposure in the default window gives a ~1.7 m/s photon error (the
#: brightest pixels are near MAXLIN already, so a longer exposure cannot help); the errors of a star's
#: mean (docs/pipeline.md "RV error budget"): its exposures' photon and drift errors average down, the
#: calibrations' do not. Measured per star (3 nights): 4 exposures, 2 flats and 1 arc per fiber pair
#: 1.28-1.45 m/s (wavelength solution 0.7, flat 0.75, exposures 0.85); with N_FLATS, N_ARCS and
#: N_EXPOSURES below 0.87-0.98 m/s (0.37, 0.44, 0.7) for +13 s (36 s instead of 23 s warm).
N_EXPOSURES = 6
#: Lamp flats per fiber pair: the flat's blaze noise is common to a star's exposures (0.76 m/s with 2).
N_FLATS = 6
#: ThAr arcs per fiber pair, all combined into the night's TRIPLE (wavelength error 0.7 m/s with 1).
N_ARCS = 3


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument("--out", default="nres_demo", metavar="DIR", help="output folder (default nres_demo)")
    parser.add_argument("--orders", type=int, nargs=2, default=DEMO_WINDOW["orders"], metavar=("M0", "M1"))
    parser.add_argument(
        "--columns",
        type=int,
        nargs=2,
        default=DEMO_WINDOW["columns"],
        metavar=("X0", "X1"),
        help="end exclusive",
    )
    parser.add_argument("--n-bias", type=int, default=3, help="bias frames (default 3)")
    parser.add_argument("--n-dark", type=int, default=2, help="dark frames (default 2)")
    parser.add_argument(
        "--n-flat", type=int, default=N_FLATS, help=f"lamp flats per fiber pair (default {N_FLATS})"
    )
    parser.add_argument("--n-arc", type=int, default=N_ARCS, help=f"arcs per fiber pair (default {N_ARCS})")
    parser.add_argument(
        "--n-exposures", type=int, default=N_EXPOSURES, help=f"exposures per star (default {N_EXPOSURES})"
    )
    parser.add_argument(
        "--exptime", type=float, default=600.0, help="seconds per star exposure (default 600: near MAXLIN)"
    )
    parser.add_argument("--workers", type=int, default=None, help="local processes (default: CPU count)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated night")


def run_demo(
    out,
    *,
    orders=DEMO_WINDOW["orders"],
    columns=DEMO_WINDOW["columns"],
    n_bias=3,
    n_dark=2,
    n_flat=N_FLATS,
    n_arc=N_ARCS,
    n_exposures=N_EXPOSURES,
    exptime=600.0,
    workers=None,
    seed=0,
    progress=True,
    executor=None,
):
    """Simulate and reduce the demonstration night; returns ``(table, paths)``.

    ``table`` (astropy Table, also written to ``<out>/demo_rvs.ecsv``): per TARGET exposure the
    file, star, fiber, injected and measured barycentric RV (m/s), photon, wavelength-calibration
    and total errors, the difference and whether it passes. ``paths``: ``archive`` (raw night),
    ``reduced`` (products), ``db``, ``table``, ``seconds``.
    """
    from dataclasses import replace

    import numpy as np
    from astropy.table import Table

    from ..doppler import C_M_S
    from ..sim import simulate_night
    from ..sim.night import DEFAULT_TARGETS
    from .db import Database
    from .night import reduce_night
    from .qc import error_budget

    t0 = time.perf_counter()
    out = Path(os.fspath(out))
    targets = [replace(t, n_exposures=int(n_exposures), exptime=float(exptime)) for t in DEFAULT_TARGETS]
    window = {"orders": tuple(orders), "columns": tuple(columns)}
    truth_path = simulate_night(
        "lsc", DAY_OBS, out / "archive", n_bias=n_bias, n_dark=n_dark, n_flat=n_flat, n_arc=n_arc,
        targets=targets, window=window, seed=seed, overwrite=True, progress=progress,
    )  # fmt: skip
    t_sim = time.perf_counter() - t0
    reduced = out / "reduced"
    db_path = out / "nres.sqlite"
    if db_path.exists():
        db_path.unlink()  # a fresh database: the demo's raw files are new each run
    db = Database(f"sqlite:///{db_path}")
    minimum = {"BIAS": 1, "DARK": 1, "LAMPFLAT": 1}
    result = reduce_night(
        truth_path.parent / "raw", reduced, db=db, executor=executor, template="simulated",
        min_frames=minimum, progress=progress, max_workers=workers,
    )  # fmt: skip
    truth = Table.read(truth_path)
    truth = truth[truth["obstype"] == "TARGET"]
    rvs = db.rv_table()
    by_name = {str(r["orgname"]): r for r in rvs}
    rows = []
    for t in truth:
        r = by_name.get(str(t["filename"]))
        injected = float(t["z_star"]) * C_M_S  # barycentric RV: c z_star (1 + z_obs = (1+z_star)/(1+z_B))
        if r is None:
            rows.append((str(t["filename"]), str(t["target"]), int(t["science_fiber"]), injected,
                         *[np.nan] * 8, False))  # fmt: skip
            continue
        qc = r["qc"] if isinstance(r["qc"], dict) else json.loads(str(r["qc"]) or "{}")
        photon = float(r["rv_err"])
        drift = qc.get("drift_err_m_s")
        wave = float(qc.get("rv_err_wavecal_m_s", 0.0))
        flat = float(qc.get("rv_err_flat_m_s", 0.0))
        budget = error_budget(photon, drift=drift, wavecal=wave, flat=flat)
        total = budget["rv_err_total_m_s"]
        diff = float(r["rv"]) - injected
        ok = abs(diff) <= max(3.0, 4.0 * total)
        rows.append((str(t["filename"]), str(t["target"]), int(t["science_fiber"]), injected, float(r["rv"]),
                     photon, np.nan if drift is None else float(drift), budget["rv_err_exposure_m_s"], wave,
                     flat, total, diff, ok))  # fmt: skip
    names = ("filename", "target", "fiber", "rv_injected", "rv_measured", "rv_err_photon", "rv_err_drift",
             "rv_err_exposure", "rv_err_wavecal", "rv_err_flat", "rv_err_total", "difference",
             "within_limit")  # fmt: skip
    table = Table(rows=rows, names=names) if rows else Table(names=names)
    for col in names[3:12]:
        table[col].unit = "m / s"
        table[col].format = ".2f"
    table.meta["limit"] = "|difference| <= max(3 m/s, 4 rv_err_total)"
    table.meta["window"] = {"orders": list(orders), "columns": list(columns)}
    table.meta["failures"] = [f"{Path(p).name}: {reason}" for p, reason in result.failures]
    table_path = out / "demo_rvs.ecsv"
    table.write(table_path, format="ascii.ecsv", overwrite=True)
    stars = star_summary(table)
    stars_path = out / "demo_stars.ecsv"
    stars.write(stars_path, format="ascii.ecsv", overwrite=True)
    seconds = time.perf_counter() - t0
    paths = {"archive": out / "archive", "reduced": reduced, "db": db_path, "table": table_path,
             "stars": stars_path, "stars_table": stars,
             "seconds": seconds, "simulate_seconds": t_sim, "failures": result.failures}  # fmt: skip
    return table, paths


def star_summary(table):
    """Per star: the inverse-variance weighted mean of its exposures' differences.

    The per-exposure errors (photon and drift, ``rv_err_exposure``) are independent and average
    down (the mean's: ``1 / sqrt(sum 1 / sigma_i^2)``); the master wavelength solution's and the
    flat's errors are shared by every exposure they calibrate and do not (``rv_err_wavecal``,
    ``rv_err_flat``: the exposures' means). Returns an astropy Table: ``target``, ``n``,
    ``difference``, ``rv_err_exposure``, ``rv_err_wavecal``, ``rv_err_flat``, ``rv_err_total`` (m/s)
    and ``within_limit`` (``|difference| <= max(3 m/s, 4 rv_err_total)``).
    """
    import numpy as np
    from astropy.table import Table

    rows = []
    for name in sorted(set(table["target"].tolist())):
        sel = table[(table["target"] == name) & np.isfinite(np.asarray(table["rv_measured"], dtype=float))]
        if len(sel) == 0:
            rows.append((name, 0, np.nan, np.nan, np.nan, np.nan, np.nan, False))
            continue
        w = 1.0 / np.asarray(sel["rv_err_exposure"], dtype=float) ** 2
        diff = float(np.sum(w * np.asarray(sel["difference"], dtype=float)) / np.sum(w))
        exposure = float(1.0 / np.sqrt(np.sum(w)))
        wave = float(np.mean(np.asarray(sel["rv_err_wavecal"], dtype=float)))
        flat = float(np.mean(np.asarray(sel["rv_err_flat"], dtype=float)))
        total = float(np.sqrt(exposure**2 + wave**2 + flat**2))
        rows.append((name, len(sel), diff, exposure, wave, flat, total, abs(diff) <= max(3.0, 4.0 * total)))
    names = ("target", "n", "difference", "rv_err_exposure", "rv_err_wavecal", "rv_err_flat", "rv_err_total",
             "within_limit")  # fmt: skip
    stars = Table(rows=rows, names=names) if rows else Table(names=names)
    for col in names[2:7]:
        stars[col].unit = "m / s"
        stars[col].format = ".2f"
    return stars


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    table, paths = run_demo(
        args.out, orders=args.orders, columns=args.columns, n_bias=args.n_bias, n_dark=args.n_dark,
        n_flat=args.n_flat, n_arc=args.n_arc, n_exposures=args.n_exposures, exptime=args.exptime,
        workers=args.workers,
        seed=args.seed,
    )  # fmt: skip
    show = table[
        "filename", "target", "rv_injected", "rv_measured", "rv_err_total", "difference", "within_limit"
    ]
    print()
    show.pprint(max_lines=-1, max_width=-1)
    n_ok = int(sum(bool(v) for v in table["within_limit"]))
    print(f"\n{n_ok}/{len(table)} RVs within max(3 m/s, 4 sigma) of the injected values")
    print("\nper star (weighted mean of its exposures; the calibrations' errors do not average down):")
    paths["stars_table"].pprint(max_lines=-1, max_width=-1)
    for path, reason in paths["failures"]:
        print(f"FAILED {Path(path).name}: {reason}")
    print(f"raw night:  {paths['archive']}")
    print(f"products:   {paths['reduced']} (*-1d.fits spectra and RVs, *-summary.png plots, masters)")
    print(f"database:   {paths['db']}")
    print(f"RV table:   {paths['table']}")
    print(f"per star:   {paths['stars']}")
    print(f"time:       {paths['seconds']:.1f} s (simulation {paths['simulate_seconds']:.1f} s)")
    return 0 if n_ok == len(table) and len(table) > 0 else 1
