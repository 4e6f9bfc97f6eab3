"""LineMask readers on real mask subsets (tests/data/rv_mask_*)."""

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from nres.errors import InvalidInputFileError
from nres.rv import LineMask

DATA = Path(__file__).parents[1] / "data"


def test_read_ceres_text_mask():
    m = LineMask.read(DATA / "rv_mask_G2_subset.mas", wavelength_medium="air")
    raw = np.loadtxt(DATA / "rv_mask_G2_subset.mas")
    assert len(m) == raw.shape[0] == 136
    # centre = mean of the hole edges, width = their difference, Angstrom -> nm exactly
    np.testing.assert_allclose(m.wavelength.to_value(u.nm), np.sort(raw[:, :2].mean(1)) / 10, rtol=1e-15)
    assert m.width is not None and np.all(m.width.to_value(u.nm) > 0)
    assert m.wavelength_medium == "air" and m.wavelength_frame == "barycentric"


def test_read_espresso_fits_mask_and_convert_medium():
    m = LineMask.read(DATA / "rv_mask_HARPS_G2_subset.fits", wavelength_medium="air")
    assert len(m) == 41 and m.width is None
    assert m.wavelength.to_value(u.nm).min() >= 500.0
    vac = m.to_medium("vacuum")
    # air -> vacuum at 500 nm lengthens by n - 1 = 2.79e-4 (Edlen 1966), to 3e-6 relative
    shift = (vac.wavelength - m.wavelength).to_value(u.nm)
    assert np.all(np.abs(shift / m.wavelength.to_value(u.nm) - 2.79e-4) < 3e-6)
    assert "converted" in vac.meta


def test_read_rejects_bad_files(tmp_path):
    with pytest.raises(InvalidInputFileError):
        LineMask.read(tmp_path / "none.mas", wavelength_medium="air")
    bad = tmp_path / "bad.mas"
    bad.write_text("5000.0 4999.0 1.0\n")
    with pytest.raises(InvalidInputFileError, match="lambda_high"):
        LineMask.read(bad, wavelength_medium="air")
