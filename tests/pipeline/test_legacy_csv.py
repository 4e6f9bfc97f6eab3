"""The original's CSV tables: import, export and round trips (real targets.csv; formats of
idl-rv-ops.md 12.2, 24 and idl-calib-trace-extract.md 4.3)."""

import csv
from pathlib import Path

import pytest

from nres.errors import InvalidInputFileError, InvalidParameterError
from nres.pipeline.db import Database
from nres.pipeline.legacy_csv import HEADERS

DATA = Path(__file__).parents[1] / "data"
TARGETS = DATA / "targets.csv"

# The shipped standards.csv starter (its malformed header and placeholder row) followed by rows
# written the way the original's writers did (flags per idl-calib-trace-extract.md 4.3).
STANDARDS = """"Type","Filename",0,"Site","Camera",0.000000000000000,"Flags"
"xxxx","xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",1,"xxx","xxxx",0.000000000000000,"xxxx"
"BIAS","bias/BIASlsc2018123.45678.fits",1,"lsc","fa09",2458242.45678,"0000"
"BIAS","bias/BIASlsc2018124.00000.fits",11,"lsc","fa09",2458242.9,"0000"
"FLAT","flat/FLATlsc2018124.10000.fits",1,"lsc","fa09",2458243.1,"0010"
"TRACE","trace/TRAClsc2018124.20000.fits",5,"lsc","fa09",2458243.2,"0030"
"DARK","dark/DARKlsc2018124.30000.fits",1,"lsc","fa09",2458243.3,"1000"
"""
ZEROS = """Filename,Navg,Site,Camera,Jdate,Target,Teff,Logg,B-V,J-K,Flags
"xxxx/xxxxxxxxxxxxxxxxxxxx.fits",0,"xxx","xxxx",0000000.000000000,"xxxxxxx",0000.00,0.00000,0.000000,0.000000,"xxxx"
"zero/ZEROlsc2017317.27425.fits",4,"lsc","fa09",2458070.77425,"HD1461",5657.0,4.0,0.68,0.432,"0100"
"zero/ZEROelp2017330.10000.fits",2,"elp","fa17",2458083.6,"51Peg",5598.0,4.0,0.7,0.749,"1000"
"""
RV = (
    ",".join(HEADERS["rv"]) + "\n"
    '"xxxxxxxxxx",00000.00000000000,0000000.000000000,"xxx",000.0000000000000,"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.fits",'
    '"xxxxxxxxxxxxxxxxxxxx.fits",000,0.00000000000000000,0.0000000000000000000,-0.0000000000000001,000.0000000000000,'
    "0.0000000000000000,00.00000000000000,000.0000000000000,0.000000000000000e-05,0.000000000000000e-07,"
    "0.000000000000000e-12,0.000000000000000e-10\n"
    '"51PEG",58083.6123,2458084.1142,"elp",600.0,"elpnrs02-fa17-20171122-0018-e00.fits","SPECelp2017330.61230.fits",'
    "1412,0.00123,0.00061,0.0012,-45.2312,0.812,9.87,517.43,-4.4e-05,1.2e-07,1.1e-07,5.5e-08\n"
    '"HD1461",58070.2,2458070.7,"lsc",900.0,"lscnrs01-fa09-20171110-0037-e00.fits","SPEClsc2017314.20000.fits",'
    "1500,0.001,0.0005,0.0011,-12.5,0.7,10.1,517.4,3.1e-05,-2e-07,-2.1e-07,6e-08\n"
)


@pytest.fixture
def db():
    d = Database("sqlite:///:memory:")
    yield d
    d.close()


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _same_value(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def test_real_targets_csv_imports_with_conversions(db):
    assert db.import_csv("targets", TARGETS) == 248
    t = db.targets_table()
    assert len(t) == 248  # the 31 names listed twice are both kept
    hd1461 = db.target("HD 1461")  # first row of that name: line 2 of the file
    assert hd1461["ra"] == 4.67445 and hd1461["dec"] == -8.053 and hd1461["vmag"] == 6.46
    assert hd1461["gmag"] is None and hd1461["imag"] is None  # -99.9 = unknown
    assert hd1461["pmra"] == 416.87 and hd1461["parallax"] == 43.02 and hd1461["rv"] == -10.086
    assert hd1461["zero"] is None  # "NULL"
    procyon = db.target("procyon")  # last line: "6530." and 7-digit Dec
    assert procyon["teff"] == 6530.0 and procyon["dec"] == 5.2249875 and procyon["jmag"] is None


def test_real_targets_csv_round_trip(db, tmp_path):
    db.import_csv("targets", TARGETS)
    out = tmp_path / "targets.csv"
    assert db.export_csv("targets", out) == 248
    original, exported = _read(TARGETS), _read(out)
    assert exported[0] == original[0]  # the real header line
    assert len(exported) == len(original)
    for a, b in zip(original[1:], exported[1:], strict=True):  # same rows, same order, same values
        assert all(_same_value(x, y) for x, y in zip(a, b, strict=True)), (a, b)
    # export -> import -> export is byte-identical
    again = Database("sqlite:///:memory:")
    again.import_csv("targets", out)
    out2 = tmp_path / "targets2.csv"
    again.export_csv("targets", out2)
    assert out2.read_bytes() == out.read_bytes()


def test_targets_import_updates_known_names_unless_replaced(db, tmp_path):
    db.add_target("HD 1461", ra=1.0, dec=1.0)
    db.import_csv("targets", TARGETS)
    assert len(db.targets_table()) == 248 and db.target("HD1461")["ra"] == 4.67445
    db.import_csv("targets", TARGETS, replace=True)
    assert len(db.targets_table()) == 248


def test_standards_import_conversions_and_selection(db, tmp_path):
    src = tmp_path / "standards.csv"
    src.write_text(STANDARDS)
    assert db.import_csv("standards", src) == 5  # placeholder row skipped
    t = db.calibrations_table()
    rows = {r["path"]: r for r in t}
    bias = rows["bias/BIASlsc2018123.45678.fits"]
    assert bias["mjd_obs"] == 2458242.45678 - 2400000.5 and bias["instrument"] == "nres01"  # lsc's unit
    assert rows["flat/FLATlsc2018124.10000.fits"]["obstype"] == "LAMPFLAT"
    assert rows["flat/FLATlsc2018124.10000.fits"]["fiber_state"] == "110"  # flags char 2 = '1'
    assert rows["trace/TRAClsc2018124.20000.fits"]["fiber_state"] == "111"  # '3'
    assert rows["dark/DARKlsc2018124.30000.fits"]["is_bad"]  # char 0 != '0'
    # the original's get_calib preference, through nres.calib.select: the 11-frame master 0.45 d
    # away is within max(3.5 md, md + 3.5 d) of a frame 0.1 d after the single bias
    mjd = 2458242.55678 - 2400000.5
    pick = db.select_calibration("BIAS", mjd_obs=mjd, instrument="nres01", camera="fa09", rule="idl")
    assert pick["path"] == "bias/BIASlsc2018124.00000.fits"
    pick = db.select_calibration("BIAS", mjd_obs=mjd, instrument="nres01", camera="fa09")
    assert pick["path"] == "bias/BIASlsc2018123.45678.fits"
    with pytest.raises(Exception, match="DARK"):
        db.select_calibration("DARK", mjd_obs=mjd, instrument="nres01", camera="fa09")  # only a bad one


def test_standards_round_trip(db, tmp_path):
    src = tmp_path / "standards.csv"
    src.write_text(STANDARDS)
    db.import_csv("standards", src, root=tmp_path / "reduced")
    assert db.calibrations_table()["path"][0] == str(tmp_path / "reduced" / "bias/BIASlsc2018123.45678.fits")
    out = tmp_path / "out.csv"
    db.export_csv("standards", out, root=tmp_path / "reduced")
    exported = _read(out)
    assert exported[0] == list(HEADERS["standards"])
    original = [r for r in _read(src)[1:] if r[0] != "xxxx"]
    original.sort(key=lambda r: float(r[5]))  # the original kept the file sorted by JD
    assert len(exported) - 1 == len(original)
    for a, b in zip(original, exported[1:], strict=True):
        assert all(_same_value(x, y) for x, y in zip(a, b, strict=True)), (a, b)
    # a calibration marked bad in the database exports with a non-'0' usability flag
    db.mark_calibration_bad(tmp_path / "reduced" / "bias/BIASlsc2018123.45678.fits")
    db.export_csv("standards", out, root=tmp_path / "reduced")
    assert _read(out)[1][6] == "1000"


def test_standards_without_known_unit_needs_instrument(db, tmp_path):
    src = tmp_path / "standards.csv"
    src.write_text(
        'Type,Filename,Navg,Site,Camera,JDdata,Flags\n"BIAS","b.fits",1,"bpl","fl07",2458000.5,"0000"\n'
    )
    with pytest.raises(InvalidInputFileError, match="instrument"):
        db.import_csv("standards", src)
    assert db.import_csv("standards", src, instrument="nres00") == 1
    assert db.calibrations_table()["instrument"][0] == "nres00"


def test_zeros_round_trip(db, tmp_path):
    src = tmp_path / "zeros.csv"
    src.write_text(ZEROS)
    assert db.import_csv("zeros", src) == 2
    z = db.zeros_table()
    assert list(z["target"]) == ["HD1461", "51Peg"]
    assert z["is_standard"][0] and not z["is_bad"][0] and z["is_bad"][1] and not z["is_standard"][1]
    assert z["mjd_obs"][0] == 2458070.77425 - 2400000.5
    out = tmp_path / "out.csv"
    db.export_csv("zeros", out)
    exported = _read(out)
    assert exported[0] == _read(src)[0]
    for a, b in zip(_read(src)[2:], exported[1:], strict=True):
        assert all(_same_value(x, y) for x, y in zip(a, b, strict=True)), (a, b)


def test_rv_round_trip_and_nres_rows(db, tmp_path):
    src = tmp_path / "rv.csv"
    src.write_text(RV)
    assert db.import_csv("rv", src) == 2
    t = db.rv_table()
    assert list(t["target"]) == ["HD1461", "51PEG"]  # sorted by CrDate (data MJD)
    assert t["rv_ccf"][1] == -45.2312 and t["n_lines"][1] == 1412 and t["z_barycentric"][1] == -4.4e-05
    out = tmp_path / "out.csv"
    db.export_csv("rv", out)
    exported = _read(out)
    assert exported[0] == list(HEADERS["rv"])
    original = sorted(_read(src)[2:], key=lambda r: float(r[1]))
    for a, b in zip(original, exported[1:], strict=True):
        assert all(_same_value(x, y) for x, y in zip(a, b, strict=True)), (a, b)
    # an nres result without the original's fields: RVkm/s is the observed-frame RV in km/s and
    # Baryshift z_B = v_corr / c (nres.doppler's convention)
    fresh = Database("sqlite:///:memory:")
    fresh.add_rv(
        target="TAU CET",
        mjd_obs=58600.0,
        rv=-16600.0,
        rv_observed=1500.0,
        barycentric_correction=-18100.0,
        bjd_tdb=2458600.6,
    )
    fresh.export_csv("rv", out)
    row = dict(zip(HEADERS["rv"], _read(out)[1], strict=True))
    assert float(row["RVkm/s"]) == 1.5
    assert float(row["Baryshift"]) == -18100.0 / 299792458.0
    assert float(row["BJD"]) == 2458600.6 and row["Nmatch"] == ""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Name,RA\n", "header has 2 columns"),
        (",".join(HEADERS["targets"]) + '\n"A",1.0,2.0\n', "line 2: 3 columns"),
        (",".join(HEADERS["targets"]) + '\n"A",x,2.0' + ",1" * 14 + "\n", "line 2: RA = 'x' is not a number"),
        (",".join(HEADERS["targets"]) + '\n"A",400.0,2.0' + ",1" * 14 + "\n", "line 2: .*ra"),
        ("", "empty file"),
    ],
)
def test_malformed_csv_names_file_and_line(db, tmp_path, text, match):
    src = tmp_path / "targets.csv"
    src.write_text(text)
    with pytest.raises(InvalidInputFileError, match=match) as err:
        db.import_csv("targets", src)
    assert str(src) in str(err.value)


def test_unknown_kind_and_missing_file(db, tmp_path):
    with pytest.raises(InvalidParameterError, match="kind"):
        db.import_csv("spectrographs", TARGETS)
    with pytest.raises(InvalidInputFileError, match="does not exist"):
        db.import_csv("zeros", tmp_path / "nope.csv")
