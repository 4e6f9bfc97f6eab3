"""Shared helpers of the nres benchmarks: cold/warm timing and JSON output.

Each ``benchmarks/bench_<area>.py`` is a script: ``python benchmarks/bench_<area>.py`` runs its cases
and writes ``benchmarks/results/<area>.json`` (machine facts, cold and warm seconds, targets).
"cold" is the first call in a fresh process (numba compile or cache load included); "warm" is the
best of ``repeat`` later calls.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def time_cold_warm(func, *, repeat: int = 5) -> dict:
    """Time ``func()``: first call (cold) and best of ``repeat`` more (warm), in seconds."""
    t0 = time.perf_counter()
    func()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        warm.append(time.perf_counter() - t0)
    return {"cold_s": cold, "warm_s": min(warm), "warm_median_s": sorted(warm)[len(warm) // 2],
            "repeat": repeat}


def write_results(area: str, cases: dict) -> Path:
    """Write ``cases`` (name -> dict with timings, target_s, passed) to results/<area>.json."""
    import nres

    RESULTS.mkdir(exist_ok=True)
    out = {
        "area": area,
        "nres_version": nres.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cases": cases,
    }
    path = RESULTS / f"{area}.json"
    path.write_text(json.dumps(out, indent=2))
    for name, case in cases.items():
        target = case.get("target_s")
        verdict = "" if target is None else (" PASS" if case["warm_s"] <= target else " FAIL")
        tgt = "" if target is None else f" (target {target} s)"
        print(f"{area}/{name}: cold {case['cold_s']:.3f} s, warm {case['warm_s']:.4f} s{tgt}{verdict}")
    return path
