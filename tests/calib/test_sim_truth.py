"""process_ccd on full raw frames of the simulator (nres.sim) against its truth.

Four full-frame raw simulations (BIAS, DARK, two DOUBLE arcs; ~5 s each), shared per module.
Truth: the simulator draws read noise RDNOISE (e-) in ADU = RDNOISE / GAIN, adds a bias level
that varies along rows in overscan and data alike, rounds to ADU, and adds dark current at
``SimConfig.dark_current`` e-/s plus hot pixels and dead columns (``nres.sim.detector.defects``),
cosmic rays and bleed trails (``Truth.cosmic_rays`` / ``Truth.bleed``).
"""

import numpy as np
import pytest

import nres.calib as calib
from nres.flags import Flag
from nres.sim import simulate
from nres.sim.config import SimConfig
from nres.sim.detector import defects

CFG = SimConfig()


def _defects_mask(seed):
    """Dead columns (from their first row up) and hot pixels of a simulated frame (truth)."""
    bad_x, bad_y0, hot_y, hot_x, _ = defects(seed, CFG.n_bad_columns, CFG.n_hot_pixels)
    m = np.zeros((4096, 4096), bool)
    for bx, by in zip(bad_x, bad_y0, strict=True):
        m[by:, bx] = True
    m[hot_y, hot_x] = True
    return m


@pytest.fixture(scope="module")
def bias_frame():
    raw, truth = simulate("BIAS", seed=11, raw=True)
    return raw, calib.process_ccd(raw)


@pytest.fixture(scope="module")
def read_noise_adu(bias_frame):
    """Read noise (ADU) measured on the processed bias: residual about each row's mean."""
    raw, frame = bias_frame
    d = frame.data / raw.meta["GAIN"]
    r = d - d.mean(axis=1, keepdims=True)
    # variance = (rn^2 + 1/12 rounding) * (1 - 1/nx); return the rounding-free rn
    return np.sqrt(r.var() / (1 - 1 / d.shape[1]) - 1 / 12)


def test_bias_level_removed_within_4_standard_errors(bias_frame):
    raw, frame = bias_frame
    gain, rn = raw.meta["GAIN"], raw.meta["RDNOISE"]
    assert frame.shape == (4096, 4096) and not frame.mask.any()
    # the overscan level (per-row clipped mean, 58 columns, 17-row running mean) carries the
    # error of ~58 x 4096 overscan pixels; the data mean adds that of 4096^2 pixels. 1.05: the
    # 3-sigma clipped mean's variance is ~3% above the plain mean's (Gaussian efficiency).
    n_over = 58 * 4096
    se = 1.05 * rn * np.sqrt(1 / n_over + 1 / frame.data.size) + gain * np.sqrt(1 / 12 / frame.data.size)
    assert abs(frame.data.mean()) < 4 * se
    # and row by row the true bias (level + 1.5 ADU sine along rows) is followed: residual row
    # means scatter like the overscan level's noise (~rn / sqrt(58 x 17) e-), no 1.5 ADU pattern
    rows = frame.data.mean(axis=1)
    assert np.std(rows) < 3 * rn / np.sqrt(58 * 17) + rn / np.sqrt(4096)


def test_read_noise_recovered_within_4_standard_errors(bias_frame, read_noise_adu):
    raw, frame = bias_frame
    gain, rn = raw.meta["GAIN"], raw.meta["RDNOISE"]
    n = frame.data.size
    # SE of a Gaussian standard deviation from n values: sigma / sqrt(2 n)
    se = rn / np.sqrt(2 * n)
    assert abs(read_noise_adu * gain - rn) < 4 * se
    # the variance plane of the processed bias is rn^2 (no signal)
    np.testing.assert_allclose(np.median(frame.uncertainty.array), rn**2, rtol=1e-3)


@pytest.fixture(scope="module")
def dark_frame():
    raw, truth = simulate("DARK", seed=12, raw=True)
    return raw, truth, calib.process_ccd(raw)


def test_dark_rate_recovered_within_4_standard_errors(dark_frame):
    raw, truth, frame = dark_frame
    t, rn, gain = raw.meta["EXPTIME"], raw.meta["RDNOISE"], raw.meta["GAIN"]
    good = ~(_defects_mask(12) | truth.cosmic_rays | frame.mask)
    n = good.sum()
    rate = frame.data[good].mean() / t
    signal = CFG.dark_current * t
    # per-pixel variance: read noise + Poisson dark + ADU rounding; plus the overscan level error
    se = np.sqrt((rn**2 + signal + gain**2 / 12) / n + 1.05**2 * rn**2 / (58 * 4096)) / t
    assert abs(rate - CFG.dark_current) < 4 * se


def test_cosmic_ray_saturation_flagged_where_raw_saturates(dark_frame):
    raw, truth, frame = dark_frame
    sat = raw.data[:4096, :4096] >= raw.meta["SATURATE"]
    assert sat.any()
    saturated = (frame.flags & Flag.SATURATED) != 0
    np.testing.assert_array_equal(saturated, sat)
    assert truth.cosmic_rays[sat].all()  # in a dark, only cosmic rays saturate
    assert frame.mask[sat].all()


@pytest.fixture(scope="module")
def arcs():
    out = []
    for seed in (21, 22):
        raw, truth = simulate("DOUBLE", seed=seed, raw=True)
        out.append((raw, truth, calib.process_ccd(raw)))
    return out


def test_bleed_trails_of_the_truth_flagged(arcs):
    for raw, truth, frame in arcs:
        assert truth.bleed.sum() > 20
        flagged = (frame.flags & (Flag.BLEED | Flag.SATURATED)) != 0
        # every bled pixel is flagged (BLEED, or SATURATED where the charge filled it)
        assert flagged[truth.bleed].all()
        assert frame.mask[truth.bleed].all()
        # and flagged bleed stays near the true trails or saturated pixels (cosmic rays too):
        # the 2-px pad along the column and the non-linear wings are the only extra pixels
        bleed = (frame.flags & Flag.BLEED) != 0
        src = truth.bleed | (raw.data[:4096, :4096] >= raw.meta["SATURATE"])
        near = src | (raw.data[:4096, :4096] > raw.meta["MAXLIN"])
        for k in (1, 2):
            near |= np.roll(src, k, 0) | np.roll(src, -k, 0)
        assert (bleed & ~near).sum() <= 0.01 * bleed.sum()


def test_gain_recovered_from_a_pair_of_arcs_within_4_standard_errors(arcs, read_noise_adu):
    (ra, ta, fa), (rb, tb, fb) = arcs
    gain = ra.meta["GAIN"]
    # same expected image, independent noise: var(A - B) / 2 = S / g + rn^2 + 1/12 (in ADU)
    a, b = fa.data / gain, fb.data / gain
    bad = fa.mask | fb.mask | ta.cosmic_rays | tb.cosmic_rays | _defects_mask(21) | _defects_mask(22)
    m = 0.5 * (a + b)
    ok = ~bad & (m > 300.0) & (m < 0.8 * ra.meta["MAXLIN"])  # signal-dominated, linear
    q = 0.5 * (a - b)[ok] ** 2 - read_noise_adu**2 - 1 / 12
    s = m[ok]
    g = s.sum() / q.sum()
    # delta-method SE of the ratio estimator from the per-pixel residuals q - s / g
    se = g * np.std(q - s / g) * np.sqrt(ok.sum()) / q.sum()
    assert ok.sum() > 10_000
    assert abs(g - gain) < 4 * se


def test_stack_rejects_the_simulated_cosmic_rays():
    # five windowed processed-like darks (different seeds: independent noise and cosmic rays)
    window = (1000, 1200, 1500, 1800)
    sims = [simulate("DARK", seed=s, window=window) for s in range(31, 36)]
    frames = []
    for f, _ in sims:
        f = f.copy()
        f.mask = None  # keep every input pixel: the stack alone has to reject the cosmic rays
        frames.append(f)
    hits = np.array([t.cosmic_rays for _, t in sims])
    # strong hits only (the simulator's track wings deposit a few e-, within the noise)
    strong = hits & (np.array([f.data for f in frames]) > 200.0)
    single = strong.sum(axis=0) == 1
    assert single.sum() > 20
    master, ngood = calib.stack(frames, return_ngood=True)
    assert np.all(ngood[single] <= 4)  # the hit input is rejected
    clean = np.median(np.array([f.data for f in frames]), axis=0)
    assert np.all(np.abs(master.data[single] - clean[single]) < 50.0)
