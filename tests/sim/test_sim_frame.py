"""simulate(): windows, determinism, flux bookkeeping, noise, centroids, drift, raw layout."""

import re
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from scipy.special import erf

from nres.flags import Flag
from nres.sim import SimConfig, simulate

CLEAN = SimConfig(cosmic_rate=0.0, n_bad_columns=0, n_hot_pixels=0, dark_current=0.0)
BLUE = {"orders": (109, 111), "columns": (1800, 2312)}
TARGET_WIN = {"orders": (80, 82), "columns": (1900, 2412)}


def phi(z):
    return 0.5 * (1.0 + erf(z / np.sqrt(2.0)))


@pytest.fixture(scope="module")
def full_flat():
    return simulate("LAMPFLAT", seed=5)


def test_window_equals_crop_of_full_frame(full_flat):
    frame, truth = full_flat
    y0, y1, x0, x1 = 1000, 1200, 3000, 3300
    win, wtruth = simulate("LAMPFLAT", seed=5, window=(y0, y1, x0, x1))
    np.testing.assert_array_equal(win.data, frame.data[y0:y1, x0:x1])
    np.testing.assert_array_equal(win.flags, frame.flags[y0:y1, x0:x1])
    np.testing.assert_array_equal(wtruth.cosmic_rays, truth.cosmic_rays[y0:y1, x0:x1])
    assert (win.meta["NRESY0"], win.meta["NRESX0"], win.meta["LTV1"]) == (y0, x0, -x0)
    assert frame.shape == (4096, 4096) and frame.unit == u.electron


def test_target_window_equals_crop_of_larger_window():
    big, tb = simulate("TARGET", seed=2, window=TARGET_WIN)
    y0, y1, x0, x1 = tb.window
    sub = (y0 + 37, y1 - 41, x0 + 100, x1 - 150)
    small, ts = simulate("TARGET", seed=2, window=sub)
    np.testing.assert_array_equal(small.data, big.data[37 : big.shape[0] - 41, 100 : big.shape[1] - 150])
    np.testing.assert_array_equal(small.uncertainty.array, big.uncertainty.array[37:-41, 100:-150])
    np.testing.assert_allclose(ts.z_b, tb.z_b, rtol=0, atol=0)


def test_same_seed_same_frame_other_seed_differs():
    a, ta = simulate("TARGET", seed=3, window=(700, 800, 100, 300))
    b, _ = simulate("TARGET", seed=3, window=(700, 800, 100, 300))
    c, _ = simulate("TARGET", seed=4, window=(700, 800, 100, 300))
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert a.meta["OBJECTS"] == "tauCet&thar&none" and ta.template is not None


def test_thar_expected_electrons_integrate_to_line_fluxes():
    _, truth = simulate("DOUBLE", seed=1, window=BLUE, noiseless=True, config=CLEAN)
    lines = truth.lines_used
    x0, x1 = truth.x[0], truth.x[-1] + 1
    sigma = truth.profile["lsf_sigma"]
    assert len(lines) > 20
    for fiber in (0, 1):
        for order in truth.spectrum_orders:
            sel = (lines["fiber"] == fiber) & (lines["order"] == order)
            # flux of each Gaussian line landing in columns x0..x1-1 (independent closed form)
            xl, fl = lines["x"][sel], lines["electrons"][sel]
            want = np.sum(fl * (phi((x1 - 0.5 - xl) / sigma) - phi((x0 - 0.5 - xl) / sigma)))
            got = truth.expected[fiber, np.searchsorted(truth.spectrum_orders, order)].sum()
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6)
    assert truth.expected[2].sum() == 0.0


def test_image_integrates_to_expected_electrons():
    # a blue order (96 px apart) has no lit neighbour within 60 px: the rows within 25 px of its
    # fibers 0 and 1 hold all their flux (wing sigma 5 px: loss < 1e-6) and nothing else.
    frame, truth = simulate("LAMPFLAT", seed=1, window=BLUE, noiseless=True, scattered=False, config=CLEAN)
    k = int(np.searchsorted(truth.spectrum_orders, 110))
    rows = [truth.centers[(truth.orders == 110) & (truth.fibers == f)][0] for f in (0, 1)]
    lo, hi = int(np.min(rows[1]) - 25), int(np.max(rows[0]) + 26)
    y0 = truth.window[0]
    got = frame.data[lo - y0 : hi - y0].sum()
    want = truth.expected[0, k].sum() + truth.expected[1, k].sum()
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_truth_centres_are_flux_centroids():
    # fiber 0 alone = flat(0, 1) - flat(1, 2) near fiber 0 (fiber 2 is 34 px away: its wing adds < 1e-5)
    a, truth = simulate(
        "LAMPFLAT", seed=1, window=BLUE, fibers=(0, 1), noiseless=True, scattered=False, config=CLEAN
    )
    b, _ = simulate(
        "LAMPFLAT", seed=1, window=BLUE, fibers=(1, 2), noiseless=True, scattered=False, config=CLEAN
    )
    diff = a.data - b.data
    y0 = truth.window[0]
    c = truth.centers[(truth.orders == 110) & (truth.fibers == 0)][0]
    rows = np.arange(diff.shape[0]) + y0
    cols = np.arange(0, diff.shape[1], 37)
    for i in cols:
        sel = np.abs(rows - c[i]) <= 16
        w = diff[sel, i]
        centroid = np.sum(rows[sel] * w) / np.sum(w)
        # truncation at 16 px (3.2 wing sigma) of the symmetric wing moves the centroid < 1e-4 px
        assert abs(centroid - c[i]) < 1e-3
    # the asymmetric profile's centroid is not the trace (mode) position
    mode = truth.geometry["traces"].select(fibers=0, orders=110).center(truth.x)[0]
    assert np.all(np.abs(truth.centers[(truth.orders == 110) & (truth.fibers == 0)][0] - mode) > 0.05)


def test_noise_statistics_match_settings():
    cfg = SimConfig(cosmic_rate=0.0, n_bad_columns=0, n_hot_pixels=0, dark_current=0.0, read_noise=5.0)
    noisy, _ = simulate("LAMPFLAT", seed=8, window=BLUE, config=cfg)
    clean, _ = simulate("LAMPFLAT", seed=8, window=BLUE, config=cfg, noiseless=True)
    ok = ~noisy.mask & (clean.data < 0.9 * 40000 * 3.2)
    r = ((noisy.data - clean.data) / np.sqrt(clean.data + 25.0))[ok]
    n = r.size
    assert n > 100_000
    # normalised residuals: mean 0 (SE 1/sqrt(n)) and variance 1 (SE ~ sqrt(2/n)), at 4 SE
    assert abs(r.mean()) < 4 / np.sqrt(n)
    assert abs(r.var() - 1.0) < 4 * np.sqrt(2.0 / n)
    bias, _ = simulate("BIAS", seed=8, window=(0, 400, 0, 400), config=cfg)
    d = bias.data.ravel()
    assert abs(d.mean()) < 4 * 5.0 / np.sqrt(d.size)
    assert abs(d.std() / 5.0 - 1.0) < 4 / np.sqrt(2 * d.size)


def test_drift_shifts_lines_by_the_stated_amount():
    _, t0 = simulate("DOUBLE", seed=1, window=BLUE, noiseless=True, config=CLEAN)
    _, t1 = simulate("DOUBLE", seed=1, window=BLUE, noiseless=True, config=CLEAN, drift=(0.37, 0.0))
    assert t1.drift == (0.37, 0.0)
    a, b = t0.lines_used, t1.lines_used
    # the drift is added to the distortion offset dx(x), so a line moves by 0.37 / (1 - dx'(x)); the
    # distortion's slope is < 2e-4 per px, hence 1e-4 px
    np.testing.assert_allclose(b["x"] - a["x"], 0.37, atol=1e-4)
    # the rendered line moves too: first moment of an isolated line in the expected electrons
    x = t0.x.astype(float)
    k = np.searchsorted(t0.spectrum_orders, 110)
    i = int(np.argmax(a["electrons"] * ((a["order"] == 110) & (a["fiber"] == 1))))
    sel = np.abs(x - a["x"][i]) < 6
    m0 = np.sum(x[sel] * t0.expected[1, k, sel]) / t0.expected[1, k, sel].sum()
    m1 = np.sum(x[sel] * t1.expected[1, k, sel]) / t1.expected[1, k, sel].sum()
    assert abs((m1 - m0) - 0.37) < 0.02  # blends within 6 px bias the moment by < 0.02 px


def test_detector_effects_are_flagged():
    frame, truth = simulate("DOUBLE", seed=4, window={"orders": (60, 70), "columns": (0, 4096)})
    assert truth.cosmic_rays.any()
    assert np.all(frame.flags[truth.cosmic_rays] & Flag.COSMIC_RAY)
    assert np.all(frame.mask == (frame.flags & ~np.uint16(Flag.NONLINEAR) != 0))
    sat = (frame.flags & Flag.SATURATED) != 0
    assert sat.any() and truth.bleed.any()
    assert np.all(frame.data[sat] == pytest.approx(47500 * 3.2))
    assert truth.scattered_light.min() > 0


def test_raw_layout():
    frame, _ = simulate("BIAS", seed=1, raw=True)
    assert frame.shape == (4108, 4160) and frame.unit == u.adu and frame.data.dtype == np.int32
    over = frame.data[:4096, 4102:4160]
    assert abs(np.median(over) - 1000.0) < 3
    for key in (
        "OBSTYPE",
        "OBJECTS",
        "SITEID",
        "TELESCOP",
        "INSTRUME",
        "DATE-OBS",
        "DAY-OBS",
        "MJD-OBS",
        "EXPTIME",
        "GAIN",
        "RDNOISE",
        "SATURATE",
        "MAXLIN",
        "BIASSEC",
        "TRIMSEC",
    ):
        assert key in frame.meta
    assert frame.meta["BIASSEC"] == "[4103:4160,1:4096]"


def test_sim_never_imports_rv():
    src = Path(__file__).parents[2] / "src" / "nres" / "sim"
    for path in src.glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import)\s+[^\n]*", path.read_text(), flags=re.M)
        bad = [s for s in imports if re.search(r"nres\.rv\b|from \.\.rv\b|from \.\. import .*\brv\b", s)]
        assert not bad, (path, bad)
    code = (
        "import sys, astropy.units as u, nres.sim.core, nres.sim.extracted, nres.sim.star;"
        "assert not any(m == 'nres.rv' or m.startswith('nres.rv.') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
