"""wavecal._robust.clipped_lstsq: the clipped fit shared by fiber offsets and drift."""

import numpy as np
import pytest

from nres.errors import FitError
from nres.wavecal._robust import clipped_lstsq


def _line(n=50, seed=3):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.0, n)
    design = np.stack([np.ones(n), x], axis=1)
    err = np.full(n, 0.01)
    y = 0.3 + 2.0 * x + rng.normal(0.0, 0.01, n)
    return design, y, err


def test_outliers_clipped_and_coefficients_belong_to_the_used_set():
    design, y, err = _line()
    y = y.copy()
    y[[5, 20]] += 1.0  # 100 sigma
    coef, used, resid = clipped_lstsq(
        design, y, err, 1.0 / err**2, clip=5.0, max_iter=10, min_used=3, who="t"
    )
    assert not used[5] and not used[20] and used.sum() == y.size - 2
    # the returned coefficients are the plain weighted fit of the used points
    ref = np.linalg.lstsq(design[used], y[used], rcond=None)[0]
    np.testing.assert_allclose(coef, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(resid, y - design @ coef, rtol=0, atol=1e-12)
    # 48 points of 0.01 scatter: the slope's standard error is ~0.0025; 5 of them
    assert abs(coef[1] - 2.0) < 0.0125 and abs(coef[0] - 0.3) < 0.0075


def test_noiseless_data_keep_every_point_and_exact_coefficients():
    design, _, err = _line()
    y = design @ np.array([0.3, 2.0])
    coef, used, _ = clipped_lstsq(design, y, err, 1.0 / err**2, clip=5.0, max_iter=10, min_used=3, who="t")
    assert used.all()
    np.testing.assert_allclose(coef, [0.3, 2.0], rtol=0, atol=1e-12)


def test_too_few_points_after_clipping_raise_naming_the_caller():
    design, y, err = _line(n=9)
    y = y.copy()
    y[4] += 1.0  # one 100-sigma outlier at x = 0 is clipped: 8 points left, fewer than min_used=9
    with pytest.raises(FitError, match="measure_thing: only"):
        clipped_lstsq(design, y, err, 1.0 / err**2, clip=3.0, max_iter=10, min_used=9, who="measure_thing")
