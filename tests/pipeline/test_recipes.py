"""Recipe building blocks against known answers (dead columns, product round trips, QC) and
reduce_file / stack_calibrations on a few simulated raw files."""

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import CCDData, VarianceUncertainty

from nres.errors import InvalidParameterError, MissingCalibrationError
from nres.extract import Profiles
from nres.flags import FLAG_DTYPE, Flag
from nres.pipeline.calibrations import stack_calibrations
from nres.pipeline.db import Database
from nres.pipeline.defects import dead_column_mask, flag_dead_columns
from nres.pipeline.frames import profiles_from_hdus, profiles_to_hdus, read_frame, write_frame
from nres.pipeline.qc import snr_per_order
from nres.pipeline.recipes import reduce_file
from nres.pipeline.spectrum1d import read_spectrum_1d, write_spectrum_1d
from nres.pipeline.templates import resolve_reference
from nres.spectrum import EchelleSpectrum


def _image_with_dead_column():
    """Three horizontal Gaussian traces, a dead column from row 40 up, and a narrow arc line."""
    y = np.arange(120)[:, None]
    x = np.arange(200)[None, :]
    img = 10.0 + sum(5000.0 * np.exp(-0.5 * ((y - c) / 1.6) ** 2) for c in (20, 60, 100)) * np.ones_like(x)
    line = 2e5 * np.exp(-0.5 * ((x - 150) / 1.1) ** 2) * np.exp(-0.5 * ((y - 60) / 1.6) ** 2)
    img = img + line
    truth = np.zeros(img.shape, bool)
    truth[40:, 77] = True
    img[truth] *= 0.05  # the simulator's dead column keeps 5 % of the charge
    return img, truth


def test_dead_column_found_where_injected_and_arc_line_kept():
    img, truth = _image_with_dead_column()
    bad = dead_column_mask(img, img + 25.0, np.ones(img.shape, bool))
    # flagged from the first trace row above row 40 that has signal (the trace at y = 60) to the top
    assert set(np.flatnonzero(bad.any(axis=0))) == {77}
    rows = np.flatnonzero(bad[:, 77])
    assert rows[-1] == img.shape[0] - 1 and 55 <= rows[0] <= 60
    frame = CCDData(img, unit="electron", uncertainty=VarianceUncertainty(img + 25.0), meta={"A": 1})
    out, n = flag_dead_columns(frame)
    assert n == 1 and np.all(out.flags[rows, 77] & Flag.BAD_PIXEL) and out.mask[rows, 77].all()
    assert frame.mask is None and getattr(frame, "flags", None) is None  # input untouched


def test_frame_round_trip_is_exact_in_float32(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(100, 10, (30, 40))
    flags = np.zeros(data.shape, FLAG_DTYPE)
    flags[3, 4] = Flag.COSMIC_RAY
    frame = CCDData(data, unit="electron", uncertainty=VarianceUncertainty(data), mask=flags != 0,
                    meta={"OBSTYPE": "BIAS", "NRESY0": 5, "HIERARCH NRES P1 STEP": "x"})  # fmt: skip
    frame.flags = flags
    ngood = np.full(data.shape, 3, np.int16)
    path = write_frame(frame, tmp_path / "f-2d.fits.fz", ngood=ngood)
    back, ng = read_frame(path, with_ngood=True)
    np.testing.assert_array_equal(back.data, data.astype(np.float32))  # lossless compression
    np.testing.assert_array_equal(back.uncertainty.array, data.astype(np.float32))
    np.testing.assert_array_equal(back.flags, flags)
    np.testing.assert_array_equal(ng, ngood)
    assert back.mask[3, 4] and back.mask.sum() == 1 and back.meta["NRESY0"] == 5
    assert back.meta["OBSTYPE"] == "BIAS" and back.unit == u.electron


def test_profiles_round_trip():
    from astropy.io import fits

    data = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    block_x = [100.0, 300.0, 500.0, 700.0]
    prof = Profiles(data=data, fibers=[0, 1], orders=[80, 81, 82], block_x=block_x, dy=np.linspace(-2, 2, 5))
    back = profiles_from_hdus(fits.HDUList([fits.PrimaryHDU(), *profiles_to_hdus(prof)]))
    np.testing.assert_array_equal(back.data, prof.data)
    assert back.orders.tolist() == [80, 81, 82] and back.interpolation == "linear"


def _spectrum():
    shape = (2, 3, 50)
    data = np.full(shape, 400.0)
    var = np.full(shape, 16.0)
    lam = np.linspace(500.0, 510.0, 150).reshape(1, 3, 50).repeat(2, axis=0) * u.nm
    blaze = np.full(shape, 0.5)
    meta = {"OBJECTS": "star&thar&none"}
    unc = VarianceUncertainty(var)
    return EchelleSpectrum(
        data, uncertainty=unc, wavelength=lam, blaze=blaze, orders=[80, 81, 82], fibers=[0, 1], meta=meta
    )


def test_snr_per_order_known_answer():
    spec = _spectrum()
    snr = snr_per_order(spec, 0)
    assert snr == {80: pytest.approx(100.0), 81: pytest.approx(100.0), 82: pytest.approx(100.0)}  # 400 / 4


def test_spectrum_1d_round_trip(tmp_path):
    spec = _spectrum()
    path = write_spectrum_1d(tmp_path / "x-1d.fits", spec, qc={"snr_median": 100.0, "bad": float("nan")})
    out = read_spectrum_1d(path)
    table = out["spectrum"]
    assert len(table) == 6 and table["fiber"].tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(table["wavelength"][1], np.linspace(500, 510, 150)[50:100], rtol=1e-15)
    np.testing.assert_allclose(table["wavelength_angstrom"][1], 10 * np.asarray(table["wavelength"][1]))
    np.testing.assert_allclose(table["normflux"], 800.0)  # flux / blaze
    np.testing.assert_allclose(table["normvariance"], 64.0)  # variance / blaze^2
    assert out["header"]["HIERARCH NRES QC SNR_MEDIAN"] == 100.0 and out["rv"] is None


def test_template_option_errors(tmp_path):
    with pytest.raises(MissingCalibrationError, match="no RV template"):
        resolve_reference(None, target_name="x", spec=_spectrum())
    with pytest.raises(InvalidParameterError, match="simulated"):
        resolve_reference(str(tmp_path / "missing.mas"), target_name="x", spec=_spectrum())


@pytest.fixture(scope="module")
def calib_night(tmp_path_factory):
    """Two biases and one dark of a small windowed night, reduced one by one with reduce_file."""
    from nres.sim import simulate_night

    root = tmp_path_factory.mktemp("files")
    truth = simulate_night("lsc", "2019-04-05", root / "archive", n_bias=2, n_dark=1, n_flat=0, n_arc=0,
                           targets=(), window=(1000, 1064, 1500, 1600), seed=2, progress=False)  # fmt: skip
    raw = sorted((truth.parent / "raw").glob("*.fits.fz"))
    return root, raw


def test_reduce_file_and_stack(calib_night):
    root, raw = calib_night
    db = Database(f"sqlite:///{root / 'db.sqlite'}")
    bias_files = [p for p in raw if p.name.endswith("b00.fits.fz")]
    dark_file = next(p for p in raw if p.name.endswith("d00.fits.fz"))
    # a dark before any bias: recorded as failed with the missing calibration named
    res = reduce_file(dark_file, db=db, out_dir=root / "out")
    assert (
        res.status == "failed" and res.reason.startswith("MissingCalibrationError") and "BIAS" in res.reason
    )
    for path in bias_files:
        assert reduce_file(path, db=db, out_dir=root / "out").status == "done"
    assert reduce_file(bias_files[0], db=db, out_dir=root / "out").status == "skipped"  # same checksum
    masters = stack_calibrations("BIAS", site="lsc", camera="fa09", start=0, end=1e6, db=db, min_frames=2,
                                 out_dir=root / "out")  # fmt: skip
    assert len(masters) == 1 and masters[0]["nframes"] == 2
    master, ngood = read_frame(masters[0]["path"], with_ngood=True)
    singles = [read_frame(p) for p in sorted((root / "out").glob("*b92-2d.fits.fz"))]
    # two inputs: the sigma-clipped mean of two is their mean (MAD clipping never rejects one of two)
    expected = 0.5 * (singles[0].data + singles[1].data)
    np.testing.assert_allclose(master.data, expected, rtol=1e-6, atol=1e-3)  # float32 products
    assert ngood.max() == 2
    res = reduce_file(dark_file, db=db, out_dir=root / "out", force=True)
    assert res.status == "done" and res.qc["obstype"] == "DARK"
    with pytest.raises(MissingCalibrationError, match="need at least 3"):
        stack_calibrations("DARK", site="lsc", camera="fa09", start=0, end=1e6, db=db, min_frames=3)
