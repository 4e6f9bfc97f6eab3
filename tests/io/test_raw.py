"""Tests of nres.io.read_raw / RawInfo / RawFrame on raw files shaped like the real ones."""

from __future__ import annotations

import hashlib
import os
import pickle
import types

import astropy.units as u
import numpy as np
import pytest

import nres.io
from nres.errors import InvalidInputFileError, InvalidParameterError, NRESWarning
from nres.io import RawInfo, parse_section, read_raw
from nres.io import rawinfo as rawinfo_module

from .raw_builders import SHAPE, real_main_header, telescope_header, write_raw


@pytest.fixture(scope="module")
def raw(raw_fz):
    return read_raw(raw_fz)


@pytest.fixture(scope="module")
def target(raw_target_fits):
    return read_raw(raw_target_fits)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----- a real header, fpacked full-size frame -------------------------------------------------
def test_info_matches_the_real_header(raw, raw_fz):
    info = raw.info
    # every expected value below is read off the real header of cptnrs03-fa13-20190405-0014-a00
    assert info.obstype == "DOUBLE"
    assert (info.site, info.instrument, info.camera) == ("cpt", "nres03", "fa13")
    assert info.day_obs == "20190405"
    assert info.date_obs.scale == "utc"
    assert info.date_obs.isot == "2019-04-05T12:56:46.460"
    # MJD-OBS is kept as written (the original used it); it is 15.5 s before DATE-OBS in this header
    assert info.mjd_obs == 58578.5392471
    assert (info.date_obs.mjd - info.mjd_obs) * 86400 == pytest.approx(15.5, abs=0.1)
    assert info.exptime == 600.0
    # header values win over the camera table (ccds.csv has gain 3.2, read noise 7 for fa13)
    assert (info.gain, info.read_noise, info.saturation, info.max_linear) == (1.0, 7.3, 47500.0, 40000.0)
    assert info.biassec == "[4103:4160,1:4096]" and info.trimsec == "[1:4096,1:4096]"
    assert info.bias_slices == (slice(0, 4096), slice(4102, 4160))
    assert info.trim_slices == (slice(0, 4096), slice(0, 4096))
    assert info.fiber_objects == (None, "thar", "thar")
    assert info.lit_fibers == (1, 2) and info.thar_fibers == (1, 2)
    assert info.fiber_state == "011"
    assert info.science_fiber is None and info.targets == {}
    assert raw.path == raw_fz


def test_fpacked_image_is_returned_exactly_in_adu(raw, raw_image):
    frame = raw.frame
    assert frame.unit == u.adu
    assert frame.shape == SHAPE == (4108, 4160)
    assert frame.data.dtype == np.uint16 and frame.data.dtype.isnative
    np.testing.assert_array_equal(frame.data, raw_image)  # lossless: every value, 0 and 65535 too
    assert frame.uncertainty is None and frame.mask is None
    assert frame.meta["OBJECTS"] == "none&thar&thar" and frame.meta["SITEID"] == "cpt"
    for layout in ("BZERO", "BITPIX", "NAXIS1", "CHECKSUM", "EXTNAME", "ZCMPTYPE"):
        assert layout not in frame.meta
    assert frame.meta.comments["GAIN"] == "[electrons/count] Pixel gain"


def test_side_tables(raw):
    assert sorted(raw.tables) == ["AGU_1", "AGU_2", "EXPOSURE_METER", "TELESCOPE_1", "TELESCOPE_2"]
    em = raw.tables["EXPOSURE_METER"]
    assert em["FIB1COUNTS"].tolist() == [10, 20, 30, 40]
    assert em["FIB2COUNTS"].tolist() == [11, 21, 31, 41]
    assert raw.tables["AGU_2"]["FILENAME"].tolist() == ["agu2-0001.fits", "agu2-0002.fits"]
    tel = raw.tables["TELESCOPE_1"]
    assert len(tel) == 0 and tel.meta["OBJECT"] == "N/A" and tel.meta["LATITUDE"] == -32.3806


def test_raw_file_is_not_modified(tmp_path, raw_image):
    path = write_raw(tmp_path / "x.fits.fz", image=raw_image)
    before, mtime = _sha(path), os.stat(path).st_mtime_ns
    read_raw(str(path))
    assert _sha(path) == before and os.stat(path).st_mtime_ns == mtime


def test_plain_fits_target_frame(target, raw_image):
    np.testing.assert_array_equal(target.frame.data, raw_image)
    assert target.frame.data.dtype == np.uint16
    info = target.info
    assert info.obstype == "TARGET" and info.science_fiber == 0
    assert info.fiber_objects == ("HD 10700", "thar", None)
    assert info.lit_fibers == (0, 1) and info.thar_fibers == (1,) and info.fiber_state == "110"
    assert sorted(info.targets) == [0]  # TELESCOPE_2 is all N/A and fiber 2 is dark


def test_target_record_from_telescope_1(target):
    rec = target.info.targets[0]
    assert (rec.name, rec.fiber, rec.telescope, rec.coord_source) == ("HD 10700", 0, 1, "catalog")
    c = rec.coord
    # CAT-RA 01:44:04.083 (hours) and CAT-DEC -15:56:14.93, converted by hand
    assert c.ra.deg == pytest.approx((1 + 44 / 60 + 4.083 / 3600) * 15, abs=1e-12)
    assert c.dec.deg == pytest.approx(-(15 + 56 / 60 + 14.93 / 3600), abs=1e-12)
    # header proper motions are arcsec/yr (RA one times cos Dec), parallax arcsec
    assert c.pm_ra_cosdec.to_value(u.mas / u.yr) == pytest.approx(-1729.82, rel=1e-12)
    assert c.pm_dec.to_value(u.mas / u.yr) == pytest.approx(855.09, rel=1e-12)
    assert c.distance.to_value(u.pc) == pytest.approx(1 / 0.27417, rel=1e-12)
    assert c.obstime.jyear == pytest.approx(2000.0, abs=1e-9)
    assert c.frame.name == "icrs"
    assert rec.location.lat.deg == pytest.approx(-32.3806, abs=1e-9)
    assert rec.location.lon.deg == pytest.approx(20.8101, abs=1e-9)
    assert rec.location.height.to_value(u.m) == pytest.approx(1760.0, abs=1e-6)


def test_image_in_primary_hdu_without_extname(tmp_path, raw_image):
    path = write_raw(tmp_path / "funpacked.fits", image=raw_image, image_hdu="primary", compressed=False)
    got = read_raw(path)
    np.testing.assert_array_equal(got.frame.data, raw_image)
    assert got.info.camera == "fa13"


@pytest.mark.parametrize("dtype", [">i4", ">f4"])
def test_other_dtypes_keep_values_in_native_order(tmp_path, dtype):
    image = (np.arange(SHAPE[0] * SHAPE[1], dtype=np.int64) % 70001).reshape(SHAPE).astype(dtype)
    path = write_raw(tmp_path / "x.fits", image=image, compressed=False)
    data = read_raw(path).frame.data
    assert data.dtype.isnative and data.dtype.kind == np.dtype(dtype).kind
    np.testing.assert_array_equal(data, image)


# ----- RawInfo.from_header: keyword rules -----------------------------------------------------
def _info(**cards):
    header = real_main_header()
    for key, value in cards.items():
        key = key.replace("_", "-")
        if value is None:
            del header[key]
        else:
            header[key] = value
    return header


@pytest.mark.parametrize(
    ("given", "expected"),
    [("BIAS", "BIAS"), ("dark", "DARK"), ("LAMPFLAT", "LAMPFLAT"), ("FLAT", "LAMPFLAT"), ("ARC", "DOUBLE"),
     ("DOUBLE", "DOUBLE"), ("SPECTRUM", "SPECTRUM"), ("EXPERIMENTAL", "EXPERIMENTAL")],
)  # fmt: skip
def test_obstype_aliases(given, expected):
    assert RawInfo.from_header(_info(OBSTYPE=given)).obstype == expected


def test_bias_without_objects_has_no_lit_fiber():
    info = RawInfo.from_header(_info(OBSTYPE="BIAS", OBJECTS=None))
    assert info.fiber_objects == (None, None, None) and info.lit_fibers == () and info.fiber_state == "000"


def test_science_fiber_two_and_both():
    hdr = _info(OBSTYPE="TARGET", OBJECTS="none&thar&GJ 699")
    assert RawInfo.from_header(hdr).science_fiber == 2
    hdr = _info(OBSTYPE="TARGET", OBJECTS="GJ 699&thar&HD 1")
    assert RawInfo.from_header(hdr).science_fiber == 0


def test_lamp_flat_fibers():
    info = RawInfo.from_header(_info(OBSTYPE="LAMPFLAT", OBJECTS="tung&tung&none"))
    assert info.lit_fibers == (0, 1) and info.thar_fibers == () and info.science_fiber is None


def test_datasec_used_when_no_trimsec():
    info = RawInfo.from_header(_info(TRIMSEC=None, DATASEC="[1:4096,1:4090]"))
    assert info.trimsec == "[1:4096,1:4090]" and info.trim_slices == (slice(0, 4090), slice(0, 4096))


def test_negative_zero_declination_keeps_its_sign():
    # the original parsed '-00:30:00' word by word and lost the sign (idl-calib-trace-extract.md 3.2)
    tel = telescope_header(1, OBJECT="X", **{"CAT-RA": "12:00:00", "CAT-DEC": "-00:30:00"})
    info = RawInfo.from_header(_info(OBSTYPE="TARGET", OBJECTS="X&thar&none"), telescopes={1: tel})
    assert info.targets[0].coord.dec.deg == -0.5
    # hour angle -> degrees costs a rounding step: 1e-12 deg (4 nano-arcsec) is far below any use
    assert info.targets[0].coord.ra.deg == pytest.approx(180.0, abs=1e-12)


def test_legacy_dec_sign_reproduces_the_original():
    tel = telescope_header(1, OBJECT="X", **{"CAT-RA": "12:00:00", "CAT-DEC": "-00:30:00"})
    header = _info(OBSTYPE="TARGET", OBJECTS="X&thar&none")
    assert RawInfo.from_header(header, telescopes={1: tel}, dec_sign="idl").targets[0].coord.dec.deg == 0.5
    tel["CAT-DEC"] = "-15:56:14.93"  # a nonzero degree word keeps its sign in the original too
    dec = RawInfo.from_header(header, telescopes={1: tel}, dec_sign="idl").targets[0].coord.dec.deg
    assert dec == pytest.approx(-(15 + 56 / 60 + 14.93 / 3600), abs=1e-12)


def test_legacy_pointing_coordinates(raw_target_fits):
    got = read_raw(raw_target_fits, legacy=True).info.targets[0]
    # the original used the telescope pointing RA/DEC (01:44:05.100, -15:56:20.00), not CAT-RA/CAT-DEC
    assert got.coord_source == "pointing"
    assert got.coord.ra.deg == pytest.approx((1 + 44 / 60 + 5.1 / 3600) * 15, abs=1e-12)
    assert got.coord.dec.deg == pytest.approx(-(15 + 56 / 60 + 20 / 3600), abs=1e-12)
    explicit = read_raw(raw_target_fits, legacy=True, target_coordinates="catalog").info.targets[0]
    assert explicit.coord_source == "catalog"  # explicit values win over legacy=True


def test_legacy_options_are_validated_before_reading(tmp_path):
    with pytest.raises(InvalidParameterError, match="dec_sign"):
        read_raw(tmp_path / "missing.fits.fz", dec_sign="lost")


def test_pointing_coordinates_when_catalogue_is_missing():
    tel = telescope_header(2, OBJECT="Y", RA="06:00:00.0", DEC="+10:00:00", PARALLAX=0.0)
    info = RawInfo.from_header(_info(OBSTYPE="TARGET", OBJECTS="none&thar&Y"), telescopes={2: tel})
    rec = info.targets[2]
    assert (rec.fiber, rec.telescope, rec.coord_source) == (2, 2, "pointing")
    assert rec.coord.ra.deg == pytest.approx(90.0, abs=1e-12) and rec.coord.dec.deg == 10.0
    assert rec.coord.obstime == info.date_obs  # a pointing is at the time of the exposure
    assert "s" not in rec.coord.data.differentials  # no proper motion given
    assert rec.coord.distance.unit == u.one  # parallax 0: no distance


@pytest.mark.parametrize("value", ["N/A", "", "nan", "UNKNOWN"])
def test_missing_coordinates_give_no_target_not_a_crash(value):
    tel = telescope_header(1, OBJECT="Z", RA=value, DEC=value, **{"CAT-RA": value, "CAT-DEC": value})
    info = RawInfo.from_header(_info(OBSTYPE="TARGET", OBJECTS="Z&thar&none"), telescopes={1: tel})
    assert info.targets == {} and info.science_fiber == 0


def test_numeric_ra_is_hours():
    tel = telescope_header(1, OBJECT="Z", **{"CAT-RA": 10.5, "CAT-DEC": -45.25})
    info = RawInfo.from_header(_info(OBSTYPE="TARGET", OBJECTS="Z&thar&none"), telescopes={1: tel})
    assert info.targets[0].coord.ra.deg == pytest.approx(157.5, abs=1e-12)  # hours x 15, rounding only
    assert info.targets[0].coord.dec.deg == -45.25


def test_telescope_object_mismatch_warns():
    tel = telescope_header(1, OBJECT="Other", **{"CAT-RA": "1:00:00", "CAT-DEC": "1:00:00"})
    with pytest.warns(NRESWarning, match="TELESCOPE_1 OBJECT 'Other' differs"):
        info = RawInfo.from_header(_info(OBSTYPE="TARGET", OBJECTS="Z&thar&none"), telescopes={1: tel})
    assert info.targets[0].name == "Other"


def test_camera_table_is_the_fallback(monkeypatch):
    facts = types.SimpleNamespace(gain=3.2, read_noise=7.0)
    monkeypatch.setattr(rawinfo_module, "_camera_facts", lambda camera: facts if camera == "fa13" else None)
    info = RawInfo.from_header(_info(GAIN=None, RDNOISE="N/A"))
    assert (info.gain, info.read_noise) == (3.2, 7.0)
    info = RawInfo.from_header(_info(GAIN=0.0))  # LCO writes 0 for "not measured"
    assert info.gain == 3.2
    with pytest.raises(InvalidInputFileError, match="SATURATE"):
        RawInfo.from_header(_info(SATURATE=None))  # CameraInfo has no saturation level


def test_camera_fallback_reads_the_packaged_ccds_table():
    # the original's ccds.csv lists fa13 with gain 3.2 e-/ADU and read noise 7 e- (the header says 1.0/7.3)
    info = RawInfo.from_header(_info(GAIN=None, RDNOISE=None))
    assert (info.gain, info.read_noise) == (3.2, 7.0)
    with pytest.raises(InvalidInputFileError, match="missing required keyword GAIN"):
        RawInfo.from_header(_info(GAIN=None, INSTRUME="zz99"))  # a camera the table does not know


def test_raw_frame_pickles(raw):
    # batch reductions send frames between processes
    back = pickle.loads(pickle.dumps(raw))
    np.testing.assert_array_equal(back.frame.data, raw.frame.data)
    assert back.info.date_obs == raw.info.date_obs and back.info.bias_slices == raw.info.bias_slices
    assert back.frame.meta["OBJECTS"] == raw.frame.meta["OBJECTS"]


def test_parse_section():
    assert parse_section("[4103:4160,1:4096]") == (slice(0, 4096), slice(4102, 4160))
    assert parse_section(" [1:1, 5:6] ") == (slice(4, 6), slice(0, 1))
    for bad in ["4103:4160,1:4096", "[0:10,1:5]", "[10:1,1:5]", "[1:10]", None, "[a:b,c:d]"]:
        with pytest.raises(InvalidParameterError, match="section"):
            parse_section(bad)


def test_lazy_exports():
    assert {"read_raw", "RawFrame", "RawInfo", "read_trace_seeds"} <= set(nres.io.__all__)
    with pytest.raises(AttributeError, match="no_such"):
        nres.io.no_such  # noqa: B018


# ----- malformed input: each case raises InvalidInputFileError naming file and problem --------
def _expect(path, *words):
    with pytest.raises(InvalidInputFileError) as exc:
        read_raw(path)
    err = exc.value
    assert isinstance(err, OSError)
    message = str(err)
    assert str(path) in message
    for word in words:
        assert word in message, message
    return message


def test_file_does_not_exist(tmp_path):
    _expect(tmp_path / "nope.fits.fz", "does not exist")


def test_not_a_fits_file(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("this is not FITS\n" * 200)
    _expect(path, "not a readable FITS file")


def test_truncated_compressed_file(tmp_path, raw_fz):
    path = tmp_path / "truncated.fits.fz"
    data = raw_fz.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    _expect(path, "truncated or corrupt")


def _flip_heap_bytes(src, dst):
    data = bytearray(src.read_bytes())
    mid = len(data) // 2  # inside the compressed tiles of SPECTRUM
    data[mid : mid + 200] = bytes(b ^ 0x5A for b in data[mid : mid + 200])
    dst.write_bytes(bytes(data))


def test_corrupt_compressed_data_fails_checksum(tmp_path, raw_fz):
    path = tmp_path / "corrupt.fits.fz"
    _flip_heap_bytes(raw_fz, path)
    _expect(path, "truncated or corrupt", "Checksum")


def test_checksum_verification_can_be_turned_off(tmp_path, raw_image):
    # a header edited in place (here: one card overwritten) leaves a stale CHECKSUM behind
    path = write_raw(tmp_path / "edited.fits.fz", image=raw_image)
    data = path.read_bytes()
    old = b"PROPID  = 'calibrate'"
    assert data.count(old) == 1  # only in the SPECTRUM header
    path.write_bytes(data.replace(old, b"PROPID  = 'calibrXte'"))
    _expect(path, "Checksum")
    got = read_raw(path, verify_checksum=False)
    assert got.frame.meta["PROPID"] == "calibrXte"
    np.testing.assert_array_equal(got.frame.data, raw_image)


def test_corrupt_compressed_data_without_checksum(tmp_path, raw_image):
    good = write_raw(tmp_path / "good.fits.fz", image=raw_image, checksum=False)
    path = tmp_path / "corrupt.fits.fz"
    _flip_heap_bytes(good, path)
    _expect(path, "corrupt or truncated SPECTRUM image data")


def test_missing_spectrum(tmp_path):
    _expect(write_raw(tmp_path / "x.fits", image_hdu="none", compressed=False), "no SPECTRUM extension")


def test_empty_spectrum(tmp_path):
    _expect(write_raw(tmp_path / "x.fits", image_hdu="empty", compressed=False), "SPECTRUM is empty")


@pytest.mark.parametrize("detsize", ["[1:4160,1:4108]", None])
def test_wrong_image_shape(tmp_path, raw_image, detsize):
    header = real_main_header()
    if detsize is None:
        del header["DETSIZE"]  # then the sections alone show the image is too narrow
    path = write_raw(
        tmp_path / "narrow.fits.fz", header=header, image=np.ascontiguousarray(raw_image[:, :4096])
    )
    _expect(path, "wrong image shape", "4108 x 4096")


def test_shape_disagreeing_with_detsize(tmp_path, raw_image):
    # an image that still holds the sections but is not the size DETSIZE announces
    path = write_raw(tmp_path / "tall.fits.fz", image=np.ascontiguousarray(raw_image[:4100]))
    _expect(path, "wrong image shape", "DETSIZE")


def test_unknown_obstype(tmp_path):
    header = real_main_header()
    header["OBSTYPE"] = "fibers"  # what xwavecal wrote into this very header
    _expect(write_raw(tmp_path / "x.fits.fz", header=header), "unknown OBSTYPE 'FIBERS'")


@pytest.mark.parametrize("objects", ["HD 1&thar", "a&&b", "a&b&c&d", "   ", 42])
def test_unparseable_objects(tmp_path, objects):
    header = real_main_header()
    header["OBJECTS"] = objects
    word = "missing required keyword OBJECTS" if objects in ("   ", 42) else "cannot parse OBJECTS"
    _expect(write_raw(tmp_path / "x.fits.fz", header=header), word)


def test_target_without_star(tmp_path):
    header = real_main_header()
    header["OBSTYPE"] = "TARGET"
    header["OBJECTS"] = "none&thar&none"
    _expect(write_raw(tmp_path / "x.fits.fz", header=header), "no star on fiber 0 or 2")


@pytest.mark.parametrize(
    "key", ["OBSTYPE", "SITEID", "TELESCOP", "INSTRUME", "DAY-OBS", "DATE-OBS", "EXPTIME", "BIASSEC",
            "OBJECTS", "MAXLIN"],
)  # fmt: skip
def test_missing_required_keyword(tmp_path, monkeypatch, key):
    monkeypatch.setattr(rawinfo_module, "_camera_facts", lambda camera: None)  # no fallback
    header = real_main_header()
    del header[key]
    _expect(write_raw(tmp_path / "x.fits.fz", header=header), f"missing required keyword {key}")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [("DATE-OBS", "yesterday", "DATE-OBS"), ("EXPTIME", "long", "EXPTIME"), ("EXPTIME", -1.0, "EXPTIME"),
     ("BIASSEC", "[4160:4103,1:4096]", "BIASSEC"), ("TELESCOP", "1m0a", "not an NRES unit"),
     ("DAY-OBS", "2019/04/05", "DAY-OBS")],
)  # fmt: skip
def test_malformed_keyword(tmp_path, key, value, words):
    header = real_main_header()
    header[key] = value
    _expect(write_raw(tmp_path / "x.fits.fz", header=header), words)


def test_path_must_be_path_like():
    with pytest.raises(InvalidParameterError, match="path"):
        read_raw(123)
