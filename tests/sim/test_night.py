"""nres.sim.simulate_night and `nres simulate --night`: a small windowed night on disk."""

from __future__ import annotations

import dataclasses

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table

from nres.doppler import C_M_S
from nres.errors import InvalidParameterError
from nres.io import read_raw
from nres.pipeline.cli import main
from nres.sim import simulate_night
from nres.sim.night import DEFAULT_TARGETS

WINDOW = (1000, 1040, 1500, 1600)  # 40 x 100 px: the night's content, not its pixels, is tested


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    out = tmp_path_factory.mktemp("night")
    targets = [dataclasses.replace(t, n_exposures=2) for t in DEFAULT_TARGETS[:2]]
    path = simulate_night(
        "lsc", "2019-04-05", out, n_bias=2, n_dark=1, n_flat=1, n_arc=1, targets=targets,
        window=WINDOW, seed=7, progress=False,
    )  # fmt: skip
    return out, path, Table.read(path)


def test_archive_layout_and_names(night):
    out, path, table = night
    raw_dir = out / "lsc" / "nres01" / "20190405" / "raw"
    assert path == out / "lsc" / "nres01" / "20190405" / "night_truth.ecsv"
    # 2 bias + 1 dark + 1 flat and 1 arc per fiber pair + 2 stars x 2 exposures
    assert len(table) == 2 + 1 + 2 + 2 + 4
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(table["filename"])
    assert list(table["frame_number"]) == list(range(1, len(table) + 1))
    assert table["filename"][0] == "lscnrs01-fa09-20190405-0001-b00.fits.fz"
    code = {"BIAS": "b", "DARK": "d", "LAMPFLAT": "w", "DOUBLE": "a", "TARGET": "e"}
    assert all(f[-11] == code[t] for f, t in zip(table["filename"], table["obstype"], strict=True))


def test_every_file_round_trips_its_truth(night):
    out, _, table = night
    for row in table:
        raw = read_raw(out / "lsc" / "nres01" / "20190405" / "raw" / row["filename"])
        info = raw.info
        assert (info.obstype, info.site, info.instrument, info.camera) == (
            row["obstype"],
            "lsc",
            "nres01",
            "fa09",
        )
        assert info.day_obs == "20190405" and raw.frame.meta["FRAMENUM"] == row["frame_number"]
        assert info.mjd_obs == pytest.approx(row["mjd_obs"], abs=1e-9) and info.exptime == row["exptime"]
        assert info.fiber_state == row["fibers"]
        assert raw.frame.shape == (40, 100 + 58) and raw.frame.meta["NRESY0"] == 1000
        if row["obstype"] == "TARGET":
            assert info.science_fiber == row["science_fiber"]
            rec = info.targets[row["science_fiber"]]
            assert rec.name == row["target"]
            assert rec.coord.ra.deg == pytest.approx(row["ra"], abs=1e-6)  # 1e-6 deg > 2 mas header rounding
            assert rec.coord.dec.deg == pytest.approx(row["dec"], abs=1e-6)
            # the injected Doppler factors follow the convention 1 + z_obs = (1 + z_star) / (1 + z_b)
            assert row["z_star"] == pytest.approx(row["rv"] / C_M_S, rel=1e-12)
            assert 1 + row["z_obs"] == pytest.approx((1 + row["z_star"]) / (1 + row["z_b"]), rel=1e-14)
            assert 0 < abs(row["z_b"]) < 35e3 / C_M_S  # |v_corr| <= 30 km/s orbit + 0.5 rotation


def test_night_is_laid_out_in_time(night):
    _, _, table = night
    mjd, exptime = np.asarray(table["mjd_obs"]), np.asarray(table["exptime"])
    assert np.all(mjd[1:] >= mjd[:-1] + exptime[:-1] / 86400.0)  # one exposure at a time
    # local mean time at lsc (70.80 deg W): UTC - 4.72 h; dusk from 17 h, science from 19 h, dawn 6 h
    local_h = (mjd % 1.0) * 24.0 - 70.8046611111 / 15.0
    local_h = np.mod(local_h, 24.0)
    science = np.asarray(table["obstype"]) == "TARGET"
    assert np.all((local_h[science] >= 19.0 - 1e-6) | (local_h[science] < 6.0))
    dusk = ~science & (np.arange(len(table)) < np.flatnonzero(science)[0])
    dawn = ~science & (np.arange(len(table)) > np.flatnonzero(science)[-1])
    assert dusk.sum() + dawn.sum() == (~science).sum() and dusk.sum() >= dawn.sum() > 0
    assert np.all((local_h[dusk] >= 17.0 - 1e-6) & (local_h[dusk] < 19.0))
    assert np.all((local_h[dawn] >= 6.0 - 1e-6) & (local_h[dawn] < 12.0))


def test_targets_rv_and_standard(night):
    _, _, table = night
    science = table[table["obstype"] == "TARGET"]
    for t in DEFAULT_TARGETS[:2]:
        rows = science[science["target"] == t.name]
        assert len(rows) == 2 and np.all(rows["rv"] == t.rv.to_value(u.m / u.s))
        assert np.all(rows["standard"] == t.standard)
    assert np.sum(science["standard"]) == 2  # tau Ceti: the standard for ZERO building
    assert table.meta["day_obs"] == "20190405" and table.meta["window"] == list(WINDOW)


def test_bad_parameters(tmp_path):
    with pytest.raises(InvalidParameterError, match="site"):
        simulate_night("xyz", "2019-04-05", tmp_path)
    with pytest.raises(InvalidParameterError, match="day_obs"):
        simulate_night("lsc", "April", tmp_path)
    with pytest.raises(InvalidParameterError, match="n_bias"):
        simulate_night("lsc", "2019-04-05", tmp_path, n_bias=-1)


def test_cli_night(tmp_path):
    argv = ["simulate", "--night", "--site", "cpt", "--day-obs", "2019-04-05", "--out", str(tmp_path),
            "--window", "2000", "2030", "100", "180", "--n-bias", "1", "--n-dark", "0", "--n-flat", "0",
            "--n-arc", "0", "--n-exposures", "0", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    table = Table.read(tmp_path / "cpt" / "nres03" / "20190405" / "night_truth.ecsv")
    assert list(table["obstype"]) == ["BIAS"]
    raw = read_raw(tmp_path / "cpt" / "nres03" / "20190405" / "raw" / table["filename"][0])
    assert raw.frame.shape == (30, 80 + 58) and raw.info.camera == "fa13"
    assert main(["simulate", "--night", "--out", str(tmp_path)]) == 2  # no --day-obs: an NRESError
