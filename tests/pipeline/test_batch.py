"""nres.pipeline.batch: stages of pure tasks on a local process pool and on Dask, failures recorded,
re-runs skipped by checksum, stages in order."""

import hashlib
import json
from pathlib import Path

import pytest

from nres.errors import InvalidParameterError
from nres.pipeline.batch import STAGE_ORDER, Task, file_checksum, local_executor, run_stage, run_stages
from nres.pipeline.db import Database

from . import _tasks

N_FILES = 4


@pytest.fixture(scope="module")
def pool():
    # two workers (the machine has two cores); spawned once for the module: spawning costs ~1 s
    ex = local_executor(2)
    yield ex
    ex.shutdown()


@pytest.fixture
def raws(tmp_path):
    paths = []
    for i in range(N_FILES):
        p = tmp_path / "raw" / f"lscnrs01-fa09-20190405-{i:04d}-b00.fits"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([i]) * (100 + i))
        paths.append(p)
    return paths


def _tasks_for(paths, out_dir, **options):
    return [
        Task(
            _tasks.summarise,
            str(p),
            {"BIAS": "bias.fits"},
            {"out_dir": str(out_dir), **options},
            info={"obstype": "BIAS", "site": "lsc"},
        )
        for p in paths
    ]


def test_file_checksum_is_md5_of_bytes(raws):
    assert file_checksum(raws[1]) == hashlib.md5(raws[1].read_bytes()).hexdigest()


def test_stage_on_process_pool_records_failure_and_goes_on(pool, raws, tmp_path):
    db = Database("sqlite:///:memory:")
    out = tmp_path / "out"
    bad = raws[2].name
    results = run_stage(_tasks_for(raws, out, fail_on=bad), pool, db=db, progress=False, stage="BIAS")
    assert [r.status for r in results] == ["done", "done", "failed", "done"]
    failed = results[2]
    assert failed.reason == f"ValueError: bad frame {bad}: injected failure"
    row = db.frame(hashlib.md5(raws[2].read_bytes()).hexdigest())
    assert (
        not row["success"] and row["reason"] == failed.reason and row["stage"] == "BIAS" and row["tries"] == 1
    )
    for raw, res in zip(raws, results, strict=True):
        if res.status != "done":
            continue
        data = raw.read_bytes()
        assert res.qc == {
            "nbytes": len(data),
            "md5": hashlib.md5(data).hexdigest(),
            "scale": float(len(data)),
        }
        product = json.loads(Path(res.products[0]).read_text())
        assert product["md5"] == hashlib.md5(data).hexdigest() and product["calibrations"] == {
            "BIAS": "bias.fits"
        }
        stored = db.frame(res.checksum)
        assert stored["success"] and stored["products"] == list(res.products) and stored["obstype"] == "BIAS"

    # re-run: what is done is skipped (products untouched), the failed frame is tried again
    mtimes = [p.stat().st_mtime_ns for r in results if r.status == "done" for p in map(Path, r.products)]
    again = run_stage(_tasks_for(raws, out, fail_on=bad), pool, db=db, progress=False, stage="BIAS")
    assert [r.status for r in again] == ["skipped", "skipped", "failed", "skipped"]
    assert again[0].products == results[0].products and again[0].qc == results[0].qc
    assert db.frame(results[2].checksum)["tries"] == 2
    new_mtimes = [p.stat().st_mtime_ns for r in results if r.status == "done" for p in map(Path, r.products)]
    assert new_mtimes == mtimes
    # max_tries stops retrying; force runs everything again (and now nothing fails)
    capped = run_stage(_tasks_for(raws[2:3], out, fail_on=bad), pool, db=db, progress=False, max_tries=2)
    assert capped[0].status == "skipped" and "2 failed tries" in capped[0].reason
    forced = run_stage(_tasks_for(raws, out), pool, db=db, progress=False, force=True)
    assert [r.status for r in forced] == ["done"] * N_FILES
    assert db.frame_done(results[2].checksum) and db.frame(results[0].checksum)["tries"] == 2


def test_unpicklable_task_missing_file_and_bad_return_are_failures(pool, raws, tmp_path):
    db = Database("sqlite:///:memory:")
    tasks = [
        Task(lambda p, c, o: ([], {}), str(raws[0])),  # a lambda cannot be sent to a process
        Task(_tasks.summarise, str(tmp_path / "missing.fits"), {}, {"out_dir": str(tmp_path)}),
        Task(_tasks.wrong_return, str(raws[1])),
        Task(_tasks.summarise, str(raws[3]), {}, {"out_dir": str(tmp_path)}),
    ]
    results = run_stage(tasks, pool, db=db, progress=False)
    assert [r.status for r in results] == ["failed", "failed", "failed", "done"]
    assert "pickle" in results[0].reason.lower()
    assert results[1].reason.startswith("FileNotFoundError") and results[1].checksum.startswith("unreadable-")
    assert (
        results[2].reason.startswith("InvalidParameterError") and "(product_paths, qc)" in results[2].reason
    )
    assert len(db.frames_table(success=False)) == 3
    with pytest.raises(InvalidParameterError, match="Task"):
        run_stage(["not a task"], pool, db=db)


def test_stages_run_in_order_and_later_stages_see_earlier_results(pool, raws, tmp_path):
    db = Database("sqlite:///:memory:")
    out = tmp_path / "out"
    bias_checksum = file_checksum(raws[0])
    seen = {}

    def dark_tasks():  # built only when the BIAS stage is recorded
        seen["bias_done"] = db.frame_done(bias_checksum)
        bias_product = db.frame(bias_checksum)["products"][0]
        return [Task(_tasks.summarise, str(raws[1]), {"BIAS": bias_product}, {"out_dir": str(out)})]

    stages = {
        "TARGET": _tasks_for(raws[3:], out),
        "DARK": dark_tasks,
        "BIAS": _tasks_for(raws[:1], out),
    }
    results = run_stages(stages, pool, db=db, progress=False)
    assert list(results) == ["BIAS", "DARK", "TARGET"]  # STAGE_ORDER, not the mapping's order
    assert seen == {"bias_done": True}
    dark = json.loads(Path(results["DARK"][0].products[0]).read_text())
    assert dark["calibrations"]["BIAS"] == results["BIAS"][0].products[0]
    assert STAGE_ORDER == ("BIAS", "DARK", "LAMPFLAT", "DOUBLE", "TARGET")
    with pytest.raises(InvalidParameterError, match="SKYFLAT"):
        run_stages({"SKYFLAT": []}, pool, db=db)


def test_dask_local_cluster_gives_the_same_results(pool, raws, tmp_path):
    import distributed  # the 'batch' extra, also in the 'test' extra

    from nres.pipeline.batch import dask_executor

    local_db, dask_db = Database("sqlite:///:memory:"), Database("sqlite:///:memory:")
    local = run_stage(
        _tasks_for(raws, tmp_path / "local", fail_on=raws[1].name), pool, db=local_db, progress=False
    )
    # in-process cluster (threads, no network beyond loopback, no dashboard)
    with distributed.LocalCluster(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            executor = dask_executor(client)
            remote = run_stage(
                _tasks_for(raws, tmp_path / "dask", fail_on=raws[1].name),
                executor,
                db=dask_db,
                progress=False,
            )
    assert [r.status for r in remote] == [r.status for r in local] == ["done", "failed", "done", "done"]
    for a, b in zip(local, remote, strict=True):
        assert (a.checksum, a.qc, a.reason) == (b.checksum, b.qc, b.reason)
        for pa, pb in zip(a.products, b.products, strict=True):
            da, dbb = json.loads(Path(pa).read_text()), json.loads(Path(pb).read_text())
            assert da["md5"] == dbb["md5"] and da["calibrations"] == dbb["calibrations"]
    for table in (local_db.frames_table(), dask_db.frames_table()):
        assert sorted(table["success"].tolist()) == [False, True, True, True]
