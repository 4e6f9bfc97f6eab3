"""The original's e91 layout: writer -> reader round trip, files built by hand to the original's layout
(plain and fpacked), RVBLOCKFIT's TDIM/BLKINDX/ORDINDX semantics, real per-block numbers, bad files,
compare_e91 on an injected shift, the CLI, PDF summaries and the TARGET recipe's e91/summary options."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import VarianceUncertainty
from astropy.table import QTable, Table

from nres.doppler import C_M_S
from nres.errors import InvalidInputFileError, InvalidParameterError
from nres.pipeline.cli import build_parser, main
from nres.pipeline.e91 import BLOCK_COLUMNS, E91_EXTENSIONS, compare_e91, read_e91, write_e91
from nres.pipeline.plots import summary_figure, summary_paths, summary_plot
from nres.pipeline.spectrum1d import read_echelle_spectrum_1d, write_spectrum_1d
from nres.rv import RVResult
from nres.spectrum import EchelleSpectrum

DATA = Path(__file__).parents[1] / "data"
X0, NX = 1000, 64
ORDERS = [83, 81, 82, 80]  # not in the file's (ascending m) direction on purpose


def _spectrum(fibers=(0, 1), orders=ORDERS, nx=NX, x0=X0):
    """Two fibers, distinct values per (fiber, order, pixel); blaze > 0.1 except two columns."""
    nf, no = len(fibers), len(orders)
    x = np.arange(nx) + x0
    blaze = np.broadcast_to(
        0.2 + 0.8 * np.exp(-0.5 * ((x - x0 - nx / 2) / (nx / 3)) ** 2), (nf, no, nx)
    ).copy()
    blaze[:, :, 3] = 0.005  # below flat_correct's 0.01: SPECFLAT 0 there, masked on reading
    amp = 1000.0 + 100.0 * np.arange(nf * no).reshape(nf, no, 1)
    data = amp * blaze + 30.0 + 7.0 * np.sin(0.3 * x) + 1e-3 * np.arange(nf)[:, None, None]
    lam = np.array([[(1e4 / m) * (1.0 + 2e-5 * (x - x0)) + 1e-6 * f for m in orders] for f in fibers])
    mask = np.zeros((nf, no, nx), bool)
    mask[0, 1, 10:13] = True  # order 81 of the star fiber
    meta = {"OBJECTS": "HD10700&thar&none" if fibers[0] == 0 else "none&thar&HD10700", "GAIN": 3.2}
    return EchelleSpectrum(
        data, uncertainty=VarianceUncertainty(data + 49.0), mask=mask, wavelength=lam * u.nm,
        orders=list(orders), fibers=list(fibers), pixel=x, blaze=blaze, meta=meta,
    )  # fmt: skip


def _rv(rv=12_345.0, rv_obs=11_000.0, meta=None, orders=ORDERS):
    """An RVResult whose CCF is a Gaussian peak of height 0.8 at the observed RV (on the grid)."""
    v = rv_obs + np.arange(-80, 81) * 250.0
    ccf = QTable()
    ccf["velocity"] = [v] * u.m / u.s
    ccf["ccf"] = [0.1 + 0.7 * np.exp(-0.5 * ((v - rv_obs) / 4000.0) ** 2)]
    ccf["fwhm"] = [9419.0] * u.m / u.s
    ms = u.m / u.s
    return RVResult(
        rv=rv * ms, rv_observed=rv_obs * ms, rv_err_photon=1.0 * ms, rv_err_empirical=1.5 * ms,
        barycentric_correction=(rv - rv_obs) * ms, bjd_tdb=None, orders=QTable({"order": orders}), ccf=ccf,
        meta={"method": "template", **(meta or {})},
    )  # fmt: skip


def _sorted(arr, orders=ORDERS):
    return np.asarray(arr)[:, np.argsort(orders)]


# ----- writer -> reader -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x-e91.fits", "x-e91.fits.fz"])
def test_round_trip(tmp_path, name):
    spec, rv = _spectrum(), _rv()
    path = write_e91(tmp_path / name, spec, rv=rv)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", *E91_EXTENSIONS]
        kinds = {type(h) for h in hdul[1:8]}
        assert kinds == ({fits.CompImageHDU} if name.endswith(".fz") else {fits.ImageHDU})
        assert hdul["SPECRAW"].header["BITPIX"] == -32 and hdul["WAVESPEC"].header["BITPIX"] == -64
        assert (
            hdul["SPECRAW"].header["NAXIS1"] == NX and hdul["SPECRAW"].header["NAXIS2"] == 4
        )  # FITS (nx, nord)
        hdr = hdul[0].header
    assert hdr["ORDERS"] == "80,81,82,83" and hdr["NORD"] == 4 and hdr["NX"] == NX and hdr["NRESX0"] == X0
    assert hdr["FIB0"] == 0 and hdr["RLEVEL"] == 91 and hdr["NBLOCK"] == 12
    e = read_e91(path)
    assert e.orders.tolist() == [80, 81, 82, 83] and e.star_fiber == 0 and e.unit == "electron"
    assert e.spectrum.fibers.tolist() == [0, 1] and e.blaze_subtracted.fibers.tolist() == [0]
    np.testing.assert_array_equal(e.spectrum.pixel, X0 + np.arange(NX))
    assert e.spectrum.wavelength_medium == "vacuum" and e.spectrum.wavelength_frame == "topocentric"
    # float64 wavelengths: exact; spectra are float32 on disk: equal to their float32 rounding (.fz: lossless)
    np.testing.assert_array_equal(
        e.spectrum.wavelength.to_value(u.nm), _sorted(spec.wavelength.to_value(u.nm))
    )
    raw = _sorted(spec.data).astype(np.float32)
    good = ~_sorted(spec.mask)
    np.testing.assert_array_equal(e.spectrum.data[good], raw[good])
    np.testing.assert_array_equal(e.spectrum.mask, ~good)  # masked pixels written as 0 and masked again
    blaze = _sorted(spec.blaze)
    ok = blaze > 0.01
    np.testing.assert_array_equal(
        e.flat_fielded.data[good & ok], (_sorted(spec.data) / blaze).astype(np.float32)[good & ok]
    )
    assert e.flat_fielded.mask[:, :, 3].all()  # blaze 0.005: no flat-fielded value
    # SPECBLAZE = R - amp F with the original's amplitude: sum R F / sum F^2 over the central half (by count)
    # of the usable columns (apply_flat2): column 3 (blaze 0.005 < 0.1) is the last low column of the
    # left half, so columns 4..63 are usable (0 outside, masked on reading)
    assert e.blaze_subtracted.mask[0, :, :4].all()
    r, f = _sorted(spec.data)[0], blaze[0]
    cols = np.arange(4, NX)
    core = cols[cols.size // 4 : 3 * cols.size // 4 + 1]
    for j in range(4):
        amp = np.sum(r[j, core] * f[j, core]) / np.sum(f[j, core] ** 2)
        assert hdr[f"AMPFL0{j:02d}"] == pytest.approx(amp, rel=1e-12)
        expect = (r[j] - amp * f[j]).astype(np.float32)
        np.testing.assert_array_equal(
            e.blaze_subtracted.data[0, j, 4:][good[0, j, 4:]], expect[4:][good[0, j, 4:]]
        )
    # CCF: the lag grid in km/s, float32 values; header RV numbers (m/s -> km/s)
    v, c = e.ccf
    np.testing.assert_allclose(v.to_value(u.m / u.s), rv.ccf["velocity"][0].value, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(c, np.asarray(rv.ccf["ccf"][0]).astype(np.float32))
    # header cards hold 15 or more significant digits
    assert e.rv["RVCC"].to_value(u.m / u.s) == pytest.approx(12_345.0, rel=1e-14)
    assert e.rv["RCC"] == pytest.approx(11_000.0 / C_M_S, rel=1e-14)
    assert e.rv["WIDCC"].to_value(u.km / u.s) == pytest.approx(9.419, rel=1e-14)
    assert e.rv["AMPCC"] == pytest.approx(0.8, rel=1e-14)  # the CCF at the observed RV: the Gaussian's peak
    assert np.isnan(e.rv["ZBLKAVG"]) and np.isnan(e.blocks["ZBLOCK"]).all()  # template method: no blocks
    assert e.blocks["ZBLOCK"].shape == (12, 4) and any("fits no blocks" in n for n in e.notes)


def test_star_fiber_2_full_frame_and_no_rv(tmp_path):
    orders = list(range(118, 51, -1))  # all 67 orders, blue first
    spec = _spectrum(fibers=(1, 2), orders=orders, nx=8, x0=0)
    path = write_e91(tmp_path / "f-e91.fits", spec, header={"BJD": 2458068.5})
    hdr = fits.getheader(path)
    assert hdr["FIB0"] == 1 and hdr["NORD"] == 67 and "AMPFL166" in hdr and "AMPFL000" not in hdr
    assert hdr["BJD"] == 2458068.5  # the caller's BJD is kept when there is no RV
    e = read_e91(path)
    assert e.star_fiber == 2 and e.spectrum.fibers.tolist() == [2, 1]
    assert e.orders.tolist() == list(range(52, 119))  # row 0 = order 52, the original's iord 0
    np.testing.assert_array_equal(
        e.spectrum.data[0, 0], spec.data[1, -1].astype(np.float32)
    )  # fiber 2, m = 52
    assert e.ccf is None and np.isnan(e.rv["RVCC"].value)


# ----- RVBLOCKFIT -------------------------------------------------------------------------------------------
def test_rvblockfit_tdim_and_index_semantics(tmp_path):
    """A known (nblock, nord) array: TDIM '(nord,nblock)', element k of the FITS vector = order k mod nord,
    block k div nord, and BLKINDX/ORDINDX say so."""
    rr = (
        np.arange(12)[:, None] * 1e-6 + np.array([0.0, 1e-8, 2e-8])[None, :]
    )  # ZBLOCK[b, j] for m = 80, 82, 83
    meta = {
        "block_rr": rr.T[[1, 0, 2]],  # rows in the measurement's order list [82, 80, 83]
        "block_err": np.full((3, 12), 5e-6),
        "rroa": 1.5e-6,
        "rrom": 1.25e-6,
        "rroe": 3e-7,
        "rcc": 3.7e-5,
        "ampcc": 0.93,
        "widcc": 14.5,
    }
    rv = _rv(meta=meta, orders=[82, 80, 83])
    path = write_e91(tmp_path / "b-e91.fits", _spectrum(), rv=rv)
    with fits.open(path) as hdul:
        h, data = hdul["RVBLOCKFIT"].header, hdul["RVBLOCKFIT"].data
        assert len(data) == 1 and h["TDIM1"] == "(4,12)" and h["TFORM1"] == "48D" and h["TFORM8"] == "48J"
        assert h["BLKSRC"] == "idl" and h["TTYPE1"] == "ZBLOCK" and h["TTYPE9"] == "ORDINDX"
        flat = np.asarray(data["ZBLOCK"][0]).ravel()  # FITS storage order: the first TDIM axis fastest
        ordindx, blkindx = np.asarray(data["ORDINDX"][0]), np.asarray(data["BLKINDX"][0])
        hdr = hdul[0].header
    k = np.arange(48)
    np.testing.assert_array_equal(ordindx, k % 4)
    np.testing.assert_array_equal(blkindx, k // 4)
    known = np.full((12, 4), np.nan)
    known[:, [0, 2, 3]] = rr  # order 81 (row 1) was not measured
    np.testing.assert_array_equal(flat, known[k // 4, k % 4])
    e = read_e91(path)
    np.testing.assert_array_equal(e.blocks["ZBLOCK"], known)
    np.testing.assert_array_equal(e.blocks["ORDINDX"], np.broadcast_to(np.arange(4), (12, 4)))
    np.testing.assert_array_equal(e.blocks["BLKINDX"], np.broadcast_to(np.arange(12)[:, None], (12, 4)))
    assert np.all(e.blocks["ERRZBLOCK"][:, [0, 2, 3]] == 5e-6) and np.isnan(e.blocks["SCALE"]).all()
    assert (hdr["ZBLKAVG"], hdr["ZBLKMED"], hdr["ZBLKERR"]) == (1.5e-6, 1.25e-6, 3e-7)
    assert (hdr["RCC"], hdr["AMPCC"], hdr["WIDCC"]) == (3.7e-5, 0.93, 14.5)  # Stage A's own numbers


@pytest.fixture(scope="module")
def block_rv():
    """A noiseless simulated star measured with method="blocks" (real per-block numbers)."""
    from nres.rv import Template, measure
    from nres.sim.extracted import simulate_extracted

    star, truth = simulate_extracted(seed=1, rv=20 * u.km / u.s, z_b=1e-5, orders=[80, 81], n_pixel=1024,
                                     noiseless=True)  # fmt: skip
    lam = star.wavelength.to_value(u.nm)[0]
    grid = np.array([np.linspace(lo.min() - 1.0, lo.max() + 1.0, 6 * 1024) for lo in lam]) * u.nm
    template = Template(
        grid, truth.template.flux(grid), wavelength_medium="vacuum", wavelength_frame="barycentric"
    )
    rv = measure(star, template, method="blocks", z_b=1e-5)
    legacy = measure(star, template, method="blocks", z_b=1e-5, legacy=True)  # the original's Stage A + B
    two = EchelleSpectrum(
        np.concatenate([star.data] * 2), uncertainty=VarianceUncertainty(np.concatenate([star.variance] * 2)),
        wavelength=np.concatenate([star.wavelength] * 2), orders=star.orders, fibers=[0, 1], pixel=star.pixel,
        blaze=np.concatenate([star.blaze] * 2), meta={"OBJECTS": "star&thar&none"},
    )  # fmt: skip
    return two, rv, truth, legacy


def test_rvblockfit_carries_the_block_fit(tmp_path, block_rv):
    spec, rv, truth, legacy = block_rv
    e = read_e91(write_e91(tmp_path / "r-e91.fits", spec, rv=rv))
    blocks = rv.meta["blocks"]
    z_obs = rv.rv_observed.to_value(u.m / u.s) / C_M_S
    rows = np.searchsorted(e.orders, np.asarray(blocks["order"]))
    b = np.asarray(blocks["block"])
    z_blk = u.Quantity(blocks["rv"], u.m / u.s).to_value(u.m / u.s) / C_M_S  # a plain m/s column
    # ZBLOCK is relative to RCC (= z_obs), as the original's: (1 + z_block) / (1 + z_obs) - 1
    np.testing.assert_allclose(e.blocks["ZBLOCK"][b, rows], (1 + z_blk) / (1 + z_obs) - 1, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(e.blocks["SCALE"][b, rows], np.asarray(blocks["level"]))
    np.testing.assert_array_equal(e.blocks["LX1COEF"][b, rows], np.asarray(blocks["scale"]))
    assert np.isnan(e.blocks["ERRSCALE"]).all() and np.isnan(e.blocks["PLDP"]).all()
    # noiseless star: every used block measures the injected velocity, i.e. ~0 relative to RCC; the
    # block method's own test bounds each block at 3 m/s and the mean at 1 m/s
    used = np.asarray(blocks["used"])
    assert np.all(np.abs(e.blocks["ZBLOCK"][b[used], rows[used]] * C_M_S) < 3.0)
    assert abs(e.rv["ZBLKAVG"] * C_M_S) < 1.0 and abs(e.rv["ZBLKMED"] * C_M_S) < 3.0
    # ZBLKERR and the measurement's photon error both combine the same used blocks by inverse variance;
    # they differ by the (1 + z) factors between ln(1 + z) and z relative to RCC (~1e-4 at 20 km/s)
    assert e.rv["ZBLKERR"] * C_M_S == pytest.approx(rv.rv_err_photon.to_value(u.m / u.s), rel=2e-4)
    assert abs(e.rv["RCC"] * C_M_S - C_M_S * truth.z_obs) < 1.0
    # the legacy engine's own per-block numbers and summaries, whatever their value (the window has
    # no Mg b order for its Stage A), go to the file unchanged: ZBLOCK[block, row of m] = rr[m, block]
    e = read_e91(write_e91(tmp_path / "l-e91.fits", spec, rv=legacy))
    meta = legacy.meta
    rows = np.searchsorted(e.orders, np.asarray(legacy.orders["order"]))
    np.testing.assert_array_equal(e.blocks["ZBLOCK"][:, rows], meta["block_rr"].T)
    np.testing.assert_array_equal(e.blocks["ERRZBLOCK"][:, rows], meta["block_err"].T)
    # header cards: a float value has at most 20 characters (15 significant digits or more)
    for key, name in (("ZBLKAVG", "rroa"), ("ZBLKMED", "rrom"), ("ZBLKERR", "rroe"), ("RCC", "rcc"),
                      ("AMPCC", "ampcc")):  # fmt: skip
        assert e.rv[key] == pytest.approx(meta[name], rel=1e-14, abs=0)
    assert e.rv["WIDCC"].value == pytest.approx(meta["widcc"], rel=1e-14)


# ----- files of the original pipeline, built by hand from the spec (idl-rv-ops.md 12.3) --------------------
ONX = 96  # columns of the hand-built files (the original's have 4096; nothing depends on it)


def _original_hdus(compressed, fib0=0):
    """The 10 HDUs as tarout2 wrote them: primary = the real archived header (tests/data), images
    (nx, nord) = numpy (67, nx) float32 / float64, SPECXCOR 801 lags, RVBLOCKFIT with TDIM (67,12)."""
    header = fits.Header.fromtextfile(DATA / "header_e91_example.txt")
    if fib0:
        header["FIB0"], header["OBJECTS"] = 1, "none&thar&GJ166"
    rng = np.random.default_rng(4)
    iord = np.arange(67)[:, None]
    x = np.arange(ONX)[None, :]
    images = {
        name: (1000.0 * (k + 1) + 10.0 * iord + x + rng.normal(0.0, 10.0, (67, ONX))).astype(np.float32)
        for k, name in enumerate(("SPECRAW", "SPECFLAT", "SPECBLAZE", "THARRAW", "THARFLAT"))
    }
    m = 52 + iord  # iord 0 = order 52 (red): ~ 470 um / m
    images["WAVESPEC"] = 1e4 * 4.7 / m * (1.0 + 2e-6 * (x - ONX / 2))
    images["WAVETHAR"] = images["WAVESPEC"] - 1e-3
    hdus = [fits.PrimaryHDU(header=header)]
    for name, arr in images.items():
        if compressed:  # fpack -q 64, one row per tile: Rice with quantised floats
            hdus.append(fits.CompImageHDU(arr, name=name, tile_shape=(1, ONX), quantize_level=64.0))
        else:
            hdus.append(fits.ImageHDU(arr, name=name))
    ccf = (0.4 * np.exp(-0.5 * ((np.arange(801) - 400) / 7.0) ** 2)).astype(np.float32)
    xc = fits.CompImageHDU(ccf, name="SPECXCOR") if compressed else fits.ImageHDU(ccf, name="SPECXCOR")
    xc.header["CRPIX1"], xc.header["CRVAL1"] = 1, -442.044189453
    xc.header["CDELT1"], xc.header["CTYPE1"] = 0.991130485535, "PIXEL"
    hdus.append(xc)
    known = 1000.0 * np.arange(12)[:, None] + np.arange(67)[None, :]  # ZBLOCK[block, iord]
    cols = [fits.Column(name=n, format="804D", dim="(67,12)", array=(known + i).reshape(1, 12, 67))
            for i, n in enumerate(BLOCK_COLUMNS)]  # fmt: skip
    k = np.arange(804)
    cols += [fits.Column(name="BLKINDX", format="804J", array=(k // 67).reshape(1, 804)),
             fits.Column(name="ORDINDX", format="804J", array=(k % 67).reshape(1, 804))]  # fmt: skip
    hdus.append(fits.BinTableHDU.from_columns(cols, name="RVBLOCKFIT"))
    return hdus, images, ccf, known


@pytest.mark.parametrize("compressed", [False, True])
def test_reads_files_of_the_original_layout(tmp_path, compressed):
    hdus, images, ccf, known = _original_hdus(compressed)
    path = tmp_path / ("lscnrs01-fl09-20171110-0037-e91.fits" + (".fz" if compressed else ""))
    fits.HDUList(hdus).writeto(path)
    if compressed:  # as in the archived file: the smooth float64 wavelength tiles cannot be quantised
        # (no noise), so they are stored losslessly in a GZIP_COMPRESSED_DATA column
        with fits.open(path, disable_image_compression=True) as raw:
            assert "GZIP_COMPRESSED_DATA" in raw["WAVESPEC"].columns.names
            assert raw["SPECRAW"].header["ZCMPTYPE"] == "RICE_1" and raw["SPECXCOR"].header["ZNAXIS"] == 1
    e = read_e91(path)
    assert e.star_fiber == 0 and e.unit == "adu" and e.spectrum.unit == u.adu
    assert e.orders.tolist() == list(range(52, 119)) and e.spectrum.fibers.tolist() == [0, 1]
    np.testing.assert_array_equal(e.spectrum.pixel, np.arange(ONX))
    # wavelengths exact (float64, lossless tiles); row 0 is the red order 52
    np.testing.assert_array_equal(e.spectrum.wavelength.to_value(u.nm)[0], images["WAVESPEC"])
    np.testing.assert_array_equal(e.spectrum.wavelength.to_value(u.nm)[1], images["WAVETHAR"])
    assert e.spectrum.wavelength[0, 0, 0] > e.spectrum.wavelength[0, -1, 0]
    # fpack -q 64 quantises the float32 spectra in steps of (noise / 64) with subtractive dithering:
    # errors below one step; noise 10 -> 0.16, so 0.3 (two steps) bounds it
    tol = 0.3 if compressed else 0.0
    for got, name in ((e.spectrum.data[0], "SPECRAW"), (e.spectrum.data[1], "THARRAW"),
                      (e.flat_fielded.data[0], "SPECFLAT"), (e.flat_fielded.data[1], "THARFLAT"),
                      (e.blaze_subtracted.data[0], "SPECBLAZE")):  # fmt: skip
        np.testing.assert_allclose(got, images[name], rtol=0, atol=tol)
    v, c = e.ccf
    assert v[0].to_value(u.km / u.s) == pytest.approx(-442.044189453, abs=1e-12)
    assert v[800].to_value(u.km / u.s) == pytest.approx(-442.044189453 + 800 * 0.991130485535, abs=1e-9)
    np.testing.assert_allclose(c, ccf, rtol=0, atol=0.4 / 64 * 2 if compressed else 0.0)
    np.testing.assert_array_equal(e.blocks["ZBLOCK"], known)  # [block, iord]
    np.testing.assert_array_equal(e.blocks["PLDP"], known + 6)
    np.testing.assert_array_equal(e.blocks["ORDINDX"][5], np.arange(67))
    np.testing.assert_array_equal(e.blocks["BLKINDX"][:, 7], np.arange(12))
    # the header's RV numbers (docs/output_format.txt)
    assert e.rv["RVCC"].to_value(u.km / u.s) == pytest.approx(-40.6405861234, rel=1e-12)
    assert e.rv["RCC"] == pytest.approx(-0.000152488163996, rel=1e-12)
    assert e.rv["WIDCC"].to_value(u.km / u.s) == pytest.approx(16.2292) and e.rv["AMPCC"] == pytest.approx(
        0.396464
    )
    assert e.rv["BJD"] == pytest.approx(2458068.66170, abs=1e-6)
    assert e.rv["ZBLKAVG"] == pytest.approx(2.49009940936e-06) and e.rv["ZBLKERR"] == pytest.approx(
        0.0129685827539
    )


def test_original_star_fiber_2_and_adu_comparison(tmp_path):
    hdus, images, _, _ = _original_hdus(False, fib0=1)
    path = tmp_path / "o-e91.fits"
    fits.HDUList(hdus).writeto(path)
    e = read_e91(path)
    assert e.star_fiber == 2 and e.spectrum.fibers.tolist() == [2, 1]
    # an nres product of the same frame in electrons (GAIN = 2.17 in the archived header)
    gain = e.header["GAIN"]
    product = EchelleSpectrum(
        np.stack([images["SPECRAW"], images["THARRAW"]]).astype(np.float64) * gain, orders=np.arange(52, 119),
        fibers=[2, 1], wavelength=np.stack([images["WAVESPEC"], images["WAVETHAR"]]) * u.nm,
        pixel=np.arange(ONX), meta={"RV": -40640.5861234},
    )  # fmt: skip
    table = compare_e91(e, product)
    assert len(table) == 134 and set(table["fiber"]) == {1, 2}
    assert np.all(table["dv_median"] == 0) and np.all(table["dv_max"] == 0)
    np.testing.assert_allclose(table["flux_ratio"], 1.0, rtol=1e-12)  # ADU x GAIN = electrons
    assert "GAIN = 2.17" in table.meta["flux_unit_note"]
    assert abs(table.meta["rv_difference"].to_value(u.m / u.s)) < 1e-6


def test_bad_files(tmp_path):
    with pytest.raises(InvalidInputFileError, match="not found"):
        read_e91(tmp_path / "missing-e91.fits")
    junk = tmp_path / "junk-e91.fits"
    junk.write_bytes(b"not a FITS file at all" * 200)
    with pytest.raises(InvalidInputFileError, match="junk-e91.fits.*FITS"):
        read_e91(junk)
    hdus, _, _, _ = _original_hdus(False)
    cases = {
        "RVBLOCKFIT HDU": lambda h: h[:-1],
        "keyword FIB0": lambda h: [fits.PrimaryHDU(header=_without(h[0].header, "FIB0", "OBJECTS")), *h[1:]],
        "THARFLAT has shape": lambda h: [
            *h[:5],
            fits.ImageHDU(np.zeros((66, ONX), np.float32), name="THARFLAT"),
            *h[6:],
        ],  # fmt: skip
        "SPECXCOR lacks keyword CRVAL1": lambda h: [*h[:8], fits.ImageHDU(h[8].data, name="SPECXCOR"), h[9]],
        "RVBLOCKFIT lacks column PLDP": lambda h: [*h[:9], _drop_column(h[9], "PLDP")],
    }
    for i, (message, edit) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}-e91.fits"
        fits.HDUList(edit(list(hdus))).writeto(path)
        with pytest.raises(InvalidInputFileError, match=message) as err:
            read_e91(path)
        assert path.name in str(err.value)
    spec = _spectrum()
    with pytest.raises(InvalidParameterError, match="fibers 0 .star. and 1"):
        write_e91(tmp_path / "w.fits", spec.select(fibers=[0]), fiber=0)
    with pytest.raises(InvalidParameterError, match="electrons"):
        adu = EchelleSpectrum(spec.data * u.adu, wavelength=spec.wavelength, orders=ORDERS, fibers=[0, 1])
        write_e91(tmp_path / "w.fits", adu)
    with pytest.raises(InvalidParameterError, match="wavelengths"):
        write_e91(tmp_path / "w.fits", EchelleSpectrum(spec.data, orders=ORDERS, fibers=[0, 1]))
    gaps = EchelleSpectrum(spec.data, wavelength=spec.wavelength, orders=ORDERS, fibers=[0, 1],
                           pixel=np.arange(NX) * 2.0)  # fmt: skip
    with pytest.raises(InvalidParameterError, match="contiguous"):
        write_e91(tmp_path / "w.fits", gaps)
    assert not (tmp_path / "w.fits").exists()


def _without(header, *keys):
    header = header.copy()
    for key in keys:
        del header[key]
    return header


def _drop_column(hdu, name):
    return fits.BinTableHDU.from_columns([c for c in hdu.columns if c.name != name], name="RVBLOCKFIT")


# ----- comparison and CLI ---------------------------------------------------------------------------------
def test_compare_recovers_an_injected_shift_and_rv_difference(tmp_path, capsys):
    spec, rv = _spectrum(), _rv()
    product = write_spectrum_1d(tmp_path / "x-e92-1d.fits", spec, rv=rv)
    v = 250.0  # m/s: the e91 wavelengths are the product's times the Doppler factor (1 + v/c)
    shifted = spec.with_wavelength(spec.wavelength * (1.0 + v / C_M_S), medium="vacuum", frame="topocentric")
    e91 = write_e91(tmp_path / "x-e91.fits", shifted, rv=replace(rv, rv=rv.rv + 37.0 * u.m / u.s))
    table = compare_e91(e91, product)
    assert len(table) == 8 and table["order"].tolist() == [80, 81, 82, 83] * 2
    # c (lambda (1 + v/c) - lambda) / lambda = v up to float64 rounding of lambda (1e-16 x 500 nm / 1e-3 nm)
    np.testing.assert_allclose(table["dv_median"].to_value(u.m / u.s), v, rtol=1e-6)
    np.testing.assert_allclose(table["dv_max"].to_value(u.m / u.s), v, rtol=1e-6)
    np.testing.assert_array_equal(table["flux_ratio"], 1.0)  # both float32 from the same float64 flux
    assert table["n_pixel"].tolist() == [NX] * 8
    assert table.meta["rv_difference"].to_value(u.m / u.s) == pytest.approx(37.0, rel=1e-6)
    assert main(["compare-e91", str(e91), str(product), "--out", str(tmp_path / "cmp.ecsv")]) == 0
    out = capsys.readouterr().out
    assert "250.000" in out and "difference 37.00 m/s" in out
    back = Table.read(tmp_path / "cmp.ecsv")
    np.testing.assert_allclose(back["dv_median"], v, rtol=1e-6)
    with pytest.raises(InvalidParameterError, match="no .fiber, order. in common"):
        compare_e91(e91, _spectrum(orders=[60, 61]))


# ----- summary figures ------------------------------------------------------------------------------------
def test_summary_pdf_png_and_figure_content(tmp_path):
    spec = _spectrum(orders=[90, 91], nx=NX)
    lam = spec.wavelength.to_value(u.nm)
    # put order 90 of the star fiber around Mg b
    spec = spec.with_wavelength(
        (lam - lam[0, 0, NX // 2] + 517.27) * u.nm, medium="vacuum", frame="topocentric"
    )
    rv = _rv(orders=[90, 91])
    snr = {90: 55.0, 91: 61.5}
    lines = QTable({"used": [True, True, False], "wavelength": [500.0, 510.0, 520.0] * u.nm,
                    "residual_m_s": [3.0, -4.0, 40.0] * u.m / u.s})  # fmt: skip
    solution = SimpleNamespace(lines=lines, qc={"rms_m_s": 3.5})  # what the residual panel reads
    paths = summary_paths("raw/lscnrs01-fa09-20190405-0014-e00.fits.fz", tmp_path, "both")
    assert [p.name for p in paths] == ["lscnrs01-fa09-20190405-0014-e92-summary.png",
                                       "lscnrs01-fa09-20190405-0014-e92-summary.pdf"]  # fmt: skip
    assert summary_figure(paths, spec, fiber=0, rv=rv, solution=solution, snr=snr, title="t") == paths
    assert paths[1].read_bytes()[:5] == b"%PDF-" and paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidParameterError, match="summary_format"):
        summary_paths("x-e00.fits", tmp_path, "svg")
    fig = summary_plot(spec, fiber=0, rv=rv, solution=solution, snr=snr, title="t")
    mgb, ccf, sn, res = fig.axes
    assert len(fig.axes) == 4 and mgb.get_title() == "fiber 0: Mg b"
    x = mgb.lines[0].get_xdata()
    assert x.min() <= 517.27 <= x.max()
    np.testing.assert_allclose(ccf.lines[0].get_ydata(), rv.ccf["ccf"][0])
    np.testing.assert_allclose(ccf.lines[0].get_xdata(), rv.ccf["velocity"][0].to_value(u.km / u.s))
    assert "12.3450 km/s" in ccf.get_title()
    np.testing.assert_array_equal(sn.lines[0].get_xdata(), [90, 91])
    np.testing.assert_array_equal(sn.lines[0].get_ydata(), [55.0, 61.5])
    np.testing.assert_array_equal(res.lines[0].get_ydata(), [3.0, -4.0])  # used lines
    np.testing.assert_array_equal(res.lines[1].get_ydata(), [40.0])  # rejected
    assert "rms 3.5 m/s" in res.get_title()


# ----- the TARGET recipe with e91=True and summary_format="both" -------------------------------------------
@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """The smallest simulated night that reaches a TARGET with an RV: one frame per type, fibers 110
    only (the 011 frames are deleted), 4 orders x 1024 columns (smaller windows fail to trace), plain
    .fits raw files (1.4 s faster to simulate), no 2-D products, no TRIPLE."""
    from nres.pipeline.db import Database
    from nres.pipeline.night import reduce_night
    from nres.sim import simulate_night
    from nres.sim.night import DEFAULT_TARGETS

    root = tmp_path_factory.mktemp("e91_night")
    standard = next(t for t in DEFAULT_TARGETS if t.standard)
    truth_path = simulate_night(
        "lsc", "2019-04-05", root / "archive", n_bias=1, n_dark=1, n_flat=1, n_arc=1,
        targets=[replace(standard, n_exposures=1)], window={"orders": (84, 87), "columns": (1536, 2560)},
        seed=5, progress=False, compress=False,
    )  # fmt: skip
    raw = truth_path.parent / "raw"
    for row in Table.read(truth_path):
        if row["fibers"] == "011":
            (raw / row["filename"]).unlink()
    db = Database(f"sqlite:///{root / 'nres.sqlite'}")
    with ThreadPoolExecutor(1) as pool:
        result = reduce_night(
            raw, root / "reduced", db=db, executor=pool, template="simulated", min_frames=1, progress=False,
            write_2d=False, triple=False, e91=True, summary_format="both",
        )  # fmt: skip
    return result


def test_target_recipe_writes_e91_and_pdf(reduced):
    assert not reduced.failures
    (target,) = reduced.stages["TARGET"]
    assert target.status == "done", target.reason
    names = sorted(Path(p).name for p in target.products)
    stem = Path(target.path).name.removesuffix("-e00.fits")
    assert names == [
        f"{stem}-e91.fits",
        f"{stem}-e92-1d.fits",
        f"{stem}-e92-summary.pdf",
        f"{stem}-e92-summary.png",
    ]
    products = {Path(p).name: Path(p) for p in target.products}
    assert products[f"{stem}-e92-summary.pdf"].read_bytes()[:5] == b"%PDF-"
    e91, one_d = products[f"{stem}-e91.fits"], products[f"{stem}-e92-1d.fits"]
    e = read_e91(e91)
    spec = read_echelle_spectrum_1d(one_d)
    assert e.orders.tolist() == sorted(spec.orders.tolist()) and e.star_fiber == 0
    assert e.header["BJD"] == pytest.approx(target.qc["bjd_tdb"], abs=1e-9)  # the recipe's BJD_TDB
    # the 1-D product carries the same BJD_TDB (1e-9 d = 86 us: float64 card round trip)
    assert spec.meta["BJD_TDB"] == pytest.approx(target.qc["bjd_tdb"], abs=1e-9)
    assert e.rv["RVCC"].to_value(u.m / u.s) == pytest.approx(target.qc["rv_m_s"], abs=1e-6)
    # the same spectrum in both products: no wavelength difference, flux ratio 1 (float32 both), same RV
    table = compare_e91(e91, one_d)
    assert np.all(table["dv_median"] == 0) and np.all(table["dv_max"] == 0)
    ratio = np.asarray(table["flux_ratio"])
    assert np.all(ratio[np.isfinite(ratio)] == 1.0) and np.isfinite(ratio).sum() >= 8
    assert abs(table.meta["rv_difference"].to_value(u.m / u.s)) < 1e-6


def test_cli_flags():
    args = build_parser().parse_args(["reduce", "x.fits", "--out", "o", "--e91", "--summary-format", "pdf"])
    assert args.e91 and args.summary_format == "pdf"
    args = build_parser().parse_args(["night", "raw", "--out", "o", "--summary-format", "both"])
    assert not args.e91 and args.summary_format == "both"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["night", "raw", "--out", "o", "--summary-format", "svg"])
