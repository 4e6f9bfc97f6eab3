"""nres.sim kernels against numpy reference twins."""

import numpy as np
from scipy.special import erf

from nres.sim import _kernels


def phi(z):
    return 0.5 * (1.0 + erf(z / np.sqrt(2.0)))


def profile_cdf_ref(y, c, s, a, fw, sw):
    sl, sr = s * (1 - a), s * (1 + a)
    d = y - c
    core = np.where(
        d < 0, 2 * sl / (sl + sr) * phi(d / sl), sl / (sl + sr) + 2 * sr / (sl + sr) * (phi(d / sr) - 0.5)
    )
    return (1 - fw) * core + fw * phi(d / sw)


def render_ref(shape, y0, centres, sigma, a, fw, sw, flux, half):
    img = np.zeros(shape)
    rows = np.arange(shape[0]) + y0
    for t in range(centres.shape[0]):
        for i in range(shape[1]):
            c = centres[t, i]
            w = profile_cdf_ref(rows + 0.5, c, sigma[t, i], a, fw, sw) - profile_cdf_ref(
                rows - 0.5, c, sigma[t, i], a, fw, sw
            )
            w[np.abs(rows - c) > half + 1] = 0.0
            inside = (rows >= np.floor(c - half)) & (rows <= np.ceil(c + half))
            img[:, i] += flux[t, i] * np.where(inside, w, 0.0)
    return img


def test_render_traces_matches_twin():
    rng = np.random.default_rng(2)
    centres = rng.uniform(5, 35, (3, 7))
    sigma = rng.uniform(1.2, 2.0, (3, 7))
    flux = rng.uniform(10, 1000, (3, 7))
    img = np.zeros((40, 7))
    _kernels.render_traces(img, 100, 0, centres + 100, sigma, 0.07, 0.03, 5.0, flux, 12.0)
    ref = render_ref((40, 7), 100, centres + 100, sigma, 0.07, 0.03, 5.0, flux, 12.0)
    np.testing.assert_allclose(img, ref, rtol=1e-12, atol=1e-9)


def test_line_spectrum_matches_twin():
    out = np.zeros(50)
    xl = np.array([1010.3, 1025.0, 1049.7, 990.0])
    fl = np.array([100.0, 50.0, 30.0, 1e4])
    _kernels.line_spectrum(1000, 50, xl, fl, 1.1, out)
    x = np.arange(1000, 1050)
    ref = sum(f * (phi((x + 0.5 - c) / 1.1) - phi((x - 0.5 - c) / 1.1)) for c, f in zip(xl, fl, strict=True))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def bleed_ref(col, full):
    col = col.copy()
    bled = np.zeros(col.size, bool)
    for j in range(col.size):
        excess = col[j] - full
        if excess <= 0:
            continue
        col[j] = full
        for d in (-1, 1):
            left, jj = excess / 2, j + d
            while left > 0 and 0 <= jj < col.size:
                take = min(max(full - col[jj], 0.0), left)
                if take > 0:
                    col[jj] += take
                    left -= take
                    bled[jj] = True
                jj += d
    return col, bled


def test_bleed_matches_twin_and_conserves_charge():
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 50, (60, 5))
    img[30, 1] = 400.0
    img[10, 3] = 260.0
    img[58, 4] = 300.0  # charge running off the bottom edge is lost
    out = img.copy()
    bled = np.zeros(img.shape, dtype=np.bool_)
    _kernels.bleed_columns(out, 100.0, bled)
    for k in range(5):
        ref, rb = bleed_ref(img[:, k], 100.0)
        np.testing.assert_allclose(out[:, k], ref, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(bled[:, k], rb)
    np.testing.assert_allclose(out[:, 1].sum(), img[:, 1].sum(), rtol=1e-14)
    assert out.max() <= 100.0


def test_deposit_tracks_conserves_energy():
    img = np.zeros((30, 30))
    hit = np.zeros(img.shape, dtype=np.bool_)
    _kernels.deposit_tracks(
        img,
        hit,
        10,
        10,
        np.array([15.0, 12.0]),
        np.array([15.0, 30.0]),
        np.array([6.0, 0.0]),
        np.array([3.0, 0.0]),
        np.array([1000.0, 50.0]),
    )
    np.testing.assert_allclose(img.sum(), 1050.0, rtol=1e-12)
    assert hit.sum() >= 7 and hit[5, 5] and hit[2, 20]


def test_poisson_generator_moments():
    # mean and variance of 2e5 draws judged at 4 standard errors (var of s^2 ~ 2 lam^2 / n + lam / n)
    n = 200_000
    for lam in (0.7, 4.0, 30.0, 5.0e4):
        d = _kernels.poisson_draws(lam, 11, n)
        assert abs(d.mean() - lam) < 4 * np.sqrt(lam / n)
        assert abs(d.var() - lam) < 4 * np.sqrt((2 * lam**2 + lam) / n)
        assert np.all(d == np.round(d)) and d.min() >= 0
