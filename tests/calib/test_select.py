"""nres.calib.select: the selection rules on a small table of calibrations."""

import pandas as pd
import pytest
from astropy.table import Table

from nres.calib import select
from nres.errors import InvalidParameterError, MissingCalibrationError


@pytest.fixture
def table():
    rows = [
        # obstype, instrument, camera, fiber_state, mjd_obs, is_bad, path, nframes
        ("BIAS", "nres01", "fa09", "000", 100.0, False, "b_old_master", 10),
        ("BIAS", "nres01", "fa09", "000", 104.9, False, "b_near_single", 1),
        ("BIAS", "nres01", "fa09", "000", 105.2, True, "b_bad", 10),
        ("BIAS", "nres01", "fa09", "000", 105.6, False, "b_future", 1),
        ("BIAS", "nres01", "fa13", "000", 105.0, False, "b_other_camera", 10),
        ("BIAS", "nres02", "fa09", "000", 105.0, False, "b_other_instrument", 10),
        ("LAMPFLAT", "nres01", "fa09", "110", 104.0, False, "f_110", 5),
        ("LAMPFLAT", "nres01", "fa09", "011", 104.8, False, "f_011", 5),
    ]
    cols = ["obstype", "instrument", "camera", "fiber_state", "mjd_obs", "is_bad", "path", "nframes"]
    return pd.DataFrame(rows, columns=cols)


def pick(table, **kw):
    base = {"obstype": "bias", "mjd_obs": 105.0, "instrument": "NRES01", "camera": "fa09"}
    return select.select_calibration(table, **{**base, **kw})["path"]


def test_nearest_usable_same_camera_and_instrument(table):
    assert pick(table) == "b_near_single"  # bad row at 0.2 d skipped, other camera/instrument ignored
    assert pick(table, mjd_obs=105.5) == "b_future"  # later calibrations allowed by default
    assert pick(table, mjd_obs=105.5, only_older=True) == "b_near_single"


def test_fiber_state_and_astropy_table(table):
    kw = {"obstype": "LAMPFLAT", "mjd_obs": 105.0}
    assert pick(table, **kw, fiber_state="110") == "f_110"
    assert pick(table, **kw, fiber_state="011") == "f_011"
    assert pick(Table.from_pandas(table), **kw, fiber_state="110") == "f_110"


def test_max_age_and_missing_error_names_the_request(table):
    assert pick(table, max_age=0.2) == "b_near_single"
    with pytest.raises(MissingCalibrationError, match="camera='fa09'.*max_age=0.01"):
        pick(table, max_age=0.01)
    with pytest.raises(MissingCalibrationError, match="fiber_state='111'"):
        pick(table, obstype="LAMPFLAT", fiber_state="111")
    with pytest.raises(LookupError):
        pick(table, obstype="DARK")


def test_idl_rule_prefers_master_inside_window(table):
    # md = 0.1 d (b_near_single); window = max(0.35, 3.6) d: the master at 5 d is outside ...
    assert pick(table, rule="idl") == "b_near_single"
    # ... at 102.8: md = 2.1 d (single), window = max(7.35, 5.6) d holds the master at 2.8 d
    assert pick(table, mjd_obs=102.8, legacy=True) == "b_old_master"
    assert pick(table, mjd_obs=102.8) == "b_near_single"


def test_missing_columns_raise(table):
    with pytest.raises(InvalidParameterError, match="is_bad"):
        pick(table.drop(columns="is_bad"))
    # the idl rule cannot tell masters from single frames without nframes: no silent fallback
    with pytest.raises(InvalidParameterError, match="nframes"):
        pick(table.drop(columns="nframes"), rule="idl")
    assert pick(table.drop(columns="nframes")) == "b_near_single"
    with pytest.raises(InvalidParameterError, match="rule"):
        pick(table, rule="latest")
    with pytest.raises(InvalidParameterError, match="binning"):
        pick(table, binning="1 1")
