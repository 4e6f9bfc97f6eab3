"""TARGET drift correction and TRIPLE on a small simulated night.

The calibrations (bias, dark, flats and arcs of both fiber pairs) are simulated without drift; one
TARGET exposure of a star in fiber 0 is simulated with the whole spectrum shifted by ``DRIFT_PX``
along x (ThAr fiber and star alike, as a spectrograph drift moves both). Its RV is right only with
the drift measured on the simultaneous ThAr and applied to the star fiber; without it, the RV is
off by the drift's velocity (~``DRIFT_PX`` x 1.5 km/s/px).
"""

import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
from astropy.table import Table

from nres.doppler import C_M_S
from nres.pipeline.db import Database
from nres.pipeline.night import reduce_night
from nres.pipeline.recipes import reduce_file
from nres.sim import StellarSpectrum, simulate_night
from nres.sim.core import simulate
from nres.sim.night import DEFAULT_TARGETS
from nres.sim.raw_file import raw_filename, raw_window, write_raw

# the demo's window (8 orders x 2048 columns); a smaller one gives unreliable wavelength solutions
# (docs/pipeline.md)
WINDOW = {"orders": (80, 87), "columns": (1024, 3072)}
DRIFT_PX = 0.08  # ~120 m/s: 30-60x the photon error of one exposure, so "wrong without" is clear
STAR = replace(DEFAULT_TARGETS[0], n_exposures=1)


def _drifted_target(raw_dir, truth, *, seed):
    """A TARGET raw file written as simulate_night writes its frames, with a drift injected."""
    meta = truth.meta
    mjd = float(truth["mjd_obs"].value.max()) + 0.02
    frame, t = simulate(
        "TARGET", site="lsc", seed=seed, window=WINDOW, mjd=mjd, exptime=STAR.exptime, fibers=(0, 1),
        rv=STAR.rv, target=STAR.coord, drift=(DRIFT_PX, 0.0),
        template=StellarSpectrum(seed=zlib.crc32(STAR.name.encode())),  # the night's star (templates.py)
    )  # fmt: skip
    frame = raw_window(frame, seed=seed)
    name = raw_filename("lsc", meta["instrument"], meta["camera"], meta["day_obs"], 90, "TARGET")
    path = raw_dir / name
    header = {"DAY-OBS": meta["day_obs"], "FRAMENUM": 90, "MOLNUM": 90}
    write_raw(frame, t, path, target=STAR.coord, object_name=STAR.name, header=header)
    return path, t


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    truth_path = simulate_night(
        "lsc", "2019-04-05", root / "archive", n_bias=1, n_dark=1, n_flat=1, n_arc=1, targets=(),
        window=WINDOW, seed=5, progress=False,
    )  # fmt: skip
    raw = truth_path.parent / "raw"
    truth = Table.read(truth_path)
    db = Database(f"sqlite:///{root / 'nres.sqlite'}")
    out = root / "reduced"
    with ThreadPoolExecutor(2) as pool:
        calib = reduce_night(raw, out, db=db, executor=pool, min_frames=1, progress=False, plot=False)
    target_dir = root / "target"
    target_dir.mkdir()
    path, t = _drifted_target(target_dir, truth, seed=11)
    runs = {}
    for label, correct in (("corrected", True), ("uncorrected", False)):
        res = reduce_file(path, db=db, out_dir=root / label, template="simulated", plot=False,
                          drift_correction=correct, force=True)  # fmt: skip
        assert res.status == "done", res.reason
        runs[label] = res.qc
    return {"db": db, "calib": calib, "truth": t, "runs": runs}


def test_triple_made_from_both_fiber_pairs(night):
    cal = night["db"].calibrations_table(obstype="TRIPLE")
    assert len(cal) == 1 and str(cal["fiber_state"][0]) == "111" and int(cal["nframes"][0]) == 2
    for qc in night["runs"].values():
        assert qc["wavecal_master"] == "TRIPLE"


def test_drift_measured_on_the_simultaneous_thar(night):
    qc = night["runs"]["corrected"]
    # the injected drift is a pure shift of every fiber: measured within 0.005 px (the fit's error
    # is ~0.001 px from ~100 ThAr lines; 5x for the model's residual structure)
    assert abs(qc["drift_px"] - DRIFT_PX) < 0.005, qc["drift_px"]
    assert 0 < qc["drift_err_px"] < 0.005
    # 1.5 km/s per px at R ~ 53000 and 2.3 px per resolution element: +-20 % brackets the orders
    assert 0.8 * 1500 * DRIFT_PX < qc["drift_m_s"] < 1.2 * 1500 * DRIFT_PX
    assert night["runs"]["uncorrected"]["drift_px"] is None


def test_rv_right_only_with_drift_correction(night):
    truth = night["truth"]
    expected = float(truth.z_star) * C_M_S  # barycentric RV injected (z_star = rv / c)
    good, bad = night["runs"]["corrected"], night["runs"]["uncorrected"]
    sigma = float(np.hypot(good["rv_err_m_s"], good["rv_err_wavecal_m_s"]))
    # corrected: within 4 sigma (photon error (+) the solution's bound, ~17 m/s for this 8-order
    # window's TRIPLE) and, tighter, within 10 m/s: a tenth of the drift's ~120 m/s (measured 6 m/s)
    residual = good["rv_m_s"] - expected
    assert abs(residual) < min(10.0, 4 * sigma), (good["rv_m_s"], expected, sigma)
    # uncorrected: lines moved red -> RV too high by the drift's velocity (10 % : the drift varies
    # ~5 % over the orders, the RV weights them differently), ten times the corrected tolerance
    off = bad["rv_m_s"] - expected
    assert off > 10 * 10.0
    assert abs(off - good["drift_m_s"]) < 0.1 * good["drift_m_s"], (off, good["drift_m_s"])
