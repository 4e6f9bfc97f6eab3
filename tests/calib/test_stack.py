"""stack: the exact rule, outlier rejection, darks, paths in row slabs, and every bad input."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, NDData, VarianceUncertainty
from astropy.stats import mad_std, sigma_clip

import nres.calib as calib
from nres.errors import InvalidInputFileError, InvalidParameterError
from nres.flags import Flag, flags_to_mask

SHAPE = (24, 30)


def frames(n, rng, *, obstype="BIAS", sigma=2.0, var=4.0, **meta):
    out = []
    for _ in range(n):
        hdr = {"OBSTYPE": obstype, "INSTRUME": "fa09", "CCDSUM": "1 1", "OBJECTS": "none&none&none", **meta}
        d = 10.0 + rng.normal(0.0, sigma, SHAPE) if sigma else np.full(SHAPE, 10.0)
        out.append(
            CCDData(d, unit="electron", uncertainty=VarianceUncertainty(np.full(SHAPE, var)), meta=hdr)
        )
    return out


@pytest.mark.parametrize("n", [5, 6])
def test_sigma_clip_equals_astropy_one_pass(rng, n):
    fr = frames(n, rng)
    cube = np.stack([f.data for f in fr])
    cube[rng.random(cube.shape) < 0.1] += 40.0
    for f, c in zip(fr, cube, strict=True):
        f.data = c
    got, ngood = calib.stack(fr, return_ngood=True)
    ref = sigma_clip(cube, sigma=3.0, maxiters=1, cenfunc="median", stdfunc=mad_std, axis=0)
    # independent implementation (astropy), same arithmetic up to summation order
    np.testing.assert_allclose(got.data, ref.mean(axis=0).filled(np.nan), rtol=1e-12)
    np.testing.assert_array_equal(ngood, (~ref.mask).sum(axis=0))
    np.testing.assert_allclose(got.uncertainty.array, 4.0 / ngood, rtol=1e-12)
    assert got.meta["NCOMBINE"] == n


def test_injected_outliers_rejected_exactly(rng):
    # noiseless frames (MAD = 0): every outlier is rejected, the rest survive exactly
    fr = frames(6, rng, sigma=0)
    hits = [(0, 3, 4), (2, 3, 4), (5, 10, 11), (1, 0, 0)]
    for i, y, x in hits:
        fr[i].data[y, x] = 1e4
    out, ngood = calib.stack(fr, return_ngood=True)
    np.testing.assert_array_equal(out.data, 10.0)
    expect = np.full(SHAPE, 6)
    expect[3, 4], expect[10, 11], expect[0, 0] = 4, 5, 5
    np.testing.assert_array_equal(ngood, expect)
    assert not out.mask.any()


def test_median_rules_and_methods(rng):
    fr = frames(6, rng, sigma=0)
    for k, f in enumerate(fr):
        f.data = np.full(SHAPE, float(k))  # values 0..5
    assert np.all(calib.stack(fr, method="median").data == 2.5)
    assert np.all(calib.stack(fr, method="median", median_rule="idl").data == 3.0)  # upper middle
    assert np.all(calib.stack(fr, method="median", legacy=True).data == 3.0)
    assert np.all(calib.stack(fr, method="mean").data == 2.5)
    np.testing.assert_allclose(calib.stack(fr, method="mean").uncertainty.array, 4.0 / 6)


def test_no_survivor_is_masked_with_reasons(rng):
    fr = frames(5, rng, sigma=0)
    for f in fr:
        f.mask = np.zeros(SHAPE, bool)
        f.mask[7, 8] = True
        f.flags = np.zeros(SHAPE, np.uint16)
        f.flags[7, 8] = Flag.SATURATED
    fr[0].data[1, 1] = np.nan
    out, ngood = calib.stack(fr, return_ngood=True)
    assert ngood[7, 8] == 0 and out.mask[7, 8] and ngood[1, 1] == 4
    assert out.flags[7, 8] == Flag.NO_WEIGHT | Flag.SATURATED
    assert out.mask.sum() == 1
    np.testing.assert_array_equal(out.mask, flags_to_mask(out.flags))
    assert ngood.dtype == np.int16 and out.meta["NGOODMIN"] == 0 and out.meta["NGOODMAX"] == 5


def test_darks_normalised_by_exposure_time(rng):
    fr = []
    for t in (100.0, 200.0, 300.0):
        f = frames(1, rng, obstype="DARK", sigma=0, var=t)[0]
        f.data = np.full(SHAPE, 0.25 * t)
        f.meta["EXPTIME"] = t
        fr.append(f)
    out = calib.stack(fr)
    np.testing.assert_allclose(out.data, 0.25, rtol=1e-14)
    # variance / t^2 per frame, sum / N^2
    np.testing.assert_allclose(out.uncertainty.array, (1 / 100 + 1 / 200 + 1 / 300) / 9, rtol=1e-12)
    assert out.meta["EXPTIME"] == 1.0 and out.unit == "electron / s"


def _write(frames_, tmp_path, compressed):
    paths = []
    for k, f in enumerate(frames_):
        hdr = fits.Header(f.meta)
        if compressed:
            hl = [
                fits.PrimaryHDU(header=hdr),
                fits.CompImageHDU(
                    f.data.astype(np.float32), name="SCI", compression_type="GZIP_1", quantize_level=0.0
                ),
            ]
        else:
            hl = [fits.PrimaryHDU(f.data.astype(np.float32), header=hdr)]
        uh = fits.ImageHDU(f.uncertainty.array.astype(np.float32), name="UNCERT")
        uh.header["UTYPE"] = "VarianceUncertainty"
        hl += [uh, fits.ImageHDU(f.mask.astype(np.uint8), name="MASK")]
        p = tmp_path / f"f{k}.fits"
        fits.HDUList(hl).writeto(p)
        paths.append(p)
    return paths


@pytest.mark.parametrize("compressed", [False, True])
def test_paths_in_row_slabs_equal_in_memory(rng, tmp_path, compressed):
    fr = frames(5, rng)
    for f in fr:
        f.data = f.data.astype(np.float32).astype(np.float64)  # what a float32 file holds
        f.mask = rng.random(SHAPE) < 0.05
    paths = _write(fr, tmp_path, compressed)
    mem = calib.stack(fr)
    # 5 frames x 30 columns x 17 bytes = 2550 bytes per row: 3 rows per slab, 8 slabs
    disk = calib.stack([str(p) for p in paths], max_slab_bytes=8000)
    # lossless tiles (no quantisation): bit-identical to the in-memory stack
    np.testing.assert_array_equal(disk.data, mem.data)
    np.testing.assert_array_equal(disk.mask, mem.mask)
    assert disk.meta["NCOMBINE"] == 5


def test_paths_with_std_uncertainty_and_some_masks_equal_in_memory(rng, tmp_path):
    # UNCERT as a standard deviation, MASK in some files only, a partial last slab
    fr = frames(6, rng, obstype="DARK", EXPTIME=30.0)
    paths = []
    for k, f in enumerate(fr):
        f.data = f.data.astype(np.float32).astype(np.float64)
        sd = rng.uniform(1.0, 3.0, SHAPE).astype(np.float32)
        f.uncertainty = VarianceUncertainty(sd.astype(np.float64) ** 2)
        hl = [fits.PrimaryHDU(f.data.astype(np.float32), header=fits.Header(f.meta))]
        uh = fits.ImageHDU(sd, name="UNCERT")
        uh.header["UTYPE"] = "StdDevUncertainty"
        hl.append(uh)
        if k % 2 == 0:
            f.mask = rng.random(SHAPE) < 0.05
            hl.append(fits.ImageHDU(f.mask.astype(np.uint8), name="MASK"))
        paths.append(tmp_path / f"d{k}.fits")
        fits.HDUList(hl).writeto(paths[-1])
    mem, ng_mem = calib.stack(fr, return_ngood=True)
    # 6 frames x 30 columns x 17 bytes = 3060 bytes per row: 7 rows per slab, the last one 3 rows
    for slab in (22_000, 4_000_000):
        disk, ng_disk = calib.stack(paths, max_slab_bytes=slab, return_ngood=True)
        np.testing.assert_array_equal(disk.data, mem.data)
        np.testing.assert_array_equal(disk.uncertainty.array, mem.uncertainty.array)
        np.testing.assert_array_equal(ng_disk, ng_mem)
    assert ng_mem.min() < 6  # masks really removed inputs


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda fr: fr.pop(), "at least 5"),
        (lambda fr: fr[1].meta.update(INSTRUME="fa13"), "INSTRUME"),
        (lambda fr: fr[2].meta.update(CCDSUM="2 2"), "CCDSUM"),
        (lambda fr: fr[2].meta.update(OBJECTS="tung&tung&none"), "OBJECTS"),
        (lambda fr: fr[3].meta.update(OBSTYPE="DARK"), "OBSTYPE"),
        (lambda fr: setattr(fr[0], "uncertainty", None), "variance"),
        (lambda fr: fr.__setitem__(4, CCDData(np.zeros((3, 3)), unit="electron", meta=fr[4].meta)), "shape"),
        (lambda fr: fr.__setitem__(4, "/nonexistent.fits"), "mix"),
        (
            lambda fr: fr.__setitem__(
                1, NDData(fr[1].data, uncertainty=fr[1].uncertainty, mask=np.zeros((3, 3), bool))
            ),
            "mask shape",
        ),
    ],
)
def test_bad_inputs_raise_before_work(rng, mutate, match):
    fr = frames(5, rng)
    mutate(fr)
    snapshot = [f.data.copy() for f in fr if isinstance(f, NDData)]
    with pytest.raises(InvalidParameterError, match=match):
        calib.stack(fr)
    assert all(
        np.array_equal(a, f.data)
        for a, f in zip(snapshot, [f for f in fr if isinstance(f, NDData)], strict=True)
    )


def test_other_bad_inputs(rng, tmp_path):
    with pytest.raises(InvalidParameterError, match="at least 3"):
        calib.stack(frames(2, rng, obstype="DARK", EXPTIME=10.0))
    with pytest.raises(InvalidParameterError, match="EXPTIME"):
        calib.stack(frames(3, rng, obstype="DARK"))
    assert calib.stack(frames(2, rng), min_frames=2).meta["NCOMBINE"] == 2  # override
    with pytest.raises(InvalidParameterError, match="method"):
        calib.stack(frames(5, rng), method="median_of_means")
    with pytest.raises(InvalidInputFileError, match="not found"):
        calib.stack([tmp_path / "missing.fits"] * 5)
    with pytest.raises(InvalidParameterError, match="at least one"):
        calib.stack([])


def test_flats_grouped_by_fiber_state_then_stacked(rng, tmp_path):
    a = frames(5, rng, obstype="LAMPFLAT", sigma=0, OBJECTS="tung&tung&none")
    b = frames(5, rng, obstype="LAMPFLAT", sigma=0, OBJECTS="none&tung&tung")
    for f in b:
        f.data = f.data * 2.0
    mixed = [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4]]
    with pytest.raises(InvalidParameterError, match="OBJECTS"):
        calib.stack(mixed)  # a mixed set is refused
    groups = calib.group_by_fiber_state(mixed)
    assert list(groups) == ["tung&tung&none", "none&tung&tung"]
    assert groups["tung&tung&none"] == a and groups["none&tung&tung"] == b  # order kept
    masters = {s: calib.stack(g) for s, g in groups.items()}
    assert np.all(masters["tung&tung&none"].data == 10.0) and np.all(masters["none&tung&tung"].data == 20.0)
    path = tmp_path / "flat.fits"
    fits.PrimaryHDU(np.zeros((2, 2)), header=fits.Header({"OBJECTS": " Tung&tung&none "})).writeto(path)
    assert calib.fiber_state(path) == "tung&tung&none"
    bad = frames(1, rng)[0]
    del bad.meta["OBJECTS"]
    with pytest.raises(InvalidParameterError, match="OBJECTS"):
        calib.group_by_fiber_state([a[0], bad])
    with pytest.raises(InvalidInputFileError):
        calib.fiber_state(tmp_path / "missing.fits")
