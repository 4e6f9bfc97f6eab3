"""dead_column_mask (row-blocked) against the full-frame reference on injected dead columns."""

import numpy as np

from nres.pipeline.defects import dead_column_mask


def _dead_twin(data, variance, good, min_snr=20.0, max_ratio=0.3, min_pixels=5, min_fraction=0.8):
    """Reference: every test as one full-frame pass, then the per-column start search."""
    ny, nx = data.shape
    nbr = np.full_like(data, np.nan)
    nbr[:, 1:-1] = np.minimum(data[:, :-2], data[:, 2:])
    ok = good & np.isfinite(nbr) & np.isfinite(data)
    noise = np.sqrt(np.maximum(np.nan_to_num(variance, nan=1.0), 1.0))
    with np.errstate(invalid="ignore"):
        signal = ok & (nbr > min_snr * noise)
        low = signal & (data < max_ratio * nbr)
    out = np.zeros((ny, nx), bool)
    for x in range(nx):
        rows = np.flatnonzero(signal[:, x])
        lows = low[rows, x]
        if lows.sum() < min_pixels:
            continue
        frac = np.cumsum(lows[::-1])[::-1] / np.arange(rows.size, 0, -1)
        start = np.flatnonzero((frac >= min_fraction) & lows)
        if start.size and lows[start[0] :].sum() >= min_pixels:
            out[rows[start[0]] :, x] = True
    return out


def test_dead_columns_found_from_their_first_row_and_match_reference():
    rng = np.random.default_rng(3)
    ny, nx = 700, 120  # > one row block (65536 // 120 = 546 rows) so the blocks are joined
    data = rng.normal(2000.0, 45.0, (ny, nx))
    data[300:, 40] *= 0.05  # dead from row 300 up
    data[520:, 90] *= 0.1  # dead from row 520, across the block boundary
    data[10:20, 60] = np.nan  # non-finite pixels and variances are never tested
    var = np.abs(data) + 25.0
    var[30:40, 70] = np.inf
    var[50:60, 71] = np.nan
    good = rng.random((ny, nx)) > 0.01
    got = dead_column_mask(data, var, good)
    np.testing.assert_array_equal(got, _dead_twin(data, var, good))
    assert set(np.flatnonzero(got.any(axis=0))) == {40, 90}
    # injected truth: flagged from the first tested row of the dead part to the top
    assert np.flatnonzero(got[:, 40])[0] in range(300, 303) and got[300 + 3 :, 40].all()
    assert np.flatnonzero(got[:, 90])[0] in range(520, 523) and got[520 + 3 :, 90].all()
