"""Benchmark of nres.sim part 2: a full-size raw TARGET file written, and a windowed night of 40 frames.

Run ``python benchmarks/bench_sim_night.py``; writes ``benchmarks/results/sim_night.json``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from _common import time_cold_warm, write_results
from nres.sim import simulate, simulate_night, write_raw
from nres.sim.night import DEFAULT_TARGETS


def main():
    tmp = Path(tempfile.mkdtemp(prefix="bench_sim_night_"))
    frame, truth = simulate("TARGET", site="lsc", seed=1, raw=True)
    path = tmp / "lscnrs01-fa09-20190405-0001-e00.fits.fz"
    cases = {
        "write_raw_full_target": {
            **time_cold_warm(lambda: write_raw(frame, truth, path, overwrite=True), repeat=3),
            "target_s": 4.0, "size_mb": None,
        },
    }  # fmt: skip
    cases["write_raw_full_target"]["size_mb"] = path.stat().st_size / 1e6
    cases["write_raw_full_target"]["passed"] = cases["write_raw_full_target"]["warm_s"] <= 4.0

    def simulate_and_write():
        f, t = simulate("TARGET", site="lsc", seed=1, raw=True)
        write_raw(f, t, path, overwrite=True)

    case = time_cold_warm(simulate_and_write, repeat=2)
    case.update({"target_s": None, "note": "simulate(raw=True) + write_raw; informational"})
    cases["simulate_and_write_full_target"] = case
    # 8 bias + 4 dark + 4 flats and 2 arcs per fiber pair + 3 stars with 16 exposures = 40 frames
    targets = [dataclasses.replace(t, n_exposures=n) for t, n in zip(DEFAULT_TARGETS, (6, 5, 5), strict=True)]
    night = {"n_bias": 8, "n_dark": 4, "n_flat": 4, "n_arc": 2, "targets": targets, "progress": False,
             "window": (1000, 1200, 1000, 1400), "overwrite": True}  # fmt: skip
    case = time_cold_warm(lambda: simulate_night("lsc", "2019-04-05", tmp / "night", **night), repeat=2)
    case.update({"target_s": 30.0, "frames": 40, "window": list(night["window"])})
    case["passed"] = case["warm_s"] <= 30.0
    cases["windowed_night_40_frames"] = case
    write_results("sim_night", cases)


if __name__ == "__main__":
    main()
