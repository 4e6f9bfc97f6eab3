"""Benchmark of nres.wavecal on a simulated full DOUBLE arc (fibers 0 and 1, 67 orders, 4096 px).

Cases: ``find_lines`` alone and the whole two-fiber ``solve`` (line finding, robust start,
matching, physical fit, cross-validated correction, QC), started from the previous csv row, and
the two-fiber ``solve`` of the demo's window (orders 79-88 x columns 1024-3072).
Target (issue 8): a two-fiber solution under 2 s warm. Writes results/wavecal.json.
"""

from __future__ import annotations

from _common import time_cold_warm, write_results
from nres.instrument import PhysicalModel
from nres.sim.extracted_arc import simulate_extracted_arc
from nres.wavecal import find_lines, solve


def main() -> None:
    spec, _ = simulate_extracted_arc(seed=1, mjd=58200.0)
    start = PhysicalModel.for_site("lsc", mjd=58000.0)
    window, _ = simulate_extracted_arc(seed=1, mjd=58578.92, orders=range(79, 89))
    window = window[:, :, 1024:3072]
    night = PhysicalModel.for_site("lsc", mjd=58578.92)
    cases = {
        "find_lines_double": {**time_cold_warm(lambda: find_lines(spec)), "target_s": 0.5},
        "solve_double": {**time_cold_warm(lambda: solve(spec, model=start)), "target_s": 2.0},
        "solve_double_window": {**time_cold_warm(lambda: solve(window, model=night)), "target_s": 2.0},
    }
    for case in cases.values():
        case["passed"] = case["warm_s"] <= case["target_s"]
    write_results("wavecal", cases)


if __name__ == "__main__":
    main()
