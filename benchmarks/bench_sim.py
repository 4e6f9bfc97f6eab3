"""Benchmark of nres.sim: full TARGET frame (target < 3 s warm) and a 5-order x 1024-column window
(target < 0.1 s warm). Writes benchmarks/results/sim.json.

"warm" repeats the same call, so the caches of nres.sim (moved traces, physical model, z_B(t),
scattered-light grid) are hits; the "_new_mjd" case changes the date on every call so they miss.
The machine is shared: the 1-minute load average is recorded, and so is the minimum process CPU
time of the warm calls (all threads), which depends less on the load than the wall time.
"""

from __future__ import annotations

import itertools
import os
import time

from _common import time_cold_warm, write_results
from nres.sim import simulate, simulate_extracted


def _cpu(func, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        func()
        best = min(best, time.process_time() - t0)
    return best


def _case(func, repeat, target=None):
    out = time_cold_warm(func, repeat=repeat)
    out["warm_cpu_s"] = _cpu(func, repeat)
    out["load_average_1min"] = os.getloadavg()[0]
    if target is not None:
        out["target_s"] = target
    return out


def main():
    win = {"orders": (80, 84), "columns": (1536, 2560)}
    dates = itertools.count(1)
    cases = {
        "target_window_5x1024": _case(lambda: simulate("TARGET", seed=1, window=win), 5, 0.1),
        "target_window_5x1024_new_mjd": _case(
            lambda: simulate("TARGET", seed=1, window=win, mjd=58400.5 + 0.01 * next(dates)), 5, 0.1
        ),
        "target_full_frame": _case(lambda: simulate("TARGET", seed=1), 3, 3.0),
        "extracted_67_orders": _case(lambda: simulate_extracted(seed=1, z_b=0.0), 3),
    }
    write_results("sim", cases)


if __name__ == "__main__":
    main()
