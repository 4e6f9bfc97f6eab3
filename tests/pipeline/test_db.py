"""nres.pipeline.db: frames, calibrations (selection through nres.calib.select), targets, RV results."""

import math
import pickle

import numpy as np
import pytest

from nres.calib.select import REQUIRED_COLUMNS
from nres.errors import InvalidParameterError, MissingCalibrationError, NRESError
from nres.pipeline.db import Database, normalise_target_name


@pytest.fixture
def db():
    d = Database("sqlite:///:memory:")
    yield d
    d.close()


def test_sqlite_file_created_on_first_use_in_new_directory(tmp_path):
    path = tmp_path / "deep" / "dir" / "nres.sqlite"
    d = Database(f"sqlite:///{path}")
    assert not path.exists()  # the constructor does not touch the disk
    assert not d.frame_done("0" * 32)
    assert path.is_file()
    d.close()
    # a plain path is an SQLite file too, and the data persist across connections
    d2 = Database(path)
    assert d2.url == f"sqlite:///{path.resolve()}"
    d2.record_frame(tmp_path / "a.fits", checksum="c" * 32, success=True)
    d2.close()
    assert Database(path).frame_done("c" * 32)


def test_bad_url_names_the_parameter():
    with pytest.raises(InvalidParameterError, match="url"):
        Database("not a url ://")


def test_database_refuses_to_be_pickled(db):
    with pytest.raises(NRESError, match="driver"):
        pickle.dumps(db)


def test_record_frame_upserts_by_checksum_and_counts_tries(db, tmp_path):
    raw = tmp_path / "lscnrs01-fa09-20190405-0014-e00.fits.fz"
    first = db.record_frame(
        raw,
        checksum="a" * 32,
        success=False,
        reason="ValueError: bad",
        obstype="TARGET",
        site="lsc",
        mjd_obs=58578.5,
    )
    assert first["tries"] == 1 and not first["success"] and first["reason"] == "ValueError: bad"
    assert not db.frame_done("a" * 32)
    qc = {"snr": np.float32(12.5), "orders": np.arange(3), "nan": float("nan"), "n": np.int64(4)}
    second = db.record_frame(raw, checksum="a" * 32, success=True, qc=qc, products=[tmp_path / "p.fits"])
    assert second["id"] == first["id"] and second["tries"] == 2
    assert second["reason"] is None and second["obstype"] == "TARGET"  # header facts kept from attempt 1
    assert db.frame_done("a" * 32)
    row = db.frame("a" * 32)
    assert row["qc"] == {"snr": 12.5, "orders": [0, 1, 2], "nan": None, "n": 4}  # plain JSON
    assert row["products"] == [str(tmp_path / "p.fits")] and row["filename"] == raw.name
    assert db.frame("b" * 32) is None
    table = db.frames_table()
    assert len(table) == 1 and table["checksum"][0] == "a" * 32
    assert len(db.frames_table(success=False)) == 0


def test_record_frame_requires_checksum(db):
    with pytest.raises(InvalidParameterError, match="checksum"):
        db.record_frame("x.fits", checksum="", success=True)


def _cal(db, obstype, path, mjd, **kw):
    base = {"site": "lsc", "instrument": "nres01", "camera": "fa09"}
    return db.add_calibration(obstype, path, mjd_start=mjd, **{**base, **kw})


def test_calibrations_table_has_the_columns_select_expects(db):
    empty = db.calibrations_table()
    assert set(REQUIRED_COLUMNS) <= set(empty.colnames) and len(empty) == 0
    _cal(db, "bias", "b1.fits", 100.0, mjd_end=100.2, nframes=5)
    t = db.calibrations_table()
    assert t["obstype"][0] == "BIAS" and math.isclose(t["mjd_obs"][0], 100.1)  # mean of the range
    assert t["mjd_start"][0] == 100.0 and t["mjd_end"][0] == 100.2 and t["nframes"][0] == 5
    df = db.calibrations_table(as_pandas=True)
    assert list(df["path"]) == ["b1.fits"]


def test_select_calibration_uses_calib_select_rules(db):
    _cal(db, "BIAS", "near_single.fits", 100.0)
    _cal(db, "BIAS", "master.fits", 98.0, nframes=10)
    _cal(db, "BIAS", "bad.fits", 100.4, is_bad=True)
    _cal(db, "BIAS", "other_camera.fits", 100.5, camera="fa17")
    _cal(db, "LAMPFLAT", "flat110.fits", 100.2, fiber_state="110")
    _cal(db, "LAMPFLAT", "flat011.fits", 100.3, fiber_state="011")
    frame = {"mjd_obs": 100.5, "instrument": "nres01", "camera": "fa09"}
    # nearest usable: the bad one and the other camera are skipped
    assert db.select_calibration("BIAS", **frame)["path"] == "near_single.fits"
    # the original's rule: a master within max(3.5 md, md + 3.5 d) = 4 d beats the nearer single frame
    assert db.select_calibration("BIAS", **frame, rule="idl")["path"] == "master.fits"
    assert db.select_calibration("LAMPFLAT", **frame, fiber_state="011")["path"] == "flat011.fits"
    assert db.select_calibration("LAMPFLAT", **frame, fiber_state="110")["path"] == "flat110.fits"
    db.mark_calibration_bad("near_single.fits")
    assert db.select_calibration("BIAS", **frame)["path"] == "master.fits"
    with pytest.raises(MissingCalibrationError, match="DARK"):
        db.select_calibration("DARK", **frame)
    with pytest.raises(MissingCalibrationError, match="nope"):
        db.mark_calibration_bad("nope.fits")


def test_add_calibration_replaces_same_path_and_validates(db):
    _cal(db, "BIAS", "b.fits", 100.0)
    _cal(db, "BIAS", "b.fits", 101.0, nframes=3)
    t = db.calibrations_table()
    assert len(t) == 1 and t["mjd_obs"][0] == 101.0 and t["nframes"][0] == 3
    with pytest.raises(InvalidParameterError, match="mjd_start <= mjd_end"):
        _cal(db, "BIAS", "c.fits", 101.0, mjd_end=100.0)
    with pytest.raises(InvalidParameterError, match="fiber_state"):
        _cal(db, "LAMPFLAT", "c.fits", 101.0, fiber_state="12")


def test_target_lookup_normalises_names_like_the_original(db):
    assert normalise_target_name("HD 1461_b") == "HD1461"
    db.add_target("HD 1461", ra=4.67445, dec=-8.053, vmag=6.46, rv=-10.086)
    db.add_target("GJ 33", ra=12.09574, dec=5.28061)
    row = db.target("hd1461")
    assert row["name"] == "HD 1461" and row["vmag"] == 6.46 and row["gmag"] is None
    db.add_target("hd 1461", ra=4.67445, dec=-8.053, vmag=6.5)  # same key: replaced, not added
    assert len(db.targets_table()) == 2 and db.target("HD1461")["vmag"] == 6.5
    with pytest.raises(MissingCalibrationError, match="Vega"):
        db.target("Vega")
    with pytest.raises(InvalidParameterError, match="dec"):
        db.add_target("X", ra=10.0, dec=91.0)
    with pytest.raises(InvalidParameterError, match="unknown field"):
        db.add_target("X", ra=10.0, dec=1.0, colour=1.0)


def test_nearest_target_separation(db):
    db.add_target("A", ra=10.0, dec=20.0)
    db.add_target("B", ra=10.5, dec=20.0)
    # 10 arcsec north of A: the separation is exactly 10 arcsec along a meridian
    hit = db.nearest_target(10.0, 20.0 + 10.0 / 3600.0, radius_arcsec=30.0)
    assert hit["name"] == "A" and hit["separation_arcsec"] == pytest.approx(10.0, abs=1e-6)
    with pytest.raises(MissingCalibrationError, match="within 5"):
        db.nearest_target(10.0, 20.0 + 10.0 / 3600.0, radius_arcsec=5.0)


def test_zero_templates_and_rv_results(db):
    db.add_zero(
        "zero/ZEROlsc2017317.27425.fits",
        target="HD 1461",
        site="lsc",
        camera="fa09",
        mjd_obs=58069.77,
        nframes=4,
        teff=5657,
        logg=4.0,
        is_standard=True,
    )
    z = db.zeros_table(target="hd1461")
    assert len(z) == 1 and z["is_standard"][0] and z["teff"][0] == 5657.0
    assert len(db.zeros_table(target="GJ 33")) == 0
    import astropy.units as u

    db.add_rv(
        target="HD 1461",
        mjd_obs=58500.1,
        rv=-10086.0 * u.m / u.s,
        rv_err=np.float64(1.2),
        fiber=0,
        qc={"orders": np.int64(40)},
    )
    db.add_rv(target="GJ 33", mjd_obs=58500.0, rv=10.0)
    t = db.rv_table()
    assert list(t["target"]) == ["GJ 33", "HD 1461"]  # sorted by MJD
    t = db.rv_table(target="HD1461")
    assert t["rv"][0] == -10086.0 and t["rv_err"][0] == 1.2 and t["fiber"][0] == 0
    with pytest.raises(InvalidParameterError, match="unknown field"):
        db.add_rv(target="X", mjd_obs=1.0, velocity=3.0)
