"""One full-size TARGET raw file to its RV: the TARGET recipe with its calibrations ready.

The night's calibrations (bias, dark, lamp flat -> traces/profiles/blaze, arc -> wavelength
solution) are simulated at full size (4096 x 4096) and reduced once; then the TARGET recipe
(read raw, process, dead columns, scattered light, optimal extraction of 2 fibers x ~67 orders,
blaze, wavelengths, flux-weighted barycentric correction, template RV, 1-D product written) is
timed cold (first call, numba cache loads) and warm, with wall and CPU time and the load average.
Target: 3 s warm. The masters are cached per process (nres.pipeline.frames.read_master), as in a
night's worker. Writing the compressed 2-D product (``write_2d``) and the summary PNG (matplotlib)
are timed as separate cases. Set ``NRES_E2E_NIGHT`` to a directory holding a previous setup
(``setup.json``) to skip the ~9 min simulation and calibration.
Run ``python benchmarks/bench_pipeline_e2e.py``; writes ``benchmarks/results/pipeline_e2e.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_cold_warm, write_results


def main() -> None:
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from nres.io import read_raw_info
    from nres.pipeline.calibrations import select_calibrations
    from nres.pipeline.db import Database
    from nres.pipeline.night import reduce_night
    from nres.pipeline.recipes import reduce_target
    from nres.sim import simulate_night
    from nres.sim.night import DEFAULT_TARGETS

    cases = {}
    reuse = os.environ.get("NRES_E2E_NIGHT")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(reuse or tmp)
        t0 = time.perf_counter()
        saved = tmp / "setup.json"
        setup = json.loads(saved.read_text()) if reuse and saved.exists() else None
        star = replace(DEFAULT_TARGETS[1], n_exposures=1)
        # 3 biases and darks: a single 900 s dark keeps its cosmic rays, which (scaled to the flat's
        # exposure) cut dips into the flat's traces and split them; seeds are retried if a flat
        # still does not trace
        for seed in () if setup else (1, 2, 3, 4, 5):
            night = tmp / f"seed{seed}"
            truth = simulate_night("lsc", "2019-04-05", night / "archive", n_bias=3, n_dark=3, n_flat=1,
                                   n_arc=1, targets=[star], progress=False, seed=seed)  # fmt: skip
            raw = truth.parent / "raw"
            target = next(raw.glob("*-e00.fits.fz"))
            target = target.rename(night / target.name)  # the calibrations only
            db = Database(f"sqlite:///{night / 'db.sqlite'}")
            with ThreadPoolExecutor(1) as pool:
                result = reduce_night(raw, night / "out", db=db, executor=pool, min_frames=1, progress=False)
            if not result.failures:
                break
            print(f"seed {seed}: {result.failures}")
        if setup:
            target, calibrations, night, seed = Path(setup["target"]), setup["cal"], Path(setup["night"]), 0
        else:
            calibrations = select_calibrations(db, read_raw_info(target))
            saved.write_text(json.dumps({"target": str(target), "cal": calibrations, "night": str(night)}))
        setup_s = time.perf_counter() - t0
        options = {"out_dir": os.fspath(night / "out"), "template": "simulated", "plot": False}
        qc = {}

        def run(**extra):
            qc.update(reduce_target(target, calibrations, options | extra)[1])

        def timed(repeat, **extra):
            load0 = os.getloadavg()[0]
            case = time_cold_warm(lambda: run(**extra), repeat=repeat)
            c0 = time.process_time()
            run(**extra)
            case.update(cpu_s=time.process_time() - c0, load_average_before=load0,
                        load_average_after=os.getloadavg()[0])  # fmt: skip
            return case

        case = timed(3, write_2d=False)
        case.update(target_s=3.0, passed=case["warm_s"] <= 3.0, setup_s=setup_s, night_seed=seed)
        case.update(rv_m_s=qc["rv_m_s"], rv_err_m_s=qc["rv_err_m_s"], snr_median=qc["snr_median"])
        cases["target_to_rv"] = case
        cases["target_to_rv_with_2d"] = timed(1, write_2d=True)
        cases["target_to_rv_with_2d_png"] = timed(1, write_2d=True, plot=True)
    write_results("pipeline_e2e", cases)


if __name__ == "__main__":
    main()
