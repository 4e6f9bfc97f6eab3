"""Legacy paths against the GDL run of the original's thar_catalog and matchline (idl_reference/thar).

Fixture ``tests/data/wavecal_thar_catalog_gdl.npz``: 8 of the 67 input orders (float32, as given
to GDL), the GDL catalogue rows of those orders, and GDL's pair-voting arrays of order index 38.
"""

from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import VarianceUncertainty

from nres.spectrum import EchelleSpectrum
from nres.wavecal import find_lines
from nres.wavecal.idl_catalog import thar_catalog

DATA = Path(__file__).parents[1] / "data" / "wavecal_thar_catalog_gdl.npz"


@pytest.fixture(scope="module")
def gdl():
    return np.load(DATA)


def test_thar_catalog_reproduces_gdl(gdl):
    cat = thar_catalog(gdl["in_tharspec"].astype(np.float64))
    ref = gdl["out_catalog_gsw0"]
    # the same lines in the same orders
    assert cat["xpos"].size == ref.shape[0]
    np.testing.assert_array_equal(gdl["orders_index"][cat["row"]], ref[:, 0])
    # GDL computes in float32 (input and smoothing): positions agree to 2e-4 px (1.2e-4 measured),
    # amplitudes to 5e-6 relative, widths to 2e-5 px
    np.testing.assert_allclose(cat["xpos"], ref[:, 1], atol=2e-4)
    np.testing.assert_allclose(cat["amp"], ref[:, 2], rtol=5e-6)
    np.testing.assert_allclose(cat["wid"], ref[:, 3], atol=2e-5)


def test_find_lines_idl3pt_is_thar_catalog(gdl):
    flux = gdl["in_tharspec"].astype(np.float64)
    orders = 52 + gdl["orders_index"]
    spec = EchelleSpectrum(
        flux[None], uncertainty=VarianceUncertainty(flux[None] + 25.0), orders=orders, fibers=[1]
    )
    found = find_lines(spec, centroid="idl3pt")
    ref = gdl["out_catalog_gsw0"]
    assert len(found) == ref.shape[0]
    np.testing.assert_array_equal(found["order"], 52 + ref[:, 0])
    np.testing.assert_allclose(found["x"], ref[:, 1], atol=2e-4)
    legacy = find_lines(spec, legacy=True)
    np.testing.assert_array_equal(legacy["x"], found["x"])


def test_pair_votes_reproduce_gdl_matchline(gdl):
    from nres.wavecal.idl_match import line_pairs, pair_votes, vote_matches

    parm, indx = line_pairs(gdl["ml_lamg"])
    np.testing.assert_array_equal(indx, gdl["ml_lineseg_obs_indx"])
    # float32 pair parameters as IDL's (same rounding up to one unit in the last place)
    np.testing.assert_allclose(parm, gdl["ml_lineseg_obs_parm"], rtol=2e-7)
    votes = pair_votes(gdl["ml_lamg"], gdl["ml_lamlist"])
    np.testing.assert_array_equal(votes, gdl["ml_votes"])
    # the accepted matches are list lines within 0.02 nm of the first-guess wavelengths
    idx = vote_matches(gdl["ml_lamg"], gdl["ml_lamlist"])
    assert np.sum(idx >= 0) >= 20
    assert np.all(np.abs(gdl["ml_lamg"][idx >= 0] - gdl["ml_lamlist"][idx[idx >= 0]]) < 0.02)
