"""Benchmarks of nres.calib: in-memory stack vs ccdproc, process_ccd of full raw frames (float64,
uint16, the simulator's int32 arc; wall and CPU time, default and one numba thread, with the load
average), and the peak memory of stacking from paths in row slabs. Writes
benchmarks/results/calib.json.

Run: ``python benchmarks/bench_calib.py [n_path_frames] [--skip-paths] [--skip-stack]`` (needs the
``bench`` extra: ccdproc).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.nddata import CCDData, VarianceUncertainty

import nres.calib as calib
from _common import time_cold_warm, write_results
from nres.flags import Flag

SHAPE = (4096, 4096)


def _frames(n, rng):
    """n bias-like frames (e-) with variance 49 and 0.1 % cosmic-ray-like outliers."""
    out = []
    for _ in range(n):
        d = rng.normal(1000.0, 7.0, SHAPE)
        d[rng.random(SHAPE) < 1e-3] += 5000.0  # cosmic-ray-like outliers
        out.append(
            CCDData(
                d,
                unit="electron",
                uncertainty=VarianceUncertainty(np.full(SHAPE, 49.0)),
                meta={"OBSTYPE": "BIAS"},
            )
        )
    return out


def bench_stack(cases):
    """Sigma-clipped stack of ten 4096 x 4096 frames with variance in memory, vs ccdproc.combine.

    Wall and CPU seconds (best of 7 warm calls) with the default numba threads and with one
    thread, and the load average: the 1.5 s target is for an idle 2-core machine.
    """
    import ccdproc
    import numba
    from astropy.stats import mad_std

    rng = np.random.default_rng(1)
    frames = _frames(10, rng)
    case = _time_cpu(lambda: calib.stack(frames), 7)
    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = _time_cpu(lambda: calib.stack(frames), 7)
    finally:
        numba.set_num_threads(n)
    ours = calib.stack(frames)
    t0 = time.perf_counter()
    ref = ccdproc.combine(
        [CCDData(f.data, unit="electron") for f in frames],
        method="average",
        sigma_clip=True,
        sigma_clip_low_thresh=3,
        sigma_clip_high_thresh=3,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=mad_std,
        mem_limit=16e9,
    )
    t_ccdproc = time.perf_counter() - t0
    rel = float(np.nanmax(np.abs(ours.data - ref.data) / np.abs(ref.data)))
    case.update(
        numba_threads=n,
        one_thread_warm_s=one["warm_s"],
        one_thread_cpu_warm_s=one["cpu_warm_s"],
        one_thread_loadavg_1_5_15=one["loadavg_1_5_15"],
        target_s=1.5,
        ccdproc_s=t_ccdproc,
        speedup=t_ccdproc / case["warm_s"],
        target_speedup=6.0,
        max_rel_diff_vs_ccdproc=rel,
        target_rel_diff=1e-5,
        passed=case["warm_s"] < 1.5 and t_ccdproc / case["warm_s"] >= 6 and rel <= 1e-5,
    )
    cases["stack_10x4096x4096_memory"] = case


def _time_cpu(func, repeat):
    """time_cold_warm plus CPU seconds (time.process_time, all threads) and the load average."""
    load_before = os.getloadavg()
    cpu = []

    def timed():
        c0 = time.process_time()
        func()
        cpu.append(time.process_time() - c0)

    case = time_cold_warm(timed, repeat=repeat)
    case["cpu_warm_s"] = min(cpu[1:])
    case["loadavg_1_5_15"] = [load_before, os.getloadavg()]
    return case


def _process_cases(cases, name, raw, bias, dark, repeat=9):
    """process_ccd of one raw frame: default numba threads and one thread (batch workers)."""
    import numba

    case = _time_cpu(lambda: calib.process_ccd(raw, bias=bias, dark=dark), repeat)
    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = _time_cpu(lambda: calib.process_ccd(raw, bias=bias, dark=dark), repeat)
    finally:
        numba.set_num_threads(n)
    case.update(
        raw_dtype=str(raw.data.dtype),
        numba_threads=n,
        one_thread_warm_s=one["warm_s"],
        one_thread_cpu_warm_s=one["cpu_warm_s"],
        target_s=0.3,
        passed=case["warm_s"] < 0.3,
    )
    cases[name] = case


def bench_process(cases):
    """process_ccd of full 4108 x 4160 raw frames with a master bias and dark (both with variance).

    float64 raw (the original case), the same frame as uint16 (real NRES files), and the
    simulator's DOUBLE arc frame (int32, saturated lines with bleed trails).
    """
    rng = np.random.default_rng(2)
    raw = np.round(rng.normal(1000.0, 3.0, (4108, 4160)))
    raw[:4096, :4096] += rng.uniform(0, 5000, (4096, 4096))
    meta = {
        "GAIN": 3.2,
        "RDNOISE": 7.0,
        "SATURATE": 65535.0,
        "MAXLIN": 60000.0,
        "BIASSEC": "[4097:4160,1:4096]",
        "TRIMSEC": "[1:4096,1:4096]",
        "EXPTIME": 600.0,
    }
    bias = CCDData(np.zeros(SHAPE), unit="electron", uncertainty=VarianceUncertainty(np.ones(SHAPE)))
    dark = CCDData(
        np.full(SHAPE, 1e-3), unit="electron/s", uncertainty=VarianceUncertainty(np.full(SHAPE, 1e-8))
    )
    _process_cases(cases, "process_ccd_full_frame", CCDData(raw, unit="adu", meta=meta), bias, dark)
    raw16 = CCDData(raw.astype(np.uint16), unit="adu", meta=meta)
    _process_cases(cases, "process_ccd_full_frame_uint16", raw16, bias, dark)
    del raw, raw16
    import nres.sim

    sim = nres.sim.simulate("DOUBLE", site="lsc", seed=1, raw=True)[0]
    _process_cases(cases, "process_ccd_sim_double_lsc_int32", sim, bias, dark)
    cases["process_ccd_sim_double_lsc_int32"]["n_saturated"] = int(
        np.count_nonzero(calib.process_ccd(sim).flags & Flag.SATURATED)
    )


_CHILD = """
import sys, time
import nres.calib as calib
from nres.flags import Flag
paths = sys.argv[1:]
t0 = time.perf_counter()
out = calib.stack(paths, max_slab_bytes=256_000_000)
dt = time.perf_counter() - t0
# VmHWM is this process's own peak (ru_maxrss would include the forking parent's)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(int(hwm) * 1024, dt)
"""


def bench_paths(cases, n):
    """Stack n full float32 frames (data + variance) from disk in a fresh process; peak RSS."""
    from astropy.io import fits

    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        paths = []
        var = fits.ImageHDU(np.full(SHAPE, 49.0, np.float32), name="UNCERT")
        var.header["UTYPE"] = "VarianceUncertainty"
        for k in range(n):
            d = rng.normal(1000.0, 7.0, SHAPE).astype(np.float32)
            p = Path(tmp) / f"bias{k}.fits"
            fits.HDUList([fits.PrimaryHDU(d, header=fits.Header({"OBSTYPE": "BIAS"})), var]).writeto(p)
            paths.append(str(p))
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, *paths], capture_output=True, text=True, check=True
        )
        rss, dt = (float(v) for v in out.stdout.split())
    case = {
        "cold_s": dt,
        "warm_s": dt,
        "repeat": 1,
        "n_frames": n,
        "peak_rss_gb": rss / 1e9,
        "target_peak_rss_gb": 2.0,
        "bytes_on_disk_gb": n * 2 * 4096 * 4096 * 4 / 1e9,
        "passed": rss / 1e9 < 2.0,
    }
    cases[f"stack_{n}_paths_peak_rss"] = case


def _previous(select):
    """Cases of the previous results chosen by ``select(name)``, marked as not re-measured."""
    old = json.loads((Path(__file__).parent / "results" / "calib.json").read_text())["cases"]
    return {k: {**v, "from_previous_run": True} for k, v in old.items() if select(k)}


def main():
    # "--skip-paths": keep the path cases of the previous results (they take minutes);
    # "--skip-stack": keep the in-memory stack case (ccdproc alone takes ~30 s)
    flags = {"--skip-paths", "--skip-stack"}
    args = [a for a in sys.argv[1:] if a not in flags]
    n_paths = int(args[0]) if args else 20
    cases = {}
    if "--skip-paths" in sys.argv:
        cases.update(_previous(lambda k: "_paths_" in k))
    else:
        for n in sorted({10, n_paths}):
            bench_paths(cases, n)
    bench_process(cases)
    if "--skip-stack" in sys.argv:
        cases.update(_previous(lambda k: k.startswith("stack_") and "_memory" in k))
    else:
        bench_stack(cases)
    write_results("calib", cases)
    print(
        json.dumps(
            {
                k: {kk: v for kk, v in c.items() if any(w in kk for w in ("rss", "speed", "rel", "cpu"))}
                for k, c in cases.items()
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
