"""The per-exposure RV error budget of the demo's window, rung by rung (an experiment, not a timing).

One star (tau Ceti, fiber 0, 600 s, the simulator's template) observed N times in the demo's window
(orders 80-87 x columns 1024-3071) on a few nights (seeds); each rung changes one thing between an
ideal reduction and the pipeline's. For every rung: the scatter of measured - injected RV around
each night's mean (the night's calibrations are common to its exposures), the median photon error
and sqrt(chi2/dof) of those residuals in the photon error, for the pipeline's RV (all orders, its
order clip; also judged in photon (+) drift error), the window's own orders 80-87 and the inner
orders 81-86 (both inverse-variance means of the per-order RVs, no clip). Per order: the rms pull
and each night's mean offset.

Rungs (in memory, processed-like frames without hot pixels, except ``night``):

- ``extracted``: nres.sim.simulate_extracted (no 2-D frame), 120 realisations;
- ``truth``: 2-D TARGET frames, traces/profiles from a noiseless flat, true wavelengths;
  ``truth_fixed``: the same at one time (no barycentric motion: pixel phase fixed);
  ``truth_noiseless``: noiseless TARGETs (deterministic per-exposure changes only);
- ``nlcal_drift`` / ``nlcal_nodrift``: noiseless flat and arcs, TRIPLE, drift correction on / off;
- ``noisy_drift`` / ``noisy_nodrift``: 2 flats and 1 arc per fiber pair as the demo, drift on / off;
- ``flats8``: as noisy_drift with 8 flats;
- ``wide``: as truth in a window of orders 78-89 (80-87 far from its edges);
- ``night``: the pipeline on raw files (simulate_night + reduce_night: bias, dark, cosmic rays).

``python benchmarks/error_budget_ladder.py [--seeds 0 1 2] [--n 16] [--rungs truth night ...]``
writes ``benchmarks/results/error_budget_ladder.json`` (with the commit it ran on). ~15-25 min on
2 cores for every rung. Results: docs/pipeline.md "RV error budget".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path

import astropy.units as u
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS

WINDOW = {"orders": (80, 87), "columns": (1024, 3072)}
#: about 19:00 local time at lsc on the demo night (simulate_night's first science exposure)
MJD0 = 58578.988
RUNGS = {
    "truth": {"wave": "truth", "noiseless_cal": True},
    "truth_fixed": {"wave": "truth", "noiseless_cal": True, "fixed": True},
    "truth_noiseless": {"wave": "truth", "noiseless_cal": True, "noiseless_target": True, "n": 6},
    "nlcal_drift": {"noiseless_cal": True},
    "nlcal_nodrift": {"noiseless_cal": True, "drift_correction": False},
    "noisy_drift": {},
    "noisy_nodrift": {"drift_correction": False},
    "flats8": {"n_flat": 8},
    "wide": {"wave": "truth", "noiseless_cal": True, "orders": (78, 89)},
}


def _star():
    from nres.sim import StellarSpectrum
    from nres.sim.night import DEFAULT_TARGETS

    star = DEFAULT_TARGETS[0]
    return star, StellarSpectrum(seed=zlib.crc32(star.name.encode()))


def _extract(frame, traces, profiles, blaze):
    from nres.extract import extract, subtract_scattered_light, with_blaze

    clean, background = subtract_scattered_light(frame, traces)  # as nres.pipeline.recipes
    return with_blaze(extract(clean, traces, profile=profiles, background=background), blaze)


def _calibrations(seed, window, cfg, *, n_flat, n_arc, noiseless):
    from nres.calib import stack
    from nres.instrument import PhysicalModel
    from nres.pipeline.recipes import trace_flat
    from nres.sim.core import simulate
    from nres.wavecal import combine_doubles, solve

    model = PhysicalModel.for_site("lsc", mjd=MJD0)
    cal, sols = {}, []
    for pair in ((0, 1), (1, 2)):

        def frame(obstype, s, pair=pair):
            return simulate(
                obstype,
                site="lsc",
                seed=s,
                window=window,
                mjd=MJD0 - 0.1,
                fibers=pair,
                noiseless=noiseless,
                config=cfg,
            )[0]

        flats = [frame("LAMPFLAT", 1000 * seed + 10 * k + pair[0]) for k in range(1 if noiseless else n_flat)]
        flat = flats[0] if len(flats) == 1 else stack(flats, method="mean", min_frames=1)
        cal[pair] = trace_flat(flat, site="lsc")
        for k in range(1 if noiseless else n_arc):
            arc = frame("DOUBLE", 1000 * seed + 500 + 10 * k + pair[0])
            sols.append(solve(_extract(arc, *cal[pair]), model=model))
    return cal, combine_doubles(sols)


def _true_wavelengths(spec, truth):
    wl = np.empty(spec.shape)
    for i, f in enumerate(spec.fibers):
        for j, m in enumerate(spec.orders):
            wl[i, j] = truth.wavelength[int(f), list(truth.spectrum_orders).index(m)].to_value(u.nm)
    return spec._replace(wavelength=wl * u.nm, wavelength_medium="vacuum", wavelength_frame="topocentric")


def _row(rv, truth, z_obs_true, drift_err=None, wavecal=None):
    t = rv.orders
    return {
        "resid": float(rv.rv.to_value(u.m / u.s) - truth),
        "err": float(rv.rv_err_photon.to_value(u.m / u.s)),
        "drift_err": drift_err,
        "wavecal": wavecal,
        "orders": [int(m) for m in t["order"]],
        # per-order RVs are observed (topocentric): compared with c z_obs
        "order_resid": [float(v) - z_obs_true * 299792458.0 for v in np.asarray(t["rv"].to_value(u.m / u.s))],
        "order_err": [float(v) for v in np.asarray(t["rv_err"].to_value(u.m / u.s))],
    }


def run_frames(rung, seed, n):
    """One night of a 2-D rung: calibrations, then n TARGET exposures reduced in memory."""
    from nres.doppler import C_M_S
    from nres.pipeline.recipes import drift_correct, measure_rv
    from nres.pipeline.templates import simulated_template
    from nres.sim.config import SimConfig
    from nres.sim.core import simulate
    from nres.wavecal import apply_solution

    opts = RUNGS[rung]
    star, template = _star()
    cfg = SimConfig(n_hot_pixels=0)  # no master dark in memory: hot pixels would stay
    window = {"orders": opts.get("orders", WINDOW["orders"]), "columns": WINDOW["columns"]}
    noiseless = opts.get("noiseless_cal", False)
    cal, triple = _calibrations(seed, window, cfg, n_flat=opts.get("n_flat", 2), n_arc=1, noiseless=noiseless)
    rows = []
    for k in range(opts.get("n", n)):
        mjd = MJD0 if opts.get("fixed") else MJD0 + k * 645.0 / 86400.0
        frame, truth = simulate(
            "TARGET",
            site="lsc",
            seed=1000 * seed + 700 + k,
            window=window,
            mjd=mjd,
            exptime=600.0,
            fibers=(0, 1),
            rv=star.rv,
            target=star.coord,
            template=template,
            noiseless=opts.get("noiseless_target", False),
            config=cfg,
        )
        spec = _extract(frame, *cal[(0, 1)])
        drift_err = None
        if opts.get("wave") == "truth":
            spec = _true_wavelengths(spec, truth)
        else:
            sol, dq = drift_correct(spec, triple, fiber=0, enabled=opts.get("drift_correction", True))
            spec = apply_solution(spec, sol)
            drift_err = dq.get("drift_err_m_s")
        ref = simulated_template(star.name, spec, fiber=0)
        rv = measure_rv(spec, ref, method="template", fiber=0, z_b=float(truth.z_b))
        rows.append(_row(rv, truth.z_star * C_M_S, truth.z_obs, drift_err))
    return rows


def run_extracted(n=120):
    from nres.doppler import C_M_S
    from nres.pipeline.templates import simulated_template
    from nres.rv import measure
    from nres.sim import simulate_extracted

    star, template = _star()
    rows, ref = [], None
    for seed in range(n):
        spec, truth = simulate_extracted(
            seed=seed,
            rv=star.rv,
            target=star.coord,
            mjd=MJD0,
            orders=np.arange(80, 88),
            n_pixel=2048,
            snr=260,
            template=template,
        )
        ref = ref or simulated_template(star.name, spec, fiber=0)
        rv = measure(spec, ref, method="template", fiber=0, z_b=truth.z_b)
        rows.append(_row(rv, truth.z_star * C_M_S, truth.z_obs))
    return rows


def run_night(seed, n):
    """The pipeline on a simulated night of raw files: the demo's calibrations, n exposures."""
    from concurrent.futures import ThreadPoolExecutor

    from astropy.io import fits
    from astropy.table import Table

    from nres.doppler import C_M_S
    from nres.pipeline.db import Database
    from nres.pipeline.night import reduce_night
    from nres.sim import simulate_night

    star, _ = _star()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth_path = simulate_night(
            "lsc",
            "2019-04-05",
            root / "archive",
            n_bias=3,
            n_dark=2,
            n_flat=2,
            n_arc=1,
            targets=[replace(star, n_exposures=n)],
            window=WINDOW,
            seed=seed,
            progress=False,
        )
        db = Database(f"sqlite:///{root / 'nres.sqlite'}")
        with ThreadPoolExecutor(1) as pool:
            reduce_night(
                truth_path.parent / "raw",
                root / "reduced",
                db=db,
                executor=pool,
                template="simulated",
                min_frames={"BIAS": 1, "DARK": 1, "LAMPFLAT": 1},
                progress=False,
                plot=False,
            )
        truth = Table.read(truth_path)
        rows = []
        for t in truth[truth["obstype"] == "TARGET"]:
            product = root / "reduced" / str(t["filename"]).replace("e00.fits.fz", "e92-1d.fits")
            if not product.exists():
                continue
            head = fits.getheader(product)
            orders = Table.read(product, hdu="RVORDERS")
            qc = {k[8:].lower(): v for k, v in head.items() if k.startswith("NRES QC ")}
            rows.append(
                {
                    "resid": float(head["RV"]) - float(t["z_star"]) * C_M_S,  # RV card: m/s, barycentric
                    "err": float(qc.get("rv_err_m_s")),
                    "drift_err": qc.get("drift_err_m_s"),
                    "wavecal": qc.get("rv_err_wavecal_m_s"),
                    "orders": [int(m) for m in orders["order"]],
                    "order_resid": [
                        float(v) - float(t["z_obs"]) * C_M_S for v in np.asarray(orders["rv"], float)
                    ],
                    "order_err": [float(v) for v in np.asarray(orders["rv_err"], float)],
                }
            )
        return rows


def _combined(row, lo, hi):
    o = np.array(row["orders"])
    r, e = np.array(row["order_resid"]), np.array(row["order_err"])
    use = (o >= lo) & (o <= hi) & np.isfinite(r) & np.isfinite(e) & (e > 0)
    w = 1.0 / e[use] ** 2
    return float(np.sum(w * r[use]) / np.sum(w)), float(1.0 / np.sqrt(np.sum(w)))


def summarise(nights):
    """Scatter about each night's mean, median error and sqrt(chi2/dof): the pipeline's RV (photon error;
    photon (+) drift error) and the per-order RVs of orders 80-87 and 81-86 combined without a clip."""
    out = {}
    for label, pick in (
        ("pipeline", lambda r: (r["resid"], r["err"])),
        # the per-exposure error of nres.pipeline.qc.error_budget: photon (+) drift correction
        ("pipeline_exposure", lambda r: (r["resid"], float(np.hypot(r["err"], r["drift_err"] or 0.0)))),
        ("orders_80_87", lambda r: _combined(r, 80, 87)),
        ("orders_81_86", lambda r: _combined(r, 81, 86)),
    ):
        sq = chi = dof = 0.0
        errs, means = [], []
        for rows in nights:
            v = np.array([pick(r) for r in rows])
            if len(v) < 2:
                continue
            r, e = v[:, 0], v[:, 1]
            m = np.average(r, weights=1.0 / e**2)
            sq += np.sum((r - r.mean()) ** 2)
            chi += np.sum(((r - m) / e) ** 2)
            dof += len(r) - 1
            errs += list(e)
            means.append(float(m))
        out[label] = {
            "scatter_m_s": float(np.sqrt(sq / dof)),
            "error_m_s": float(np.median(errs)),
            "sqrt_chi2_dof": float(np.sqrt(chi / dof)),
            "dof": int(dof),
            "night_means_m_s": means,
        }
    per_order = {}
    for m in sorted({o for rows in nights for r in rows for o in r["orders"]}):
        pulls, offsets = [], []
        for rows in nights:
            v = np.array(
                [
                    (r["order_resid"][r["orders"].index(m)], r["order_err"][r["orders"].index(m)])
                    for r in rows
                    if m in r["orders"]
                ]
            )
            v = v[np.isfinite(v).all(axis=1)] if len(v) else v
            if len(v) >= 3:
                pulls += list((v[:, 0] - v[:, 0].mean()) / v[:, 1])
                offsets.append(float(v[:, 0].mean()))
        if pulls:
            per_order[str(m)] = {
                "pull_rms": float(np.sqrt(np.mean(np.square(pulls)))),
                "night_offsets_m_s": offsets,
            }
    out["per_order"] = per_order
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=16, help="exposures per night")
    parser.add_argument("--rungs", nargs="+", default=["extracted", *RUNGS, "night"])
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    results = {
        "commit": commit,
        "window": WINDOW,
        "exposures_per_night": args.n,
        "seeds": args.seeds,
        "rungs": {},
    }
    for rung in args.rungs:
        t0 = time.perf_counter()
        if rung == "extracted":
            nights = [run_extracted()]
        elif rung == "night":
            nights = [run_night(s, args.n) for s in args.seeds]
        else:
            nights = [run_frames(rung, s, args.n) for s in args.seeds]
        results["rungs"][rung] = summarise(nights) | {"seconds": time.perf_counter() - t0}
        p = results["rungs"][rung]["pipeline"]
        print(
            f"{rung:16s} scatter {p['scatter_m_s']:.2f} m/s, photon {p['error_m_s']:.2f}, "
            f"sqrt(chi2/dof) {p['sqrt_chi2_dof']:.2f} (dof {p['dof']})",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "error_budget_ladder.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
