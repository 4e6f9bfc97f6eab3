"""reduce_night on a Dask cluster (nres.pipeline.batch.dask_executor) gives the products of the default
local process pool: every FITS product's arrays equal to 1e-12 relative, RVs equal."""

from dataclasses import replace
from pathlib import Path

import distributed
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from nres.pipeline.batch import dask_executor
from nres.pipeline.db import Database
from nres.pipeline.night import reduce_night
from nres.sim import simulate_night
from nres.sim.night import DEFAULT_TARGETS

# half test_night's window (4 orders x 1024 columns): its RVs are off by up to ~20 m/s (too few arc
# lines at the edges, see docs/pipeline.md) but only the equality of the two executors is tested here
WINDOW = {"orders": (82, 85), "columns": (1536, 2560)}
# the same inputs and code on either executor: only the order of floating-point operations could
# differ (it does not: each frame is reduced by one task); 1e-12 leaves room for nothing else
RTOL = 1e-12


@pytest.fixture(scope="module")
def reductions(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask_night")
    standard = next(t for t in DEFAULT_TARGETS if t.standard)
    truth_path = simulate_night(
        "lsc", "2019-04-05", root / "archive", n_bias=1, n_dark=1, n_flat=1, n_arc=1,
        targets=[replace(standard, n_exposures=1)], window=WINDOW, seed=11, progress=False,
    )  # fmt: skip
    raw = truth_path.parent / "raw"
    out = {"n_frames": len(Table.read(truth_path))}
    options = {"template": "simulated", "min_frames": 1, "progress": False, "plot": False, "write_2d": False}
    # in-process cluster (threads; inproc:// transport, nothing beyond loopback), no dashboard
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
            # the scheduler's HTTP server (health routes, started even without a dashboard) would
            # listen on the host's address at 8787: keep it on loopback at a free port
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        db = Database(f"sqlite:///{root / 'dask.sqlite'}")
        result = reduce_night(raw, root / "dask", db=db, executor=dask_executor(client), **options)
        out["dask"] = (root / "dask", db, result)
    db = Database(f"sqlite:///{root / 'local.sqlite'}")
    # the default executor: a local process pool (one spawned worker: each would import and load the
    # numba caches again, and one is enough to compare)
    result = reduce_night(raw, root / "local", db=db, max_workers=1, **options)
    out["local"] = (root / "local", db, result)
    return out


def _fits_products(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith((".fits", ".fits.fz")))


def _assert_hdu_equal(a, b, where):
    if a.data is None or b.data is None:
        assert a.data is None and b.data is None, where
        return
    if isinstance(a, fits.BinTableHDU | fits.TableHDU):
        assert a.columns.names == b.columns.names, where
        for name in a.columns.names:
            x, y = np.asarray(a.data[name]), np.asarray(b.data[name])
            if x.dtype.kind in "fc":
                np.testing.assert_allclose(x, y, rtol=RTOL, atol=0, equal_nan=True, err_msg=f"{where}:{name}")
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"{where}:{name}")
    else:
        np.testing.assert_allclose(a.data, b.data, rtol=RTOL, atol=0, equal_nan=True, err_msg=where)


def test_every_frame_reduced_on_both(reductions):
    for name in ("dask", "local"):
        result = reductions[name][2]
        assert result.failures == [], name
        assert result.n_done == reductions["n_frames"], name  # every simulated frame


def test_products_equal(reductions):
    dask_dir, local_dir = reductions["dask"][0], reductions["local"][0]
    names = _fits_products(dask_dir)
    assert names == _fits_products(local_dir)
    assert sum(n.endswith("-1d.fits") for n in names) >= 3  # two arcs and the TARGET
    for name in names:
        with fits.open(dask_dir / name) as a, fits.open(local_dir / name) as b:
            assert [h.name for h in a] == [h.name for h in b], name
            for ha, hb in zip(a, b, strict=True):
                _assert_hdu_equal(ha, hb, f"{name}[{ha.name}]")


def test_rvs_equal(reductions):
    rv_dask = reductions["dask"][1].rv_table()
    rv_local = reductions["local"][1].rv_table()
    assert len(rv_dask) == len(rv_local) == 1
    for column in ("rv", "rv_err", "rv_observed", "barycentric_correction"):
        assert float(rv_dask[column][0]) == float(rv_local[column][0]), column
    assert np.isfinite(float(rv_dask["rv"][0]))
