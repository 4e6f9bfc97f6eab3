"""nres.pipeline.products: atomic writing and product names."""

import numpy as np
import pytest
from astropy.io import fits

from nres.errors import InvalidInputFileError, InvalidParameterError
from nres.pipeline.products import (
    atomic_path,
    master_calibration_name,
    product_path,
    reduced_name,
    write_atomic,
    write_fits_atomic,
)


@pytest.mark.parametrize(
    ("raw", "rlevel", "expected"),
    [
        ("lscnrs01-fa09-20190405-0014-e00.fits.fz", 92, "lscnrs01-fa09-20190405-0014-e92"),
        ("/data/raw/lscnrs01-fl09-20171110-0037-e00.fits", 91, "lscnrs01-fl09-20171110-0037-e91"),  # IDL e91
        ("cptnrs03-fa13-20190405-0003-b00.fits.fz", 92, "cptnrs03-fa13-20190405-0003-b92"),
        ("elpnrs02-fa17-20190405-0011-w00.fits", 92, "elpnrs02-fa17-20190405-0011-w92"),
        ("my_frame.fits", 92, "my_frame-r92"),  # not an archive name: never the raw name itself
        ("frame-e00.tar", 92, "frame-e00.tar-r92"),
    ],
)
def test_reduced_name(raw, rlevel, expected):
    assert reduced_name(raw, rlevel=rlevel) == expected


def test_product_path_and_master_names(tmp_path):
    raw = "lscnrs01-fa09-20190405-0014-e00.fits.fz"
    assert product_path(raw, "1d", tmp_path) == tmp_path / "lscnrs01-fa09-20190405-0014-e92-1d.fits"
    assert product_path(raw, "2d", tmp_path).name == "lscnrs01-fa09-20190405-0014-e92-2d.fits.fz"
    assert product_path(raw, "e91", tmp_path, rlevel=91).name == "lscnrs01-fa09-20190405-0014-e91.fits"
    with pytest.raises(InvalidParameterError, match="kind"):
        product_path(raw, "3d", tmp_path)
    with pytest.raises(InvalidParameterError, match="rlevel"):
        reduced_name(raw, rlevel=100)
    name = master_calibration_name(
        "LAMPFLAT", site="lsc", instrument="nres01", camera="fa09", day_obs="2019-04-05", fiber_state="110"
    )
    assert name == "lampflat_lsc_nres01_fa09_20190405_110.fits"
    assert master_calibration_name(
        "BIAS", site="LSC", instrument="NRES01", camera="fa09", day_obs="20190405"
    ) == ("bias_lsc_nres01_fa09_20190405.fits")
    with pytest.raises(InvalidParameterError, match="day_obs"):
        master_calibration_name("BIAS", site="lsc", instrument="nres01", camera="fa09", day_obs="190405")


def test_atomic_path_replaces_only_on_success(tmp_path):
    dest = tmp_path / "sub" / "product.txt"
    write_atomic(dest, "old")
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.endswith(dest.name) and tmp != dest
        tmp.write_text("new")
        assert dest.read_text() == "old"  # not visible before the block ends
    assert dest.read_text() == "new"
    with pytest.raises(RuntimeError, match="writer crashed"), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert dest.read_text() == "new"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["product.txt"]  # no temporary left
    with pytest.raises(InvalidInputFileError, match="exists"):
        write_atomic(dest, b"x", overwrite=False)
    with pytest.raises(InvalidInputFileError, match="no file"), atomic_path(tmp_path / "nothing.txt"):
        pass


def test_write_fits_atomic_round_trip_with_checksums(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = write_fits_atomic(fits.HDUList([fits.PrimaryHDU(data)]), tmp_path / "p.fits")
    with fits.open(path, checksum=True) as hdul:
        assert "CHECKSUM" in hdul[0].header and "DATASUM" in hdul[0].header
        np.testing.assert_array_equal(hdul[0].data, data)
