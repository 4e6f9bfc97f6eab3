"""``nres nightly``: the night's processed calibrations (and only that night's) stacked into masters."""

import numpy as np
import pytest

from nres.calib import stack
from nres.pipeline.cli import main
from nres.pipeline.db import Database
from nres.pipeline.frames import read_frame
from nres.pipeline.recipes import reduce_file
from nres.sim import simulate_night

WINDOW = (2000, 2064, 2000, 2064)  # 64 x 64 px: only bias and dark frames, no traces needed


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly")
    db_url = f"sqlite:///{root / 'nres.sqlite'}"
    db = Database(db_url)
    paths = {}
    for day in ("2019-04-05", "2019-04-06"):
        truth = simulate_night("lsc", day, root / "archive", n_bias=3, n_dark=0, n_flat=0, n_arc=0,
                               targets=(), window=WINDOW, seed=1, progress=False)  # fmt: skip
        raw = sorted((truth.parent / "raw").glob("*.fits.fz"))
        for path in raw:
            res = reduce_file(path, db=db, out_dir=root / "reduced", register=False)
            assert res.status == "done", res.reason
        paths[day.replace("-", "")] = [
            root / "reduced" / p.name.replace("-b00.fits.fz", "-b92-2d.fits.fz") for p in raw
        ]
    return {"root": root, "db_url": db_url, "paths": paths}


def test_nightly_stacks_only_that_night(reduced, capsys):
    out = reduced["root"] / "masters"
    code = main(["nightly", "--site", "lsc", "--day-obs", "20190405", "--db", reduced["db_url"],
                 "--out", str(out), "--min-frames", "3"])  # fmt: skip
    assert code == 0
    cal = Database(reduced["db_url"]).calibrations_table(obstype="BIAS")
    assert len(cal) == 1 and int(cal["nframes"][0]) == 3
    master = read_frame(str(cal["path"][0]))
    inputs = reduced["paths"]["20190405"]
    assert all(p.exists() for p in inputs)
    # the known answer: the same stack of exactly that night's three processed biases (float32
    # storage of the master: 1e-6 relative)
    direct = stack([str(p) for p in inputs], method="sigma_clip", min_frames=3)
    np.testing.assert_allclose(master.data, direct.data, rtol=1e-6, atol=1e-3)
    assert "BIAS" in capsys.readouterr().out


def test_nightly_without_frames_exits_2(reduced, capsys):
    code = main(["nightly", "--site", "lsc", "--day-obs", "20190101", "--db", reduced["db_url"],
                 "--out", str(reduced["root"] / "none")])  # fmt: skip
    assert code == 2
    assert "no processed frame" in capsys.readouterr().err
