"""Benchmarks of nres.instrument: the physical model's full wavelength grid, point evaluation and inverse.

Run ``python benchmarks/bench_instrument.py``; writes ``benchmarks/results/instrument.json``.
Target (foundation issue): the (3, 67, 4096) grid in under 50 ms warm.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_cold_warm, write_results


def main() -> None:
    from nres.instrument import PhysicalModel

    model = PhysicalModel.for_site("lsc", mjd=58200.0)
    legacy = PhysicalModel.for_site("lsc", mjd=58200.0, legacy=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 4095, 100_000)
    orders = rng.integers(52, 119, 100_000)
    fibers = rng.integers(0, 3, 100_000)
    lam = model.wavelength(x, orders, fibers)
    cases = {
        "wavelength_grid_3x67x4096": {**time_cold_warm(model.wavelength_grid, repeat=10), "target_s": 0.050},
        "wavelength_grid_legacy_quadratic": {
            **time_cold_warm(legacy.wavelength_grid, repeat=10),
            "target_s": 0.050,
        },
        "wavelength_100k_points": time_cold_warm(lambda: model.wavelength(x, orders, fibers), repeat=5),
        "pixel_inverse_100k_points": time_cold_warm(lambda: model.pixel(lam, orders, fibers), repeat=3),
        "for_site": time_cold_warm(lambda: PhysicalModel.for_site("cpt", mjd=58500.0), repeat=10),
    }
    for case in cases.values():
        if "target_s" in case:
            case["passed"] = case["warm_s"] <= case["target_s"]
    write_results("instrument", cases)


if __name__ == "__main__":
    main()
