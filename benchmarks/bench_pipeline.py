"""Overhead of the pipeline's bookkeeping: database writes and the batch runner around trivial tasks.

Cases (a real reduction takes seconds per frame, so these should stay in the milliseconds):
- ``record_frame``: one processed-frame record in an SQLite file (one transaction).
- ``import_targets``: the real 248-row targets.csv into an SQLite file.
- ``select_calibration``: choose a bias among 500 calibrations (table read + nres.calib.select).
- ``run_stage_100``: 100 trivial tasks (1 kB raw files) on a 2-worker local process pool, pool start
  excluded (checksum, submit, record): the per-frame overhead is ``warm_s / 100``.
Run ``python benchmarks/bench_pipeline.py``; writes ``benchmarks/results/pipeline.json``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_cold_warm, write_results

ROOT = Path(__file__).parents[1]


def _noop(path, calibrations, options):
    return [], {"n": 1}


def main() -> None:
    from nres.pipeline.batch import Task, local_executor, run_stage
    from nres.pipeline.db import Database

    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = Database(tmp / "bench.sqlite")
        counter = iter(range(10**6))
        cases["record_frame"] = time_cold_warm(
            lambda: db.record_frame(
                "x.fits", checksum=f"{next(counter):032d}", success=True, qc={"snr": 1.0}
            ),
            repeat=50,
        )
        cases["import_targets"] = time_cold_warm(
            lambda: Database(tmp / f"t{next(counter)}.sqlite").import_csv(
                "targets", ROOT / "tests/data/targets.csv"
            ),
            repeat=3,
        )
        for i in range(500):
            db.add_calibration(
                "BIAS",
                f"b{i}.fits",
                site="lsc",
                instrument="nres01",
                camera="fa09",
                mjd_start=58000.0 + 0.1 * i,
                nframes=1 + i % 3,
            )
        cases["select_calibration"] = time_cold_warm(
            lambda: db.select_calibration("BIAS", mjd_obs=58020.05, instrument="nres01", camera="fa09"),
            repeat=20,
        )
        raws = []
        for i in range(100):
            p = tmp / "raw" / f"f{i:04d}.fits"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(bytes([i % 256]) * 1024)
            raws.append(p)
        with local_executor(2) as pool:
            pool.submit(int, 0).result()  # start the workers before timing
            cases["run_stage_100"] = time_cold_warm(
                lambda: run_stage(
                    [Task(_noop, str(p)) for p in raws],
                    pool,
                    db=Database("sqlite:///:memory:"),
                    progress=False,
                ),
                repeat=3,
            )
        cases["run_stage_100"]["per_frame_s"] = cases["run_stage_100"]["warm_s"] / 100
        db.close()
    write_results("pipeline", cases)


if __name__ == "__main__":
    main()
