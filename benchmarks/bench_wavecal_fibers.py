"""Benchmark of the fiber offsets, the TRIPLE and the drift of nres.wavecal (simulated, 67 orders).

Cases: ``measure_fiber_offsets`` from four DOUBLE solutions (two 0+1, two 1+2), ``combine_doubles``
of the same four, ``measure_drift`` of a full TARGET-like frame against the master solution
(line finding in fiber 1 included) and ``apply_solution`` with the drift-corrected solution.
There is no timing target in the issue; the targets below are set so that a night of TARGET frames
spends far less on the drift than on the extraction (~1 s) and the TRIPLE costs less than one
``solve``. Writes results/wavecal_fibers.json.
"""

from __future__ import annotations

from _common import time_cold_warm, write_results
from nres.instrument import PhysicalModel
from nres.sim.extracted_arc import simulate_extracted_arc
from nres.wavecal import apply_solution, combine_doubles, measure_drift, measure_fiber_offsets, solve


def main() -> None:
    start = PhysicalModel.for_site("lsc", mjd=58000.0)
    sols = []
    for fibers, seed in (((0, 1), 11), ((1, 2), 12), ((0, 1), 13), ((1, 2), 14)):
        spec, _ = simulate_extracted_arc(seed=seed, mjd=58200.0, fibers=fibers)
        sols.append(solve(spec, model=start))
    target, _ = simulate_extracted_arc(seed=3, mjd=58200.0, drift=(0.05, 0.02))
    drift = measure_drift(target, sols[0])
    corrected = drift.corrected_solution()
    cases = {
        "measure_fiber_offsets_4_doubles": {
            **time_cold_warm(lambda: measure_fiber_offsets(sols)),
            "target_s": 0.5,
        },
        "combine_doubles_4": {**time_cold_warm(lambda: combine_doubles(sols)), "target_s": 1.0},
        "measure_drift_target": {**time_cold_warm(lambda: measure_drift(target, sols[0])), "target_s": 1.0},
        "apply_drift_corrected": {
            **time_cold_warm(lambda: apply_solution(target, corrected)),
            "target_s": 1.0,
        },
    }
    for case in cases.values():
        case["passed"] = case["warm_s"] <= case["target_s"]
    write_results("wavecal_fibers", cases)


if __name__ == "__main__":
    main()
