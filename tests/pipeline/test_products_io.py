"""nres.pipeline.frames I/O: plain float32 masters (memory-mapped reads), compressed .fz frames, cache."""

import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty

from nres.flags import Flag
from nres.pipeline import frames
from nres.pipeline.frames import read_frame, read_master, write_frame


def _frame(seed=0, shape=(40, 56)):
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 10.0, shape)
    flags = np.zeros(shape, np.uint16)
    flags[3, 5] = int(Flag.SATURATED)
    flags[7, :] = int(Flag.BAD_PIXEL)
    frame = CCDData(data, unit="electron", uncertainty=VarianceUncertainty(data + 25.0),
                    mask=flags != 0, meta={"OBSTYPE": "BIAS", "EXPTIME": 0.0})  # fmt: skip
    frame.flags = flags
    return frame, rng.integers(0, 5, shape).astype(np.int16)


@pytest.mark.parametrize(("name", "compressed"), [("m.fits", False), ("f-2d.fits.fz", True)])
def test_round_trip_layout_by_suffix(tmp_path, name, compressed):
    frame, ngood = _frame()
    path = write_frame(frame, tmp_path / name, ngood=ngood)
    with fits.open(path) as hdul:
        kinds = {h.name: isinstance(h, fits.CompImageHDU) for h in hdul[1:]}
    assert set(kinds) == {"SCI", "UNCERT", "MASK", "FLAGS", "NGOOD"}
    assert all(v == compressed for v in kinds.values())
    back, ng = read_frame(path, with_ngood=True)
    # float32 on disk: values equal the float32-rounded input exactly (lossless either way)
    np.testing.assert_array_equal(back.data, frame.data.astype(np.float32))
    np.testing.assert_array_equal(back.uncertainty.array, frame.uncertainty.array.astype(np.float32))
    np.testing.assert_array_equal(back.flags, frame.flags)
    np.testing.assert_array_equal(back.mask, frame.mask)
    np.testing.assert_array_equal(ng, ngood)
    assert back.data.dtype == np.float64 and back.data.flags.writeable
    assert back.meta["OBSTYPE"] == "BIAS"


def test_compress_option_overrides_suffix(tmp_path):
    frame, _ = _frame()
    path = write_frame(frame, tmp_path / "m.fits", compress=True)
    with fits.open(path) as hdul:
        assert isinstance(hdul["SCI"], fits.CompImageHDU)
    np.testing.assert_array_equal(read_frame(path).data, frame.data.astype(np.float32))


def test_read_master_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "_MASTER_CACHE", {})
    monkeypatch.setattr(frames, "MASTER_CACHE_SIZE", 2)
    frame, _ = _frame(1)
    path = write_frame(frame, tmp_path / "bias.fits")
    a = read_master(path)
    assert read_master(path) is a  # the second call does not read the file
    with pytest.raises(ValueError, match="read-only"):
        a.data[0, 0] = 0.0  # shared between frames: in-place changes must fail
    # a rewritten master (new mtime) is read again
    frame2, _ = _frame(2)
    write_frame(frame2, path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    b = read_master(path)
    assert b is not a
    np.testing.assert_array_equal(b.data, frame2.data.astype(np.float32))
    # bounded: the least recently used entry goes
    others = [write_frame(_frame(k)[0], tmp_path / f"m{k}.fits") for k in (3, 4)]
    for p in others:
        read_master(p)
    assert len(frames._MASTER_CACHE) == 2
    assert read_master(path) is not b


def test_read_master_missing(tmp_path):
    from nres.errors import InvalidInputFileError

    with pytest.raises(InvalidInputFileError, match="not found"):
        read_master(tmp_path / "nope.fits")
