"""flag_cosmic_rays: injected hits found, narrow orders and lines left alone."""

import numpy as np
from astropy.nddata import CCDData, VarianceUncertainty

from nres.calib import flag_cosmic_rays
from nres.flags import Flag


def test_injected_cosmic_rays_flagged_orders_kept():
    rng = np.random.default_rng(7)
    ny, nx, rn = 160, 200, 7.0
    y = np.arange(ny)[:, None]
    truth = 20.0 + np.zeros((ny, nx))
    for yc in (30.3, 70.8, 110.1, 140.6):  # NRES-like orders: Gaussian sigma 1.5 px, bright
        truth += 3000.0 * np.exp(-0.5 * ((y - yc) / 1.5) ** 2)
    data = rng.poisson(truth) + rng.normal(0, rn, truth.shape)
    hits = np.zeros(truth.shape, bool)
    for _ in range(25):
        hy, hx = rng.integers(3, ny - 3), rng.integers(3, nx - 3)
        if np.abs(np.array([30.3, 70.8, 110.1, 140.6]) - hy).min() < 6:
            continue  # hits on top of orders are not what this test measures
        hits[hy, hx] = True
        if rng.random() < 0.5:
            hits[hy, hx + 1] = True
    data[hits] += rng.uniform(800, 5000, hits.sum())
    frame = CCDData(
        data, unit="electron", uncertainty=VarianceUncertainty(truth + rn**2), meta={"RDNOISE": rn}
    )
    out = flag_cosmic_rays(frame)
    cr = (out.flags & Flag.COSMIC_RAY) != 0
    # L.A.Cosmic finds essentially all isolated sharp hits at these amplitudes (> 100 sigma)
    assert cr[hits].mean() >= 0.95
    # and almost nothing else: at most 0.05% of the other pixels (15 of 32000)
    assert cr[~hits].sum() <= 15
    np.testing.assert_array_equal(out.data, frame.data)  # data untouched, only flags
    assert np.array_equal(out.mask, cr)
    assert frame.mask is None
