"""Fiber offsets and the TRIPLE: simulated DOUBLEs of both fiber pairs with the simulator's known offsets."""

import dataclasses

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from nres.doppler import C_M_S
from nres.errors import FitError, InvalidParameterError
from nres.instrument import PhysicalModel
from nres.sim.extracted_arc import simulate_extracted_arc
from nres.wavecal import FiberOffsets, combine_doubles, measure_fiber_offsets, solve
from nres.wavecal.fibers import idl_shift_basis, line_pairs

TRUE_MJD = 58200.0  # lsc csv row 58190: F00 = +5.99 px (fiber 0), F10 = -5.99 px (fiber 2)
START_MJD = 58000.0  # the previous row as the solver's start
# np.interp clamps outside the fiber-1 grid, and the offsets reach ~12 px: judge 64..4032
X = np.arange(64.0, 4033.0, 32.0)
PIX = np.arange(4096.0)


def _run(fibers, seed, noiseless=False):
    spec, truth = simulate_extracted_arc(seed=seed, mjd=TRUE_MJD, fibers=fibers, noiseless=noiseless)
    return spec, truth, solve(spec, model=PhysicalModel.for_site("lsc", mjd=START_MJD))


@pytest.fixture(scope="module")
def doubles():
    """Two noisy DOUBLEs of each fiber pair (0+1, 1+2)."""
    return [_run((0, 1), 11), _run((1, 2), 12), _run((0, 1), 13), _run((1, 2), 14)]


@pytest.fixture(scope="module")
def noiseless_doubles():
    return [_run((0, 1), 1, True), _run((1, 2), 1, True)]


def _true_dx(spec, truth, fiber, m):
    """x_fiber - x_1 of the same true wavelength at star-fiber pixels X (independent of nres.wavecal)."""
    fl = list(spec.fibers)
    j = list(spec.orders).index(m)
    lam_f = truth.wavelength[fl.index(fiber), j].to_value(u.nm)
    lam_1 = truth.wavelength[fl.index(1), j].to_value(u.nm)
    return X - np.interp(np.interp(X, PIX, lam_f), lam_1, PIX)


def _by_fiber(runs, fiber):
    return next(r for r in runs if fiber in r[0].fibers)


def test_offsets_recovered_to_0p005_px(doubles):
    off = measure_fiber_offsets([r[2] for r in doubles])
    assert off.fibers == (0, 2)
    assert off.order_range[1] == 118 and off.order_range[0] <= 56
    for fiber in (0, 2):
        spec, truth, _ = _by_fiber(doubles, fiber)
        diff, err = [], []
        for m in range(off.order_range[0], 119):
            diff.append(off.dx(X, m, fiber) - _true_dx(spec, truth, fiber, m))
            err.append(off.dx_error(X, m, fiber))
        diff, err = np.concatenate(diff), np.concatenate(err)
        rms = np.sqrt(np.mean(diff**2))
        # issue 9: 0.005 px rms over the chip (measured 0.0008-0.0011 px from ~4300 pairs a fiber)
        assert rms < 0.005, (fiber, rms)
        # the predicted error describes it: rms over the chip of a fit with ~16 parameters scatters
        # by tens of per cent between realisations; 0.4-2.5 x the predicted rms is decisive for a
        # wrong error scale (a factor 2 in the centre errors) without being a coin flip
        pred = np.sqrt(np.mean(err**2))
        assert 0.4 < rms / pred < 2.5, (fiber, rms, pred)
        # pairs are unit-normalised: chi2/dof ~ 1 means the centre errors of both fibers are right
        assert 0.9 < off.qc[f"chi2_dof_{fiber}"] < 1.1
    # the sign convention is x_fiber - x_fiber1: fiber 0 ~ +6 px at the chip centre, fiber 2 ~ -6 px
    assert 5.0 < off.dx(2048.0, 85, 0) < 7.5 and -7.5 < off.dx(2048.0, 85, 2) < -5.0


def test_combine_doubles_triple_offsets_and_wavelengths(doubles):
    trip = combine_doubles([r[2] for r in doubles])
    assert trip.fibers == (0, 1, 2)
    assert trip.qc["n_doubles"] == 4 and trip.qc["n_rejected"] == 0
    for fiber in (0, 2):
        spec, truth, _ = _by_fiber(doubles, fiber)
        d = [
            trip.fiber_offset(X, np.full(X.size, m), fiber) - _true_dx(spec, truth, fiber, m)
            for m in range(56, 119)
        ]
        rms = np.sqrt(np.mean(np.concatenate(d) ** 2))
        assert rms < 0.005, (fiber, rms)  # issue 9 (measured 0.0008 / 0.0011 px)
    # all three fibers' wavelengths against the truth, judged against the propagated error: the
    # pooled rms over fibers and orders of 4 DOUBLEs (measured 1.1-1.3 x the prediction)
    sq, pred = [], []
    for fiber in (0, 1, 2):
        spec, truth, _ = _by_fiber(doubles, fiber)
        i = list(spec.fibers).index(fiber)
        for j, m in enumerate(spec.orders):
            if m < 56:  # the reddest orders have no Redman lines
                continue
            lam = trip.wavelength(X, np.full(X.size, m), fiber).to_value(u.nm)
            true = np.interp(X, PIX, truth.wavelength[i, j].to_value(u.nm))
            sq.append(((lam - true) / true * C_M_S) ** 2)
            pred.append(trip.velocity_error(X, np.full(X.size, m), fiber).to_value(u.m / u.s) ** 2)
    ratio = np.sqrt(np.mean(np.concatenate(sq)) / np.mean(np.concatenate(pred)))
    assert 0.5 < ratio < 2.0, ratio
    # the combined model carries the measured offsets as its shift polynomial (F00 = 5.9925 true)
    assert trip.model.fibcoefs[0][0] == pytest.approx(5.9925, abs=0.01)
    assert trip.model.fibcoefs[1][0] == pytest.approx(-5.9925, abs=0.01)


def test_combine_doubles_noiseless_is_exact(noiseless_doubles):
    trip = combine_doubles([r[2] for r in noiseless_doubles])
    errs = []
    for fiber in (0, 1, 2):
        spec, truth, _ = _by_fiber(noiseless_doubles, fiber)
        i = list(spec.fibers).index(fiber)
        for j, m in enumerate(spec.orders):
            if m < 56:
                continue
            lam = trip.wavelength(X, np.full(X.size, m), fiber).to_value(u.nm)
            true = np.interp(X, PIX, truth.wavelength[i, j].to_value(u.nm))
            errs.append((lam - true) / true * C_M_S)
    # noiseless: the inputs are good to ~0.003 m/s and the representation of the combined grid by
    # the Legendre correction to ~0.05 m/s (qc); well under the 1 m/s of issue 8
    assert np.sqrt(np.mean(np.concatenate(errs) ** 2)) < 0.3
    assert trip.qc["representation_rms_m_s_0"] < 0.2 and trip.qc["representation_rms_m_s_2"] < 0.2


def test_combine_doubles_rejects_a_bad_double(doubles):
    sols = [r[2] for r in doubles]
    bad = sols[0]
    coef = bad.coefficients.copy()
    coef[:, 0, 0] += 0.05  # (1/m) x 0.05 nm: ~10 m/s everywhere, ~5 x the solution's error
    broken = dataclasses.replace(bad, coefficients=coef)
    trip = combine_doubles([*sols, broken])
    assert trip.qc["n_rejected"] == 1 and trip.qc["rejected"] == "4"
    assert trip.qc["deviation_4"] > 5.0 > max(trip.qc[f"deviation_{k}"] for k in range(4))
    ref = combine_doubles(sols)
    x = np.arange(0.0, 4096.0, 256.0)
    for m in (60, 90, 115):
        for f in (0, 1, 2):
            a = trip.wavelength(x, np.full(x.size, m), f).to_value(u.nm)
            b = ref.wavelength(x, np.full(x.size, m), f).to_value(u.nm)
            assert np.abs(a - b).max() < 1e-9  # the rejected input has weight 0


def _synthetic_pairs(fibcoefs, fiber, seed, n=1500):
    """Line tables of fiber 1 and ``fiber`` related by the original's 10-term shift polynomial."""
    rng = np.random.default_rng(seed)
    order = rng.integers(56, 119, n)
    xf = rng.uniform(20.0, 4075.0, n)
    dx = idl_shift_basis(xf, order) @ np.asarray(fibcoefs)
    x1 = xf - dx  # the convention lambda_f(x) = lambda_1(x - dx(x)): dx at the star-fiber pixel
    lam = np.arange(n) * 0.01 + 400.0  # distinct list wavelengths
    err = rng.uniform(0.01, 0.03, n)
    table = QTable()
    table["fiber"] = np.concatenate([np.full(n, fiber), np.ones(n, dtype=int)])
    table["order"] = np.concatenate([order, order])
    table["x"] = np.concatenate([xf + rng.normal(0, err), x1 + rng.normal(0, err)])
    table["x_err"] = np.concatenate([err, err])
    table["wavelength"] = np.concatenate([lam, lam]) * u.nm
    return table, xf, order, dx


@pytest.mark.parametrize("fiber", [0, 2])
def test_idl_basis_recovers_the_shift_polynomial_and_its_sign(fiber):
    # idl-wavecal.md 16.6: pairs from a known 10-term polynomial + N(0, ~0.03 px) -> dx to 0.005 px
    model = PhysicalModel.for_site("lsc", mjd=TRUE_MJD)
    table, xf, order, dx = _synthetic_pairs(model.fibcoefs[fiber // 2], fiber, seed=fiber + 1)
    for kw in ({"basis": "idl"}, {"legacy": True}, {}):
        off = measure_fiber_offsets(table, **kw)
        rms = np.sqrt(np.mean((off.dx(xf, order, fiber) - dx) ** 2))
        assert rms < 0.005, (kw, rms)
    fitted = measure_fiber_offsets(table, basis="idl")
    assert fitted.basis == "idl"
    # sign: a model with the fitted F coefficients puts fiber 1's wavelength at the fiber-f pixel
    moved = fitted.apply_to(model)
    lam1 = moved.wavelength(xf - dx, order, 1)
    xpred = moved.pixel(lam1, order, fiber)
    assert np.abs(np.asarray(xpred) - xf).max() < 0.02
    # and the 10-term conversion of a Legendre fit reproduces the same offsets
    leg = measure_fiber_offsets(table)
    f10 = leg.to_fibcoefs(fiber)
    assert np.sqrt(np.mean((idl_shift_basis(xf, order) @ f10 - dx) ** 2)) < 0.005


def test_idl_weighting_matches_the_original_rule():
    # weighting="idl": err floored at its 10th percentile, weights (err10/err)^4. With equal errors
    # both weightings are the same fit; with errors of mixed size the estimates differ.
    model = PhysicalModel.for_site("lsc", mjd=TRUE_MJD)
    table, xf, order, dx = _synthetic_pairs(model.fibcoefs[0], 0, seed=9)
    table["x_err"] = 0.02
    a = measure_fiber_offsets(table, weighting="idl")
    b = measure_fiber_offsets(table)
    assert np.allclose(a.coefficients, b.coefficients, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.covariance, b.covariance, rtol=1e-6, atol=1e-20)


def test_line_pairs_uses_the_same_list_line_and_order():
    t = QTable()
    t["fiber"] = [1, 0, 1, 0, 0]
    t["order"] = [70, 70, 71, 71, 70]
    t["x"] = [100.0, 106.0, 200.0, 207.0, 300.0]
    t["x_err"] = [0.03, 0.04, 0.03, 0.04, 0.03]
    t["wavelength"] = [500.0, 500.0, 501.0, 501.5, 502.0] * u.nm
    t["used"] = [True, True, True, True, True]
    p = line_pairs(t)
    assert len(p) == 1 and p["dx"][0] == 6.0 and p["dx_err"][0] == pytest.approx(0.05)
    t["used"][0] = False  # a clipped reference line pairs with nothing
    assert len(line_pairs(t)) == 0


def test_errors(doubles):
    with pytest.raises(InvalidParameterError, match="doubles\\[0\\]"):
        measure_fiber_offsets([object()])
    with pytest.raises(FitError, match="no line matched"):
        only1 = doubles[0][2].lines[doubles[0][2].lines["fiber"] == 1]
        measure_fiber_offsets(only1)
    model = PhysicalModel.for_site("lsc", mjd=TRUE_MJD)
    with pytest.raises(FitError, match="has 8 line pairs; need >= 10"):
        measure_fiber_offsets(_synthetic_pairs(model.fibcoefs[0], 0, seed=1, n=8)[0])
    with pytest.raises(FitError, match="20 line pairs for 16 coefficients"):
        measure_fiber_offsets(_synthetic_pairs(model.fibcoefs[0], 0, seed=1, n=20)[0])
    sols = [r[2] for r in doubles]
    with pytest.raises(InvalidParameterError, match="order_shift"):
        combine_doubles([sols[0], dataclasses.replace(sols[1], order_shift=1)])
    with pytest.raises(InvalidParameterError, match="offsets"):
        combine_doubles(sols, offsets="nope")
    with pytest.raises(InvalidParameterError, match="non-empty"):
        combine_doubles([])
    off = measure_fiber_offsets(sols[:1])
    assert isinstance(off, FiberOffsets) and off.fibers == (0,)
    with pytest.raises(InvalidParameterError, match="fiber 2"):
        off.dx(100.0, 80, 2)
    assert off.dx(100.0, 80, 1) == 0.0
