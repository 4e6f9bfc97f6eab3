"""Benchmark of nres.extract tracing: find_traces on a full simulated lamp flat (target < 1 s warm,
cold first call < 10 s), with the accuracy against the simulator's truth. Writes
benchmarks/results/trace.json.

"cold" is the first call in this process (numba cache present); "cold_no_cache_s" is the first
call in a fresh process with an empty numba cache (every kernel compiled).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import time_cold_warm, write_results
from nres.sim import SimConfig, simulate

_CHILD = """
import sys, time, numpy as np
from astropy.nddata import CCDData, VarianceUncertainty
z = np.load(sys.argv[1])
flat = CCDData(z["data"], unit="electron", uncertainty=VarianceUncertainty(z["var"]), mask=z["mask"],
               meta={"OBJECTS": "tung&tung&none", "SITEID": "lsc"})
t0 = time.perf_counter()
from nres.extract import find_traces
find_traces(flat)
print(time.perf_counter() - t0)
"""


def _accuracy(traces, truth, fibers):
    rms, mx, missing = [], [], 0
    cy = traces.center(truth.x)
    for i, (f, o) in enumerate(zip(truth.fibers.tolist(), truth.orders.tolist(), strict=True)):
        c = truth.centers[i]
        inside = np.isfinite(c) & (c >= 10) & (c <= 4085)
        if f not in fibers or inside.sum() < 200:
            continue
        try:
            k = traces.index(f, o)
        except KeyError:
            missing += 1
            continue
        ok = inside & traces.valid(truth.x)[k]
        d = cy[k][ok] - c[ok]
        rms.append(float(np.sqrt(np.mean(d**2))))
        mx.append(float(np.abs(d).max()))
    return {
        "n_traces": len(rms),
        "missing_or_misidentified": missing,
        "worst_rms_px": max(rms),
        "median_rms_px": float(np.median(rms)),
        "worst_max_px": max(mx),
    }


def main():
    from nres.extract import find_traces

    cfg = SimConfig(trace_shift=45.0, trace_rotation=1e-3, trace_scale=1.001)
    flat, truth = simulate("LAMPFLAT", site="lsc", seed=7, fibers=(0, 1), config=cfg)
    load_before = os.getloadavg()[0]  # the machine is shared: record how busy it was
    cases = {
        "find_traces_full_frame": {**time_cold_warm(lambda: find_traces(flat), repeat=5), "target_s": 1.0}
    }
    cases["find_traces_full_frame"]["cold_target_s"] = 10.0
    cases["find_traces_full_frame"]["load_average_1min"] = load_before
    cases["find_traces_full_frame"].update(_accuracy(find_traces(flat), truth, (0, 1)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flat.npz"
        np.savez(path, data=flat.data, var=flat.uncertainty.array, mask=flat.mask)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / "numba_cache")}
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)], env=env, capture_output=True, text=True, check=True
        )
        cases["find_traces_full_frame"]["cold_no_cache_s"] = float(out.stdout.split()[-1])
        cases["find_traces_full_frame"]["cold_no_cache_process_s"] = time.perf_counter() - t0
    write_results("trace", cases)
    print({k: v for k, v in cases["find_traces_full_frame"].items() if "px" in k or "cold" in k})


if __name__ == "__main__":
    main()
