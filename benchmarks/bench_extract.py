"""Benchmark of nres.extract part 2: measure_profiles, box and optimal extraction, full frame.

Full NRES frame: 2 lit fibers x 67 orders x 4096 columns on the lsc reference traces, profiles
as the simulator's (Gaussian core sigma 1.5 px plus 3 % Gaussian wings of sigma 5 px, deposited
over +-25 px, so neighbouring traces overlap), Poisson + read noise, 2000 cosmic-ray pixels.
Target: optimal extraction with rejection under 0.5 s warm (PyReduce's slit decomposition: ~46 ms
per order, ~6 s per frame); the default is the joint fit of all traces with the joint profiles
(+-21 px); the single-trace path (joint=False, core profiles) is timed beside it.
Also method="idl" (legacy) and measure_blaze + flat_correct on the extracted flat.
Run: ``python benchmarks/bench_extract.py`` -> benchmarks/results/extract.json.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData, VarianceUncertainty
from scipy.special import erf

import nres
from _common import time_cold_warm, write_results
from nres.extract import extract, flat_correct, measure_blaze, measure_profiles


def _cdf(y, sigma, wing_fraction, wing_sigma):
    phi = lambda z: 0.5 * (1.0 + erf(z / np.sqrt(2)))  # noqa: E731
    return (1 - wing_fraction) * phi(y / sigma) + wing_fraction * phi(y / wing_sigma)


def render(traces, level, rng=None, sigma=1.5, half=25, wing_fraction=0.03, wing_sigma=5.0):
    ny = nx = 4096
    x = np.arange(nx)
    img = np.zeros((ny, nx))
    cen = traces.center(x)
    for t in range(len(traces)):
        c = cen[t]
        rows = np.floor(c).astype(int)[None, :] + np.arange(-half, half + 1)[:, None]
        ok = (rows >= 0) & (rows < ny)
        frac = _cdf(rows + 0.5 - c, sigma, wing_fraction, wing_sigma) - _cdf(
            rows - 0.5 - c, sigma, wing_fraction, wing_sigma
        )
        cols = np.broadcast_to(x, rows.shape)
        np.add.at(img, (rows[ok], cols[ok]), level * frac[ok])
    var = 25.0 + img
    if rng is not None:
        img = rng.poisson(img) + rng.normal(0, 5.0, img.shape)
        hit = rng.integers(0, 4096, (2, 2000))
        img[hit[0], hit[1]] += 2000.0
    meta = {"RDNOISE": 5.0, "OBJECTS": "tung&tung&none"}
    return CCDData(img, unit="electron", uncertainty=VarianceUncertainty(var), meta=meta)


def main():
    traces = nres.instrument.reference_traces("lsc").select(fibers=[0, 1])
    rng = np.random.default_rng(1)
    flat = render(traces, 3.0e4)
    frame = render(traces, 5.0e3, rng)
    prof = measure_profiles(flat, traces)
    core = measure_profiles(flat, traces, joint=False)
    box = extract(flat, traces, method="box")
    cases = {
        "measure_profiles_joint_full_frame": time_cold_warm(lambda: measure_profiles(flat, traces), repeat=1),
        "measure_profiles_single_full_frame": time_cold_warm(
            lambda: measure_profiles(flat, traces, joint=False), repeat=2
        ),
        "extract_box_full_frame": time_cold_warm(lambda: extract(frame, traces, method="box")),
        "extract_box_neighbours_removed_full_frame": time_cold_warm(
            lambda: extract(frame, traces, profile=prof, method="box")
        ),
        "extract_optimal_reject_full_frame": time_cold_warm(lambda: extract(frame, traces, profile=prof)),
        "extract_optimal_single_trace_full_frame": time_cold_warm(
            lambda: extract(frame, traces, profile=core, joint=False)
        ),
        "extract_idl_legacy_full_frame": time_cold_warm(
            lambda: extract(frame, traces, profile=prof, method="idl", legacy=True)
        ),
        "measure_blaze_flat_correct_full_frame": time_cold_warm(
            lambda: flat_correct(box, measure_blaze(box))
        ),
    }
    cases["extract_optimal_reject_full_frame"]["target_s"] = 0.5
    cases["extract_optimal_reject_full_frame"]["peer"] = "PyReduce slit decomposition ~6 s per frame"
    spec = extract(frame, traces, profile=prof)
    cases["extract_optimal_reject_full_frame"]["n_rejected"] = int(
        spec.meta["EXTRACTION"]["n_rejected"].sum()
    )
    write_results("extract", cases)


if __name__ == "__main__":
    main()
