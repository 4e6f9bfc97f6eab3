"""measure_blaze, flat_correct, with_blaze and blaze_subtracted against known answers."""

import numpy as np
import pytest
from astropy.nddata import VarianceUncertainty

from nres.errors import InvalidParameterError, MissingCalibrationError
from nres.extract import blaze_subtracted, flat_correct, measure_blaze, with_blaze
from nres.flags import Flag
from nres.spectrum import EchelleSpectrum

NX = 600
X = np.arange(NX, dtype=float)


def plateau_blaze():
    """Smooth blaze rising to an exact plateau of 1 over columns 250..349 (> 11-column median)."""
    g = np.ones(NX)
    left, right = X < 250, X > 349
    g[left] = np.exp(-0.5 * ((X[left] - 250) / 60.0) ** 2)
    g[right] = np.exp(-0.5 * ((X[right] - 349) / 60.0) ** 2)
    return g


def spectrum(data, var, *, fibers=(0, 1), orders=(90, 91), flags=None, objects="tung&tung&none"):
    return EchelleSpectrum(
        data,
        uncertainty=VarianceUncertainty(var),
        flags=flags,
        fibers=list(fibers),
        orders=list(orders),
        pixel=X + 1000,
        meta={"OBJECTS": objects},
    )


@pytest.fixture(scope="module")
def flat():
    g = plateau_blaze()
    level = np.array([[3.0e4, 2.0e4], [2.5e4, 1.5e4]])[:, :, None]
    data = level * g
    return spectrum(data, 25.0 + data), g, level


def test_measure_blaze_known_answer(flat):
    fs, g, level = flat
    data = fs.data.copy()
    data[0, 1, 300] *= 1.5  # a cosmic ray in the flat, on the plateau
    hit = spectrum(data, fs.variance)
    bl = measure_blaze(hit)
    # noiseless: blaze = g exactly (the plateau is the running median's maximum), the hit replaced
    # by the median of its neighbours, which on the plateau is exactly 1
    np.testing.assert_allclose(bl.data, np.broadcast_to(g, bl.shape), rtol=1e-12)
    np.testing.assert_allclose(bl.blaze, bl.data)
    np.testing.assert_allclose(bl.variance, fs.variance / level**2, rtol=1e-12)
    assert bl.meta["BLAZE"]["n_replaced"][1] == 1 and bl.meta["BLAZE"]["norm"][1] == pytest.approx(2.0e4)
    low = (bl.flags & Flag.LOW_SIGNAL) != 0
    np.testing.assert_array_equal(low, np.broadcast_to(g <= 0.01, low.shape))
    assert low.any() and not low[..., 200:400].any()
    # legacy: the original zeroes those columns, and its rule (|dev| >= 5 x a smoothed *squared*
    # deviation) keeps the cosmic ray (its own dev^2 inflates the threshold) while it replaces by the
    # median almost every column of the noiseless flat, where dev^2 << |dev|
    old = measure_blaze(hit, legacy=True)
    assert np.all(old.data[low] == 0)
    assert old.data[0, 1, 300] == pytest.approx(1.5, rel=1e-12)
    keep = ~low
    keep[0, 1, 300] = False
    np.testing.assert_allclose(old.data[keep], bl.data[keep], rtol=1e-3)  # median of a smooth curve
    assert np.all(old.meta["BLAZE"]["n_replaced"] > 500)


def test_flat_correct_known_answer_and_variance(flat):
    fs, g, _ = flat
    bl = measure_blaze(fs)
    a = 500.0 + 200.0 * np.sin(X / 40.0)  # the star's spectrum, blaze removed
    s = a * g * np.array([1.0, 0.8])[None, :, None] * np.ones((2, 1, 1))
    out = flat_correct(spectrum(s, 25.0 + s), bl)
    ok = g > 0.01
    np.testing.assert_allclose(out.data[..., ok], (s / g)[..., ok], rtol=1e-12)
    assert np.all(out.flags[..., ~ok] & Flag.NO_WEIGHT) and np.all(np.isnan(out.data[..., ~ok]))
    assert out.blaze is None
    # reported variance vs scatter over 400 realisations of noisy target and noisy flat
    rng = np.random.default_rng(8)
    cols = slice(150, 450)
    ratios = []
    for _ in range(400):
        sn = s + rng.normal(0, np.sqrt(25.0 + s))
        fn = fs.data + rng.normal(0, np.sqrt(fs.variance))
        b = fn / fs.data.max(axis=2, keepdims=True)  # this flat's blaze with the true norm
        ratios.append(sn[..., cols] / b[..., cols])
    emp = np.var(np.array(ratios), axis=0)
    pred = out.variance[..., cols]
    # 400 realisations: sampling error of a variance ~7 % per column, ~0.2 % over 1200 columns;
    # the plateau norm is fixed in the simulation (measure_blaze takes it as noise-free)
    assert abs(np.mean(emp / pred) - 1) < 0.02
    # with_blaze + normalized equals flat_correct's data
    wb = with_blaze(spectrum(s, 25.0 + s), bl)
    np.testing.assert_allclose(wb.normalized(by="blaze").data[..., ok], out.data[..., ok], rtol=1e-12)


def test_flat_correct_matching_and_errors(flat):
    fs, _, _ = flat
    bl = measure_blaze(fs)
    other = spectrum(np.ones((2, 2, NX)), np.ones((2, 2, NX)), fibers=(1, 2))
    out = flat_correct(other, bl)  # fiber 2 has no flat: NO_WEIGHT, NaN
    assert np.all(np.isnan(out.data[1])) and np.all(out.flags[1] & Flag.NO_WEIGHT)
    assert np.all(np.isfinite(out.data[0, :, 250:350]))
    with pytest.raises(MissingCalibrationError):
        flat_correct(spectrum(np.ones((1, 1, NX)), np.ones((1, 1, NX)), fibers=(2,), orders=(95,)), bl)
    shifted = EchelleSpectrum(np.ones((2, 2, NX)), fibers=[0, 1], orders=[90, 91], pixel=X)
    with pytest.raises(InvalidParameterError, match="pixel"):
        flat_correct(shifted, bl)


def test_blaze_subtracted_apply_flat2_rules():
    # F ramps: < 0.1 for columns < 100 and > 520 (left: last x <= 300 with F < 0.1 is 99 -> ixl 100;
    # right: first x > 300 with F <= 0.1 is 520, where F = 0.1 exactly -> ixr 519: < left, <= right)
    f = np.clip(np.minimum((X - 90) / 100.0, (530 - X) / 100.0), 0.0, 1.0)
    f[(X >= 190) & (X <= 430)] = 1.0
    flat_d = np.broadcast_to(f, (2, 1, NX)) * 1.0e4
    fl = measure_blaze(spectrum(flat_d, 25 + flat_d, fibers=(1, 2), orders=(90,)), edge=0)
    fb = fl.blaze[0, 0]
    k = 3000.0
    r = np.broadcast_to(k * fb, (2, 1, NX)).copy()
    bad = np.zeros((3, 1, NX), dtype=bool)
    bad[2, 0, 300:330] = True
    r[1, 0, 300:330] += 5.0e4  # a feature masked in fiber 2's own plane
    spec = spectrum(r, 25 + np.abs(r), fibers=(1, 2), orders=(90,), objects="none&thar&targ")
    out = blaze_subtracted(spec, fl, bad=bad)
    t = out.meta["AMPFL"]
    assert len(t) == 1 and t["fiber"][0] == 2
    assert (t["ixl"][0], t["ixr"][0]) == (100, 519)
    assert t["amp"][0] == pytest.approx(k, rel=1e-12)
    inside = (X >= 100) & (X <= 519)
    clean = inside & ~bad[2, 0]
    np.testing.assert_allclose(out.data[1, 0, clean], 0.0, atol=1e-8)
    assert np.all(out.data[1, 0, ~inside] == 0) and np.all(out.flags[1, 0, ~inside] & Flag.ORDER_EDGE)
    np.testing.assert_array_equal(out.data[0], r[0])  # the ThAr fiber is unchanged
    np.testing.assert_array_equal(out.variance, spec.variance)
    # legacy: fiber 2 reads plane 2 - 1 = 1 (no mask), so the feature enters the amplitude
    old = blaze_subtracted(spec, fl, bad=bad, legacy=True)
    assert old.meta["AMPFL"]["amp"][0] > 1.05 * k
