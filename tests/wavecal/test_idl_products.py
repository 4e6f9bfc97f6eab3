"""Readers of the original's THAR/TRIP files and the e91 wavelength recomputation.

No real THAR or TRIP file is available, so the files are built here in the layout documented in
idl-wavecal.md 9.3, 9.4 and 10.3, with the parameters of spectrographs.csv row lsc 58190.0; the
known answer is GDL's lambda3ofx output for that row (tests/data/lambda3ofx_E.npz) and, for a
real archived header, its own LAMCEN cards.
"""

import math
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from nres.errors import InvalidInputFileError, InvalidParameterError
from nres.instrument import PhysicalModel, spectrograph_table
from nres.wavecal.idl_products import (
    IDLTriple,
    compare_idl_wavelengths,
    read_e91_wavelengths,
    read_thar,
    read_trip,
    recompute_idl_wavelengths,
)

DATA = Path(__file__).resolve().parents[1] / "data"
ROW = 8  # spectrographs.csv row lsc 58190.0, the inputs of GDL set E


@pytest.fixture(scope="module")
def gdl():
    with np.load(DATA / "lambda3ofx_E.npz") as f:
        return {k: f[k] for k in f}


@pytest.fixture(scope="module")
def row():
    return spectrograph_table()[ROW]


def _sinalp(row):
    # the original's sin(GrInc) with single-precision !pi (what the GDL run used)
    return math.sin(float(row["GrInc"]) / (180.0 / float(np.float32(np.pi))))


def _fitted_cards(hdr, row, *, rounded=True):
    """SINALP, FL, Y0, Z0, C00..C14, FIBC0..9 as an e91/THAR header carries them."""
    hdr["SINALP"] = _sinalp(row)
    hdr["FL"], hdr["Y0"], hdr["Z0"] = float(row["FL"]), float(row["Y0"]), float(row["Z0"])
    for k in range(15):
        c = float(np.float32(row[f"C{k}"]))
        hdr[f"C{k:02d}"] = float(f"{c:.6g}") if rounded else c  # IDL printed float32 to ~6 digits
    for k in range(10):
        hdr[f"FIBC{k}"] = float(row[f"F0{k}"])  # the star fiber is fiber 0 (OBJECTS star&thar&none)
    hdr["SITEID"], hdr["MJD-OBS"], hdr["OBJECTS"] = "lsc", 58200.0, "HD1&thar&none"


def _write_trip(path, row, gdl, *, fiber0_sign=1):
    hdr = fits.Header()
    for key, col in (("ORD0", "Ord0"), ("GRSPC", "GrSpc"), ("FL", "FL"), ("Y0", "Y0"), ("Z0", "Z0")):
        hdr[key] = row[col]
    hdr["SINALP"] = _sinalp(row)
    hdr["DSINALP"] = 4.1e-5
    for key, col in (("APEX", "Apex"), ("LAMCEN", "LamCen"), ("ROT", "Rot"), ("PIXSIZ", "PixSiz")):
        hdr[key] = float(row[col])
    hdr["GLASS"] = str(row["Glass"]) + "    "  # blank-padded as the original wrote it
    hdr["NX"], hdr["NORD"], hdr["NCOEFS"] = int(row["Nx"]), int(row["Nord"]), 15
    hdr["MJD"], hdr["NFRAVGD"] = 58200.0001, 2
    hdr["ORGNAM01"], hdr["ORGNAM02"] = "lscnrs01-fa09-20180320-0011", "lscnrs01-fa09-20180320-0012"
    for k in range(15):
        hdr[f"COEFS{k:02d}"] = float(row[f"C{k}"])
    for j in range(10):
        hdr[f"FIBCOE{j}0"] = fiber0_sign * float(row[f"F0{j}"])
        hdr[f"FIBCOE{j}1"] = float(row[f"F1{j}"])
    hdr["OBSTYPE"], hdr["RLEVEL"] = "ARC", 91
    # fiber 1's grid (nord, nx): GDL's every-32nd-column values interpolated (data, not checked)
    lam = np.stack([np.interp(np.arange(4096.0), gdl["x"], gdl["lam"][1, j]) for j in range(67)])
    fits.PrimaryHDU(lam, header=hdr).writeto(path)
    return lam


def _write_thar(path, row, gdl):
    hdr = fits.Header()
    _fitted_cards(hdr, row)
    hdr["OBSTYPE"], hdr["THARLIST"] = "WAVE", "mtchThAr.txt"
    primary = fits.PrimaryHDU(gdl["lam"], header=hdr)  # (nfib, nord, x): subsampled columns
    ext1 = fits.BinTableHDU(
        Table(
            {
                "SINALP": [0.0, _sinalp(row), 0.0],
                "FL": [0.0, float(row["FL"]), 0.0],
                "Y0": [0.0, float(row["Y0"]), 0.0],
                "Z0": [0.0, float(row["Z0"]), 0.0],
            }
        )
    )
    coefs = {f"C{k:02d}": np.array([0.0, row[f"C{k}"], 0.0], dtype=np.float32) for k in range(15)}
    ext2 = fits.BinTableHDU(Table(coefs))
    lines = Table(
        {
            "MATCHLAM": [500.1, 510.2],
            "MATCHAMP": np.float32([1e4, 2e4]),
            "MATCHXPOS": np.float32([1000.5, 2000.25]),
            "MATCHORD": np.int32([37, 38]),
            "MATCHLINE": [500.1001, 510.1999],
        }
    )
    fits.HDUList([primary, ext1, ext2, fits.BinTableHDU(lines)]).writeto(path)
    return hdr


def test_trip_reader_and_model_reproduce_gdl(tmp_path, row, gdl):
    path = tmp_path / "TRIPlsc2018079.50001.fits"
    lam = _write_trip(path, row, gdl)
    trip = read_trip(path)
    assert isinstance(trip, IDLTriple) and trip.wavelength.unit == u.nm
    np.testing.assert_array_equal(trip.wavelength.to_value(u.nm), lam)
    assert trip.n_averaged == 2 and trip.originals == [
        "lscnrs01-fa09-20180320-0011",
        "lscnrs01-fa09-20180320-0012",
    ]
    model = trip.model()
    x, m = gdl["x"].astype(float), gdl["mm"]
    got = model.wavelength(x[None, None, :], m[None, :, None], np.arange(3)[:, None, None]).to_value(u.nm)
    # every optical constant and both shift columns from the TRIP header: GDL to 1e-6 nm (the spec's
    # tolerance; the remainder is the original's float32 Legendre basis)
    assert np.abs(got - gdl["lam"]).max() < 1e-6
    assert model.glass == "PBM2" and model.fibcoefs[0][0] == pytest.approx(float(row["F00"]))
    # a three-fiber-path TRIPLE wrote fiber 0's column with the opposite sign; fiber0_sign=-1 undoes it
    flipped = tmp_path / "TRIPflipped.fits"
    _write_trip(flipped, row, gdl, fiber0_sign=-1)
    assert read_trip(flipped).model(fiber0_sign=-1).fibcoefs == model.fibcoefs
    wrong = read_trip(flipped).model().wavelength(2048, 90, 0).to_value(u.nm)
    assert abs(wrong - model.wavelength(2048, 90, 0).to_value(u.nm)) > 0.01  # ~12 px x 0.0025 nm/px


def test_trip_unpack_is_explicit(tmp_path, row, gdl):
    path = tmp_path / "TRIP.fits"
    _write_trip(path, row, gdl)
    trip = read_trip(path)
    base = PhysicalModel.for_site("lsc", mjd=58000.0)  # the 57920.01 row: different parameters
    assert trip.unpack(base) == base  # the production default (trp absent): nothing replaced
    both = trip.unpack(base, physical=True, fiber_offsets=True)  # trp = 1 or 3
    assert both.sinalp == trip.model().sinalp and both.coefs == trip.model().coefs
    assert both.fibcoefs == trip.model().fibcoefs
    only_fib = trip.unpack(base, fiber_offsets=True)  # trp = 2
    assert only_fib.sinalp == base.sinalp and only_fib.fibcoefs == trip.model().fibcoefs


def test_thar_reader_and_exact_coefficients(tmp_path, row, gdl):
    path = tmp_path / "THARlsc2018079.51234.fits"
    _write_thar(path, row, gdl)
    thar = read_thar(path)
    assert thar.wavelength.shape == (3, 67, gdl["x"].size)
    assert thar.fitted_fibers == (1,)
    assert thar.coefs.dtype == np.float32 and thar.coefs[1, 5] == np.float32(row["C5"])
    assert thar.lines.colnames[:2] == ["matchlam", "matchamp"] and thar.lines["matchord"][1] == 38
    x, m = gdl["x"].astype(float), gdl["mm"]
    for exact, tol in ((True, 1e-6), (False, 5e-6)):
        model = thar.model(exact_coefs=exact)
        for fiber in (0, 1):
            got = model.wavelength(x[None, :], m[:, None], fiber).to_value(u.nm)
            # idl-wavecal.md 16.7: 1e-6 nm with the float32 C's of extension 2, ~5e-6 nm with the
            # header cards rounded to 6 digits
            assert np.abs(got - gdl["lam"][fiber]).max() < tol, (exact, fiber)


def test_e91_recompute_and_compare(tmp_path, row, gdl):
    thar_path = tmp_path / "THAR.fits"
    hdr = _write_thar(thar_path, row, gdl)
    thar = read_thar(thar_path)
    trip_path = tmp_path / "TRIP.fits"
    _write_trip(trip_path, row, gdl)
    # an e91 product with WAVESPEC (fiber 0) and WAVETHAR (fiber 1): GDL's grids at its columns
    e91 = tmp_path / "lscnrs01-fa09-20180320-0020-e91.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(header=hdr),
            fits.ImageHDU(gdl["lam"][0], name="WAVESPEC"),
            fits.ImageHDU(gdl["lam"][1], name="WAVETHAR"),
        ]
    ).writeto(e91)
    header, wavespec, wavethar = read_e91_wavelengths(e91)
    assert wavespec.unit == u.nm and wavethar.shape == (67, gdl["x"].size)
    x = gdl["x"].astype(float)
    for base in (None, read_trip(trip_path)):  # optics from the packaged csv row or from the TRIP
        table = compare_idl_wavelengths(header, wavespec, wavethar, base=base, thar=thar, x=x)
        assert len(table) == 2 * 67 and set(table["fiber"]) == {0, 1}
        assert table["max_abs"].to_value(u.nm).max() < 1e-6
    rounded = compare_idl_wavelengths(header, wavespec, wavethar, x=x)  # header C's only
    assert rounded["max_abs"].to_value(u.nm).max() < 5e-6
    new = recompute_idl_wavelengths(header, x=[0.0, 2048.0])
    assert new["star_fiber"] == 0 and new["WAVESPEC"].shape == (67, 2)


def test_real_archived_header_lamcen():
    # the real e91 header of lscnrs01-fl09-20171110-0037: its LAMCEN cards are IDL's fiber-0
    # wavelengths at x = 2048 of order indices 5, 38, 60 (m = 57, 90, 112)
    hdr = fits.Header.fromtextfile(DATA / "header_e91_example.txt")
    new = recompute_idl_wavelengths(hdr, x=[2048.0])
    spec = new["WAVESPEC"].to_value(u.nm)[:, 0]
    for key, iord in (("LAMCENR", 5), ("LAMCENG", 38), ("LAMCENB", 60)):
        assert spec[iord] == pytest.approx(hdr[key], abs=1e-6)
    assert new["WAVETHAR"].to_value(u.nm)[38, 0] == pytest.approx(518.43798138, abs=1e-6)  # 16.1


def test_errors(tmp_path, row, gdl):
    with pytest.raises(InvalidInputFileError, match="file not found"):
        read_trip(tmp_path / "nope.fits")
    bad = tmp_path / "bad.fits"
    fits.PrimaryHDU(np.zeros((3, 4))).writeto(bad)
    with pytest.raises(InvalidInputFileError, match="NORD"):
        read_trip(bad)
    with pytest.raises(InvalidInputFileError, match="HDUs"):
        read_thar(bad)
    with pytest.raises(InvalidInputFileError, match="WAVESPEC"):
        read_e91_wavelengths(bad)
    path = tmp_path / "TRIP.fits"
    _write_trip(path, row, gdl)
    with fits.open(path, mode="update") as h:
        del h[0].header["FIBCOE31"]
    with pytest.raises(InvalidInputFileError, match="FIBCOE31"):
        read_trip(path).model()
    hdr = fits.Header()
    _fitted_cards(hdr, row)
    with pytest.raises(InvalidParameterError, match="base"):
        recompute_idl_wavelengths(hdr, base="lsc")
    with pytest.raises(InvalidParameterError, match="wavespec"):
        compare_idl_wavelengths(hdr, np.zeros((67, 3)), np.zeros((67, 3)), x=[1.0, 2.0])
