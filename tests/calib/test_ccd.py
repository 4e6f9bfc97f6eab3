"""process_ccd and the individual CCD steps: truth recovery, flags, step equality, legacy, errors."""

import types
from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty, VarianceUncertainty

import nres.calib as calib
from nres.errors import InvalidParameterError
from nres.flags import Flag
from nres.provenance import read_provenance

from .conftest import NBIAS, NX, NY, make_raw

DATA = Path(__file__).parents[1] / "data"


def _steps(raw, *, bias=None, dark=None, bpm=None, legacy=False, **kw):
    """The public steps chained in the documented order."""
    f = calib.subtract_overscan(raw, legacy=legacy, overscan=kw.get("overscan"))
    f = calib.trim(f, legacy=legacy, last_column=kw.get("last_column"))
    f = calib.gain_correct(f)
    if bias is not None:
        f = calib.subtract_bias(f, bias)
    f = calib.make_variance(f, legacy=legacy, variance_formula=kw.get("variance_formula"))
    if dark is not None:
        f = calib.subtract_dark(f, dark)
    rt = calib.trim(raw, legacy=legacy, last_column=kw.get("last_column"))
    return calib.flag_pixels(f, rt, bpm=bpm)


def _masters(rng):
    bias = CCDData(
        rng.normal(3.0, 1.0, (NY, NX)),
        unit="electron",
        uncertainty=VarianceUncertainty(np.full((NY, NX), 0.4)),
    )
    dmask = np.zeros((NY, NX), bool)
    dmask[5, 6] = True
    dark = CCDData(
        rng.uniform(0.01, 0.02, (NY, NX)),
        unit="electron/s",
        uncertainty=StdDevUncertainty(np.full((NY, NX), 1e-3)),
        mask=dmask,
    )
    bpm = np.zeros((NY, NX), np.uint8)
    bpm[:, 17] = 1
    return bias, dark, bpm


def _with_defects(rng):
    signal = rng.uniform(100.0, 3000.0, (NY, NX))
    raw = make_raw(rng, signal=signal, exptime=60.0, obstype="LAMPFLAT")
    raw.data[20:23, 30] = 65535.0  # saturated run ...
    raw.data[23:26, 30] = 62000.0  # ... with a bleed trail above MAXLIN
    raw.data[40, 50] = 61000.0  # non-linear only
    raw.data[50, 10] = np.nan
    return raw


@pytest.mark.parametrize("legacy", [False, True])
def test_fused_pass_equals_chained_steps(rng, legacy):
    raw = _with_defects(rng)
    bias, dark, bpm = _masters(rng)
    fused = calib.process_ccd(raw, bias=bias, dark=dark, bpm=bpm, legacy=legacy)
    steps = _steps(raw, bias=bias, dark=dark, bpm=bpm, legacy=legacy)
    # identical operations in the same order: bit-identical results are required
    np.testing.assert_array_equal(fused.data, steps.data)
    np.testing.assert_array_equal(fused.uncertainty.array, steps.uncertainty.array)
    np.testing.assert_array_equal(fused.flags, steps.flags)
    np.testing.assert_array_equal(fused.mask, steps.mask)
    for rule in ("frame", "none"):
        a = calib.process_ccd(raw, overscan=rule)
        b = _steps(raw, overscan=rule)
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("dtype", ["uint16", ">u2", "int32", "float32"])
def test_integer_and_big_endian_raw_equal_float(rng, dtype):
    # the kernel reads uint16/int32 raw data directly (others are converted): same result
    raw = _with_defects(rng)
    raw.data[50, 10] = 1000.0  # integers cannot hold the nan
    bias, dark, bpm = _masters(rng)
    ref = calib.process_ccd(raw, bias=bias, dark=dark, bpm=bpm)
    as_dtype = CCDData(raw.data.astype(dtype), unit="adu", meta=raw.meta)
    before = as_dtype.data.copy()
    out = calib.process_ccd(as_dtype, bias=bias, dark=dark, bpm=bpm)
    np.testing.assert_array_equal(as_dtype.data, before)  # input not mutated
    for a, b in ((out.data, ref.data), (out.uncertainty.array, ref.uncertainty.array)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out.flags, ref.flags)
    np.testing.assert_array_equal(out.mask, ref.mask)


def test_masters_without_variance_or_mask_equal_chained_steps(rng):
    # a master without uncertainty adds no variance; masks of both masters and a bool bpm all give
    # BAD_PIXEL (the kernel takes them separately instead of OR-ing full frames first)
    raw = _with_defects(rng)
    bias = CCDData(rng.normal(3.0, 1.0, (NY, NX)), unit="electron")
    bmask = np.zeros((NY, NX), bool)
    bmask[7, 8] = True
    dark = CCDData(rng.uniform(0.01, 0.02, (NY, NX)), unit="electron/s", mask=bmask[::-1].copy())
    bias_masked = CCDData(bias.data, unit="electron", mask=bmask)
    bpm = np.zeros((NY, NX), bool)
    bpm[3, :] = True
    for b in (bias, bias_masked):
        fused = calib.process_ccd(raw, bias=b, dark=dark, bpm=bpm)
        steps = _steps(raw, bias=b, dark=dark, bpm=bpm)
        np.testing.assert_array_equal(fused.data, steps.data)
        np.testing.assert_array_equal(fused.uncertainty.array, steps.uncertainty.array)
        np.testing.assert_array_equal(fused.flags, steps.flags)
        np.testing.assert_array_equal(fused.mask, steps.mask)
    outputs = (fused.data, fused.uncertainty.array, fused.flags, fused.mask)
    inputs = (raw.data, bias_masked.data, bmask, dark.data, dark.mask, bpm)
    assert not any(np.shares_memory(a, b) for a in outputs for b in inputs)  # new arrays only
    assert fused.flags[7, 8] & Flag.BAD_PIXEL and fused.flags[NY - 8, 8] & Flag.BAD_PIXEL
    assert np.all(fused.flags[3] & Flag.BAD_PIXEL)
    # no master variance: read noise^2 + Poisson only (noiseless check of the formula)
    quiet = make_raw(rng, signal=np.full((NY, NX), 50.0), noise=False)
    q = calib.process_ccd(quiet, bias=CCDData(np.full((NY, NX), 10.0), unit="electron"), overscan="frame")
    np.testing.assert_allclose(q.uncertainty.array, 49.0 + 40.0, rtol=1e-12)


def test_flags_where_the_truth_says(rng):
    raw = _with_defects(rng)
    bias, dark, bpm = _masters(rng)
    before = raw.data.copy()
    out = calib.process_ccd(raw, bias=bias, dark=dark, bpm=bpm)
    np.testing.assert_array_equal(raw.data, before)  # input not mutated
    truth = np.zeros((NY, NX), np.uint16)
    truth[:, 17] |= np.uint16(Flag.BAD_PIXEL)
    truth[5, 6] |= np.uint16(Flag.BAD_PIXEL)  # masked in the master dark
    truth[20:23, 30] |= np.uint16(Flag.SATURATED)
    truth[23:26, 30] |= np.uint16(Flag.BLEED | Flag.NONLINEAR)
    truth[26:28, 30] |= np.uint16(Flag.BLEED)  # bleed_pad = 2 beyond the trail
    truth[18:20, 30] |= np.uint16(Flag.BLEED)  # and below the saturated run
    truth[40, 50] |= np.uint16(Flag.NONLINEAR)
    truth[50, 10] |= np.uint16(Flag.NONFINITE)
    np.testing.assert_array_equal(out.flags, truth)
    assert out.mask[50, 10] and out.mask[20, 30] and not out.mask[40, 50]  # NONLINEAR is informational
    assert out.flags.dtype == np.uint16 and out.unit == "electron"


def test_bias_level_and_read_noise_recovered(rng):
    # row-dependent bias (2 ADU over the frame) removed by the row-wise overscan
    gain, rn = 2.0, 7.0
    a = calib.process_ccd(make_raw(rng, row_slope=0.03, gain=gain, read_noise=rn))
    b = calib.process_ccd(make_raw(rng, row_slope=0.03, gain=gain, read_noise=rn))
    n = a.data.size
    # residual level: pixel noise rn/sqrt(n) plus the smoothed overscan's noise (rn / sqrt(NBIAS*17)
    # per row, averaged over NY/17 independent stretches) and half-ADU rounding of both
    se_level = np.hypot(rn / np.sqrt(n), rn / np.sqrt(NBIAS * 17) / np.sqrt(NY / 17))
    assert abs(a.data.mean()) < 4 * se_level
    # read noise from a difference of two biases: std/sqrt(2); rounding to 1 ADU adds gain^2/12
    rn_est = np.std(a.data - b.data) / np.sqrt(2)
    rn_expected = np.sqrt(rn**2 + gain**2 / 12)
    assert abs(rn_est - rn_expected) < 4 * rn_expected / np.sqrt(2 * n)
    # the variance plane of a bias is read noise^2 (no Poisson term for negative signal)
    assert np.all(a.uncertainty.array >= rn**2)


def test_gain_and_poisson_variance_recovered(rng):
    # photon transfer on two flats: var((a - b) / 2)*2 - rn^2 = mean signal in electrons only
    # when the gain is right
    level, gain, rn = 2000.0, 3.2, 7.0
    sig = np.full((NY, NX), level)
    a = calib.process_ccd(make_raw(rng, signal=sig, gain=gain, read_noise=rn, obstype="LAMPFLAT"))
    b = calib.process_ccd(make_raw(rng, signal=sig, gain=gain, read_noise=rn, obstype="LAMPFLAT"))
    n = a.data.size
    var_pix = np.var(a.data - b.data) / 2 - rn**2 - gain**2 / 12
    gain_ratio = a.data.mean() / var_pix  # = 1 when the gain is recovered
    # standard error of a variance estimate: var*sqrt(2/n) (Gaussian limit at 2000 e-)
    se = np.sqrt(2 / n) * (level + rn**2) / level
    assert abs(gain_ratio - 1) < 4 * se
    # the variance plane predicts the same scatter (Poisson + read noise)
    # (its mean over pixels scatters by the Poisson noise of the signal: sqrt(level / n))
    assert abs(a.uncertainty.array.mean() - (level + rn**2)) < 4 * np.sqrt(level / n)


def test_dark_rate_subtracted_and_variance_propagated(rng):
    rate, t = 0.5, 100.0
    raw = make_raw(rng, signal=np.full((NY, NX), rate * t), exptime=t, obstype="DARK")
    dark = CCDData(
        np.full((NY, NX), rate), unit="electron/s", uncertainty=VarianceUncertainty(np.full((NY, NX), 1e-4))
    )
    out = calib.process_ccd(raw, dark=dark)
    se = np.sqrt((rate * t + 49.0) / out.data.size)
    assert abs(out.data.mean()) < 4 * se
    # variance = rn^2 + max(signal before dark, 0) + t^2 var_dark: noiseless check of the formula
    quiet = make_raw(rng, signal=np.full((NY, NX), 50.0), exptime=t, noise=False, obstype="DARK")
    q = calib.process_ccd(quiet, dark=dark, overscan="frame")
    np.testing.assert_allclose(q.data, 50.0 - rate * t, rtol=0, atol=1e-9)
    np.testing.assert_allclose(q.uncertainty.array, 49.0 + 50.0 + t * t * 1e-4, rtol=1e-12)


def test_idl_variance_formula_scalar():
    # mk_variance: V_ADU = max(D_ADU, 0) + gain^2 rdnois; in electrons x gain^2:
    # gain * max(D_e, 0) + gain^4 * rdnois. fa cameras: gain 3.2, rdnois 7
    raw = make_raw(np.random.default_rng(0), signal=np.full((NY, NX), 320.0), gain=3.2, noise=False)
    out = calib.process_ccd(raw, variance_formula="idl", overscan="frame")
    np.testing.assert_allclose(out.data, 320.0, atol=1e-9)
    np.testing.assert_allclose(out.uncertainty.array, 3.2 * 320.0 + 3.2**4 * 7.0, rtol=1e-12)
    fixed = calib.process_ccd(raw, overscan="frame")
    np.testing.assert_allclose(fixed.uncertainty.array, 320.0 + 49.0, rtol=1e-12)


def test_trimoscan_idl_reference():
    d = np.load(DATA / "calib_trimoscan_idl.npz")
    raw = CCDData(d["in_raw_counts"].astype(np.float64), unit="adu")
    out = calib.process_ccd(
        raw,
        overscan="idl",
        last_column="copy_previous",
        gain=1.0,
        read_noise=7.0,
        saturation=65535.0,
        max_linear=65535.0,
        biassec="[513:544,1:512]",
        trimsec="[1:512,1:512]",
        exptime=0.0,
    )
    # IDL worked in float32 on values offset by 65536 (spacing 0.0078 ADU): 0.02 ADU is ~3 ulps
    np.testing.assert_allclose(out.data[:, d["out_cols"]], d["out_dat_cols"], rtol=0, atol=0.02)
    # and the corrected default differs (robust row level, no end rows left unsmoothed)
    dflt = calib.process_ccd(
        raw,
        gain=1.0,
        read_noise=7.0,
        saturation=65535.0,
        biassec="[513:544,1:512]",
        trimsec="[1:512,1:512]",
        exptime=0.0,
    )
    assert np.abs(dflt.data[:, d["out_cols"]] - d["out_dat_cols"]).max() > 0.1


def test_rawframe_like_input_and_provenance(rng):
    raw = make_raw(rng)
    info = types.SimpleNamespace(
        gain=2.0,
        read_noise=7.0,
        saturation=65535.0,
        max_linear=60000.0,
        biassec=raw.meta["BIASSEC"],
        trimsec=raw.meta["TRIMSEC"],
        exptime=0.0,
    )
    bare = CCDData(raw.data, unit="adu", meta={})
    rf = types.SimpleNamespace(frame=bare, info=info, path="x.fits.fz")
    a = calib.process_ccd(rf)
    b = calib.process_ccd(raw)
    np.testing.assert_array_equal(a.data, b.data)
    rec = read_provenance(a.meta)[-1]
    assert rec["step"] == "nres.calib.process_ccd" and rec["overscan"] == "row"
    assert rec["variance_formula"] == "poisson"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"GAIN": None}, "gain"),
        ({"BIASSEC": "[1:2 3:4]"}, "biassec"),
        ({"TRIMSEC": f"[1:{NX},1:{NY + 5}]"}, "trimsec"),
        ({"EXPTIME": "long"}, "exptime"),
    ],
)
def test_bad_headers_raise(rng, change, match):
    raw = make_raw(rng)
    for k, v in change.items():
        if v is None:
            del raw.meta[k]
        else:
            raw.meta[k] = v
    with pytest.raises(InvalidParameterError, match=match):
        calib.process_ccd(raw)


def test_bad_arguments_raise(rng):
    raw = make_raw(rng)
    with pytest.raises(InvalidParameterError, match="bias"):
        calib.process_ccd(raw, bias=CCDData(np.zeros((3, 3)), unit="electron"))
    with pytest.raises(InvalidParameterError, match="bpm"):
        calib.process_ccd(raw, bpm=np.zeros((NY, NX + 1)))
    with pytest.raises(InvalidParameterError, match="overscan"):
        calib.process_ccd(raw, overscan="median")
    with pytest.raises(InvalidParameterError, match="unknown parameter"):
        calib.process_ccd(raw, gian=2.0)
    with pytest.raises(InvalidParameterError, match="raw"):
        calib.process_ccd(np.zeros((4, 4)))
    with pytest.raises(InvalidParameterError, match="biassec"):
        calib.process_ccd(raw, biassec=f"[{NX + 1}:{NX + NBIAS},10:{NY}]")  # does not cover trimsec rows


def test_parse_section_is_the_io_parser_and_passes_slices_through():
    from nres.io.sections import parse_section as io_parse

    for text in ("[4103:4160,1:4096]", " [1:80, 1:64] "):
        assert calib.parse_section(text) == io_parse(text)
    assert calib.parse_section("[4103:4160,1:4096]") == (slice(0, 4096), slice(4102, 4160))
    parsed = (slice(2, 5), slice(0, 3))
    assert calib.parse_section(parsed) is parsed
    with pytest.raises(InvalidParameterError, match="biassec"):
        calib.parse_section("[10:1,1:5]", name="biassec")
