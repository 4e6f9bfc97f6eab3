"""Benchmark of nres.rv.measure: all 67 orders x 4096 pixels of one simulated spectrum, both methods.

Target (issue 4): under 0.3 s warm per spectrum for either method. Writes benchmarks/results/rv.json.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from _common import time_cold_warm, write_results

from nres.rv import LineMask, Template, measure
from nres.sim.extracted import simulate_extracted


def main():
    spec, truth = simulate_extracted(seed=1, rv=12.3 * u.km / u.s, z_b=1e-5, noiseless=False, snr=100.0)
    lam = spec.wavelength.to_value(u.nm)[0]
    grid = np.array([np.linspace(row.min() - 1.0, row.max() + 1.0, 4 * row.size) for row in lam]) * u.nm
    tmpl = Template(grid, truth.template.flux(grid), wavelength_medium="vacuum")
    lines = truth.template.lines
    deep = lines["depth"] > 0.3
    mask = LineMask(lines["wavelength"][deep], lines["depth"][deep], wavelength_medium="vacuum")
    cases = {}
    for name, ref, method in (("template_67_orders", tmpl, "template"), ("mask_67_orders", mask, "mask")):
        case = time_cold_warm(lambda ref=ref, method=method: measure(spec, ref, method=method, z_b=1e-5), repeat=3)
        case["target_s"] = 0.3
        case["passed"] = case["warm_s"] <= 0.3
        case["shape"] = list(spec.shape)
        cases[name] = case
    write_results("rv", cases)


if __name__ == "__main__":
    main()
