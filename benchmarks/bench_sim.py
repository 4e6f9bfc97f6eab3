"""Benchmark of nres.sim: full TARGET frame (target < 3 s warm) and a 5-order x 1024-column window
(target < 0.1 s warm). Writes benchmarks/results/sim.json."""

from __future__ import annotations

from _common import time_cold_warm, write_results

from nres.sim import simulate


def main():
    win = {"orders": (80, 84), "columns": (1536, 2560)}
    cases = {
        "target_window_5x1024": {**time_cold_warm(lambda: simulate("TARGET", seed=1, window=win), repeat=5),
                                 "target_s": 0.1},
        "target_full_frame": {**time_cold_warm(lambda: simulate("TARGET", seed=1), repeat=3), "target_s": 3.0},
        "extracted_67_orders": time_cold_warm(lambda: __import__("nres.sim", fromlist=["x"]).simulate_extracted(
            seed=1, z_b=0.0), repeat=3),
    }
    write_results("sim", cases)


if __name__ == "__main__":
    main()
