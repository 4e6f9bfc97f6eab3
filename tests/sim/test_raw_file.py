"""nres.sim.write_raw / raw_window: simulated frames as raw NRES files that read_raw round-trips."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from nres.errors import InvalidParameterError
from nres.io import read_raw
from nres.sim import raw_filename, raw_window, simulate, write_raw
from nres.sim.doppler import default_target
from nres.sim.raw_file import METER_COUNTS
from nres.window import window_origin

REAL_HEADER = (
    __import__("pathlib").Path(__file__).parent.parent
    / "data"
    / ("raw_header_cpt_nres03_fa13_20190405_0014.txt")
)
WINDOW = (1000, 1064, 1500, 1700)


@pytest.fixture(scope="module")
def full_target(tmp_path_factory):
    """One full-size raw TARGET frame (the only full-size file of these tests), written fpacked."""
    frame, truth = simulate("TARGET", site="lsc", seed=5, raw=True, mjd=58579.1, rv=12.3 * u.km / u.s)
    path = tmp_path_factory.mktemp("raw") / "lscnrs01-fa09-20190405-0007-e00.fits.fz"
    write_raw(frame, truth, path, object_name="HD 10700", header={"DAY-OBS": "20190405"})
    return frame, truth, path, read_raw(path)


def test_full_raw_target_round_trips_data_and_header_facts(full_target):
    frame, truth, path, raw = full_target
    assert raw.frame.shape == (4108, 4160) and raw.frame.data.dtype == np.uint16
    np.testing.assert_array_equal(raw.frame.data, frame.data)  # lossless: pixel-exact
    info = raw.info
    assert (info.obstype, info.site, info.instrument, info.camera) == ("TARGET", "lsc", "nres01", "fa09")
    assert info.day_obs == "20190405"
    assert info.mjd_obs == pytest.approx(58579.1, abs=1e-9)
    assert info.exptime == 600.0
    assert info.gain == frame.meta["GAIN"] and info.read_noise == frame.meta["RDNOISE"]
    assert info.biassec == "[4103:4160,1:4096]" and info.trimsec == "[1:4096,1:4096]"
    assert info.fiber_objects == ("HD10700", "thar", None) and info.science_fiber == 0
    # the target record equals the injected star: 4-decimal RA seconds (1.5 mas), 3-decimal Dec
    # arcsec (0.5 mas) in the header, so 2 mas; proper motions and parallax are written as floats
    star, rec = default_target(), info.targets[0].coord
    assert star.separation(rec).to_value(u.mas) < 2.0
    assert rec.pm_ra_cosdec.to_value(u.mas / u.yr) == pytest.approx(star.pm_ra_cosdec.to_value(u.mas / u.yr))
    assert rec.distance.parallax.to_value(u.mas) == pytest.approx(273.96, rel=1e-9)
    assert rec.obstime.jyear == pytest.approx(2000.0)


def test_fpacked_like_real_files(full_target):
    _, _, path, _ = full_target
    with fits.open(path, disable_image_compression=True) as hdul:
        assert [h.name for h in hdul] == [
            "PRIMARY", "SPECTRUM", "EXPOSURE_METER", "AGU_1", "AGU_2", "TELESCOPE_1", "TELESCOPE_2"
        ]  # fmt: skip
        spec = hdul["SPECTRUM"].header
        assert spec["ZCMPTYPE"] == "RICE_1" and spec["ZBITPIX"] == 16 and spec["BZERO"] == 32768
        assert all("CHECKSUM" in h.header and "DATASUM" in h.header for h in hdul)
    assert path.stat().st_size < 0.6 * 4108 * 4160 * 2  # compressed well below the raw 34 MB
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed away


def test_header_has_the_real_keywords(full_target):
    # every keyword of the real header that describes the observation (not the table layout)
    real = fits.Header.fromtextfile(REAL_HEADER)
    _, _, _, raw = full_target
    wanted = ["SITEID", "SITE", "TELESCOP", "OBSTYPE", "FRAMENUM", "ORIGNAME", "DATE", "DATE-OBS", "DAY-OBS",
              "UTSTART", "UTSTOP", "MJD-OBS", "EXPTIME", "INSTRUME", "GAIN", "RDNOISE", "SATURATE", "MAXLIN",
              "DETSIZE", "CCDSUM", "BIASSEC", "DATASEC", "TRIMSEC", "RA", "DEC", "OBJECTS", "HDRVER",
              "RADESYS", "PROPID"]  # fmt: skip
    for key in wanted:
        assert key in real and key in raw.frame.meta, key
    meta = raw.frame.meta
    assert meta["ORIGNAME"] == "lscnrs01-fa09-20190405-0007-e00.fits"
    assert meta["UTSTART"] == "02:24:00.000" and meta["UTSTOP"] == "02:34:00.000"  # 0.1 d = 2.4 h; + 600 s
    assert meta["PM-RA"] == pytest.approx(-1.72105) and meta["PARALLAX"] == pytest.approx(0.27396)


def test_exposure_meter_is_the_flux_history(full_target):
    _, truth, _, raw = full_target
    em = raw.tables["EXPOSURE_METER"]
    n = truth.mjd.size
    assert len(em) == n and list(em.colnames) == [
        "MJD_START", "EXP_TIME", "FIB0COUNTS", "FIB1COUNTS", "FIB2COUNTS", "EMFLAGS"
    ]  # fmt: skip
    np.testing.assert_allclose(em["MJD_START"] + 0.5 * em["EXP_TIME"] / 86400.0, truth.mjd, rtol=0, atol=1e-9)
    np.testing.assert_allclose(em["EXP_TIME"], 600.0 / n)
    # integer counts keep the relative flux to 0.5 / METER_COUNTS
    np.testing.assert_allclose(em["FIB0COUNTS"] / METER_COUNTS, truth.flux_history, atol=0.51 / METER_COUNTS)
    assert np.all(em["FIB2COUNTS"] == 0)
    # the flux-weighted z_B recomputed from the file equals the truth: the weight errors (< 6e-7
    # relative) times the z_B spread within 10 min (< 1e-8) give < 1e-14
    w = np.asarray(em["FIB0COUNTS"], dtype=float)
    assert np.sum(w * truth.z_b_samples) / np.sum(w) == pytest.approx(truth.z_b, abs=1e-14)


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    frame, truth = simulate("DOUBLE", site="cpt", seed=2, window=WINDOW, fibers=(1, 2))
    raw = raw_window(frame, seed=2)
    path = write_raw(raw, truth, tmp_path_factory.mktemp("w") / "w.fits.fz")
    return frame, raw, truth, read_raw(path)


def test_windowed_raw_layout_and_round_trip(windowed):
    frame, raw, _, back = windowed
    ny, nx = WINDOW[1] - WINDOW[0], WINDOW[3] - WINDOW[2]
    assert raw.shape == (ny, nx + 58) and raw.data.dtype == np.uint16
    np.testing.assert_array_equal(back.frame.data, raw.data)
    assert window_origin(back.frame.meta) == (1000, 1500)
    assert back.info.trimsec == f"[1:{nx},1:{ny}]" and back.info.biassec == f"[{nx + 1}:{nx + 58},1:{ny}]"
    assert back.frame.meta["CCDSEC"] == "[1501:1700,1001:1064]"
    assert back.info.fiber_objects == (None, "thar", "thar") and back.info.site == "cpt"


def test_windowed_raw_values_are_electrons_over_gain_plus_bias(windowed):
    frame, raw, _, _ = windowed
    gain, rn = frame.meta["GAIN"], frame.meta["RDNOISE"]
    rows = 1000 + np.arange(frame.shape[0])[:, None]
    bias = 1000.0 + 1.5 * np.sin(2 * np.pi * rows / 3000.0)
    expected = np.clip(frame.data / gain + bias, 0, 65535)
    assert np.max(np.abs(raw.data[:, :200] - expected)) <= 0.5 + 1e-9  # rounding only
    over = raw.data[:, 200:] - bias
    # overscan: bias + read noise in ADU; 64 x 58 samples give the std to ~1.3%, allow 5 sigma
    assert abs(over.mean()) < 5 * (rn / gain) / np.sqrt(over.size) + 0.5 / np.sqrt(3)
    assert np.std(over) == pytest.approx(np.hypot(rn / gain, 1 / np.sqrt(12)), rel=0.07)


def test_raw_filename():
    assert raw_filename("lsc", "nres01", "fa09", "2019-04-05", 14, "TARGET") == (
        "lscnrs01-fa09-20190405-0014-e00.fits.fz"
    )
    codes = {t: raw_filename("cpt", "nres03", "fa13", "20190405", 1, t, compress=False)[-8:-5]
             for t in ("LAMPFLAT", "DOUBLE", "BIAS", "DARK")}  # fmt: skip
    assert codes == {"LAMPFLAT": "w00", "DOUBLE": "a00", "BIAS": "b00", "DARK": "d00"}
    with pytest.raises(InvalidParameterError, match="obstype"):
        raw_filename("lsc", "nres01", "fa09", "20190405", 1, "SKYFLAT")


def test_bad_inputs(windowed, tmp_path):
    frame, raw, truth, _ = windowed
    with pytest.raises(InvalidParameterError, match="in ADU"):
        write_raw(frame, truth, tmp_path / "x.fits.fz")
    other = simulate("BIAS", site="cpt", seed=2, window=WINDOW)[1]
    with pytest.raises(InvalidParameterError, match="OBSTYPE"):
        write_raw(raw, other, tmp_path / "x.fits.fz")
    path = write_raw(raw, truth, tmp_path / "x.fits", compress=False)
    with pytest.raises(InvalidParameterError, match="exists"):
        write_raw(raw, truth, path)
    assert write_raw(raw, truth, path, overwrite=True) == path
    with pytest.raises(InvalidParameterError, match="electrons"):
        raw_window(raw)
