"""nres.wavecal: line fits against a numpy twin and injected truth; the solver on simulated DOUBLE arcs."""

import math

import astropy.units as u
import numpy as np
import pytest
from scipy.special import erf

from nres.doppler import C_M_S
from nres.errors import FitError, InvalidInputFileError, InvalidParameterError
from nres.instrument import PhysicalModel
from nres.sim.extracted_arc import simulate_extracted_arc
from nres.wavecal import _kernels
from nres.wavecal.lines import find_lines
from nres.wavecal.solution import WavelengthSolution
from nres.wavecal.solve import apply_solution, solve

TRUE_MJD = 58200.0  # lsc csv row 58190
START_MJD = 58000.0  # the previous lsc row (57920.01): up to 4.5 px from the truth


def _twin_fit(k, flux, weight, init, n_iter=60):
    """numpy Gauss-Newton twin of fit_gaussians (same model, analytic derivatives)."""
    p = np.array(init, dtype=float)
    for _ in range(n_iter):
        a = (k - 0.5 - p[1]) / p[2]
        b = (k + 0.5 - p[1]) / p[2]
        pa, pb = 0.5 * (1 + erf(a / math.sqrt(2))), 0.5 * (1 + erf(b / math.sqrt(2)))
        da, db = np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi), np.exp(-0.5 * b * b) / math.sqrt(2 * math.pi)
        r = flux - (p[3] + p[0] * (pb - pa))
        jac = np.stack(
            [pb - pa, p[0] * (da - db) / p[2], p[0] * (da * a - db * b) / p[2], np.ones_like(k)], 1
        )
        n = (jac * weight[:, None]).T @ jac
        p = p + np.linalg.solve(n, jac.T @ (weight * r))
    return p, np.sqrt(np.diag(np.linalg.inv(n)))


def test_kernel_matches_numpy_twin():
    rng = np.random.default_rng(3)
    k = np.arange(11, dtype=float)
    true = (5000.0, 5.3, 1.2, 20.0)
    a, b = (k - 0.5 - true[1]) / true[2], (k + 0.5 - true[1]) / true[2]
    model = true[3] + true[0] * 0.5 * (erf(b / math.sqrt(2)) - erf(a / math.sqrt(2)))
    flux = model + rng.normal(0, np.sqrt(model + 25))
    weight = 1.0 / (model + 25)
    init = np.array([[4000.0, 5.0, 1.4, 15.0]])
    params, errors = np.empty((1, 4)), np.empty((1, 4))
    chi2, status = np.empty(1), np.empty(1, dtype=np.int64)
    _kernels.fit_gaussians(
        flux, weight, np.array([0]), np.array([11]), init, 60, params, errors, chi2, status
    )
    twin_p, twin_e = _twin_fit(k, flux, weight, init[0])
    assert status[0] == 0
    # both converge to the same minimum of a smooth chi^2: agreement to rounding of the iteration
    np.testing.assert_allclose(params[0], twin_p, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(errors[0], twin_e, rtol=1e-6)


@pytest.fixture(scope="module")
def noiseless():
    spec, truth = simulate_extracted_arc(seed=1, mjd=TRUE_MJD, noiseless=True)
    return spec, truth


NOISY_SEEDS = (2, 5, 6, 7)


@pytest.fixture(scope="module")
def noisy_runs():
    start = PhysicalModel.for_site("lsc", mjd=START_MJD)
    runs = []
    for seed in NOISY_SEEDS:
        spec, truth = simulate_extracted_arc(seed=seed, mjd=TRUE_MJD)
        runs.append((spec, truth, solve(spec, model=start)))
    return runs


@pytest.fixture(scope="module")
def noisy(noisy_runs):
    return noisy_runs[0]


def _velocity_errors(sol, spec, truth, min_lines=5):
    """(fiber, order) -> wavelength error (m/s) at every pixel, for orders with >= min_lines used lines."""
    out = {}
    x = np.asarray(spec.pixel, dtype=float)
    po = sol.per_order
    for i, f in enumerate(spec.fibers):
        for j, m in enumerate(spec.orders):
            row = po[(po["fiber"] == f) & (po["order"] == m)]
            if len(row) == 0 or row["n_used"][0] < min_lines:
                continue
            lam = sol.wavelength(x, np.full(x.size, m), int(f)).to_value(u.nm)
            true = truth.wavelength[i, j].to_value(u.nm)
            out[(int(f), int(m))] = (lam - true) / true * C_M_S
    return out


def test_find_lines_noiseless_centres(noiseless):
    spec, truth = noiseless
    found = find_lines(spec)
    used = truth.lines_used
    good = found[found["flags"] == 0]
    errs = []
    for f in (0, 1):
        for m in np.unique(good["order"]):
            a = good[(good["fiber"] == f) & (good["order"] == m)]
            b = np.sort(np.asarray(used["x"][(used["fiber"] == f) & (used["order"] == m)]))
            j = np.clip(np.searchsorted(b, a["x"]), 1, b.size - 1)
            gap = np.minimum(np.diff(b, prepend=-1e9)[j], np.diff(b, append=1e9)[j])
            near = np.where(np.abs(b[j] - a["x"]) < np.abs(b[j - 1] - a["x"]), b[j], b[j - 1])
            iso = (np.abs(a["x"] - b[j]) > 12) | (np.abs(a["x"] - b[j - 1]) > 12)
            errs.append((a["x"] - near)[iso & (gap > 12)])
    e = np.concatenate(errs)
    assert e.size > 1000
    # the simulator renders the exact model the fit uses: isolated noiseless lines to 1e-6 px
    # (the fit's convergence tolerance is 1e-7 px); lines with faint undetected neighbours are
    # biased, so the median and 90th percentile are judged
    assert np.median(np.abs(e)) < 1e-6
    assert np.percentile(np.abs(e), 90) < 1e-3


def test_solve_noiseless_under_1_m_s(noiseless):
    spec, truth = noiseless
    sol = solve(spec, model=PhysicalModel.for_site("lsc", mjd=START_MJD))
    errs = np.concatenate(list(_velocity_errors(sol, spec, truth).values()))
    assert np.sqrt(np.mean(errs**2)) < 1.0  # issue 8: noiseless under 1 m/s
    assert sol.qc["n_used"] > 3000


def test_solve_noisy_within_noise_floor(noisy_runs):
    # issue 8: the wavelength error rms over all pixels of orders with >= 5 lines within 1.5x the
    # Fisher noise floor of the fitted parameters (and at least 2 m/s). One realisation's rms is
    # dominated by a few poorly constrained directions (order ends without lines), so it scatters
    # by ~+-50 % about the floor (0.74-1.57 over seeds 2, 5-8); pooled over 4 noise realisations
    # (~20 effective degrees of freedom) an unbiased solver exceeds 1.5x with p ~ 1e-3.
    mse, floor_sq = [], []
    for spec, truth, sol in noisy_runs:
        errs = np.concatenate(list(_velocity_errors(sol, spec, truth).values()))
        mse.append(np.mean(errs**2))
        floor_sq.append(sol.qc["noise_floor_m_s"] ** 2)
        assert 0.8 < sol.qc["chi2_dof"] < 1.3  # the centre errors describe the residuals
        assert np.sqrt(mse[-1]) < 2.5 * sol.qc["noise_floor_m_s"]  # no single run far off
    rms, floor = np.sqrt(np.mean(mse)), np.sqrt(np.mean(floor_sq))
    assert rms <= max(1.5 * floor, 2.0), (rms, floor)


def test_zero_points_within_predicted_errors(noisy_runs):
    pulls = []
    for spec, truth, sol in noisy_runs:
        po = sol.per_order
        for (f, m), e in _velocity_errors(sol, spec, truth).items():
            zp = po["zero_point_err_m_s"][(po["fiber"] == f) & (po["order"] == m)][0]
            pulls.append(e[2047] / zp)  # error at the order centre over its predicted error
    pulls = np.abs(np.array(pulls))
    # 4 x 130 Gaussian pulls: an ideal solver has P(|z| > 3) = 0.27 % each (1.4 expected; more
    # than 6 has p = 5e-4) and P(any |z| > 5) = 3e-4; measured: none beyond 2.4
    assert np.sum(pulls > 3) <= 6 and pulls.max() < 5.0, np.sort(pulls)[-5:]
    # and the predicted errors are neither inflated nor too small: pull rms 0.80-1.02 per seed
    assert 0.6 < np.sqrt(np.mean(pulls**2)) < 1.4


def test_apply_solution_and_fits_round_trip(noisy, tmp_path):
    spec, truth, sol = noisy
    out = apply_solution(spec, sol)
    assert out.wavelength_medium == "vacuum" and out.wavelength_frame == "topocentric"
    np.testing.assert_allclose(
        out.wavelength[1, 30].to_value(u.nm),
        sol.wavelength(np.asarray(spec.pixel, float), np.full(spec.shape[2], spec.orders[30]), 1).value,
    )
    path = tmp_path / "sol.fits"
    sol.write(path)
    back = WavelengthSolution.read(path)
    x = np.arange(0.0, 4096.0, 100.0)
    np.testing.assert_array_equal(
        back.wavelength(x, np.full(x.size, 80), 0), sol.wavelength(x, np.full(x.size, 80), 0)
    )
    assert back.qc["n_used"] == sol.qc["n_used"] and len(back.lines) == len(sol.lines)
    with pytest.raises(InvalidInputFileError):
        WavelengthSolution.read(tmp_path / "missing.fits")


def test_solve_needs_a_model(noiseless):
    with pytest.raises(InvalidParameterError, match="model"):
        solve(noiseless[0])


def test_solve_and_apply_reject_bad_input(noiseless):
    spec, model = noiseless[0], PhysicalModel.for_site("lsc", mjd=START_MJD)
    with pytest.raises(InvalidParameterError, match="both x_degree and order_degree"):
        solve(spec, model=model, x_degree=3)
    with pytest.raises(InvalidParameterError, match="x >= 1"):
        solve(spec, model=model, x_degree=0, order_degree=2)
    with pytest.raises(InvalidParameterError, match="not in spec"):
        solve(spec, model=model, fibers=[2])  # this arc lights fibers 0 and 1
    with pytest.raises(FitError, match="usable lines"):
        solve(spec, model=model, found=find_lines(spec)[:5])
    with pytest.raises(InvalidParameterError, match="WavelengthSolution"):
        apply_solution(spec, model)


def test_normal_equations_kernel_matches_numpy():
    rng = np.random.default_rng(5)
    basis, w, y = rng.normal(size=(200, 7)), rng.uniform(0, 2, 200), rng.normal(size=200)
    w[::7] = 0.0
    nmat, rhs = np.empty((7, 7)), np.empty(7)
    _kernels.normal_equations(basis, w, y, nmat, rhs)
    # summation order differs from BLAS: agreement to float64 rounding of 200-term sums
    np.testing.assert_allclose(nmat, (basis * w[:, None]).T @ basis, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rhs, basis.T @ (w * y), rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def shifted():
    # the spectrum lies 17 px below the starting model's prediction (a drift outside the model's
    # family of small changes) and its orders are labelled one too low
    from astropy.nddata import VarianceUncertainty

    from nres.spectrum import EchelleSpectrum

    spec, truth = simulate_extracted_arc(seed=3, mjd=TRUE_MJD, drift=(-17.0, 0.0), orders=np.arange(60, 111))
    labelled = EchelleSpectrum(
        spec.data,
        uncertainty=VarianceUncertainty(spec.variance),
        flags=spec.flags,
        orders=spec.orders - 1,
        fibers=spec.fibers,
        pixel=spec.pixel,
    )
    sol = solve(labelled, model=PhysicalModel.for_site("lsc", mjd=START_MJD))
    return spec, labelled, truth, sol


def test_robust_start_finds_shift_and_order(shifted):
    spec, labelled, truth, sol = shifted
    assert sol.order_shift == 1
    # the global shift is the median offset over orders; the old model's own per-order offsets
    # (median 0.12 px, idl row differences) are on top of the injected -17 px
    assert abs(sol.qc["start_shift_px"] + 17.0) < 0.5
    out = apply_solution(labelled, sol)
    floor = sol.qc["noise_floor_m_s"]
    good = np.asarray(sol.per_order["n_used"]) >= 5
    assert good.sum() > 90
    err = (out.wavelength - truth.wavelength).to_value(u.nm) / truth.wavelength.to_value(u.nm) * C_M_S
    assert np.sqrt(np.mean(err**2)) <= max(1.5 * floor, 2.0)


def test_z0_prior_reports_condition_number(shifted):
    spec, labelled, truth, sol = shifted
    prior = solve(spec, model=PhysicalModel.for_site("lsc", mjd=START_MJD), z0="prior", z0_sigma=2e-6)
    # a free z0 is nearly degenerate with fl (the original tied them): the prior keeps it solvable
    # but the condition number of the 4-parameter problem is far above the tied one's
    assert prior.qc["condition_number"] > 10 * sol.qc["condition_number"]
    x = np.arange(0.0, 4096.0, 64.0)
    d = prior.wavelength(x, np.full(x.size, 85), 1) - sol.wavelength(x, np.full(x.size, 85), 1)
    assert np.max(np.abs(d.to_value(u.nm) / 480.0 * C_M_S)) < 5.0  # same wavelengths within noise
    with pytest.raises(InvalidParameterError, match="z0"):
        solve(spec, model=PhysicalModel.for_site("lsc", mjd=START_MJD), z0="free")


def test_idl_basis_is_the_physical_models_correction():
    import dataclasses

    from nres.wavecal.solution import idl_basis

    model = PhysicalModel.for_site("lsc", mjd=TRUE_MJD)
    c = np.random.default_rng(9).normal(0, 0.01, 15)
    moved = dataclasses.replace(model, coefs=tuple(np.asarray(model.coefs) + c))
    x = np.tile(np.array([0.0, 700.5, 2048.0, 4095.0]), 3)
    m = np.repeat([52, 85, 118], 4)
    diff = (moved.wavelength(x, m, 1) - model.wavelength(x, m, 1)).to_value(u.nm)
    # PhysicalModel's own (monomial, Horner) evaluation of C0..C14: equal to rounding
    np.testing.assert_allclose(idl_basis(x, m) @ c, diff, atol=1e-12)


def test_idl_correction_cannot_follow_the_distortion(noiseless):
    spec, truth = noiseless
    sol = solve(spec, model=PhysicalModel.for_site("lsc", mjd=START_MJD), legacy=True)
    assert sol.correction == "idl" and sol.coefficients.shape == (2, 15, 1)
    rms = np.sqrt(np.mean(np.concatenate(list(_velocity_errors(sol, spec, truth).values())) ** 2))
    # the original's 15 terms cannot follow the out-of-family distortion: measured 3.9 m/s rms
    # without noise, iterated as nres does (idl-wavecal.md 16.5: 2.6 m/s iterated, 18 m/s for one
    # IDL pass, on a simulation without such distortion), against < 1 m/s for the default
    assert 2.0 < rms < 30.0, rms


def test_fiber_offset_matches_truth(noisy):
    spec, truth, sol = noisy
    x = np.arange(500.0, 3600.0, 50.0)
    diffs = []
    for j, m in enumerate(spec.orders):
        if m < 56:  # the reddest orders have no Redman lines
            continue
        lam0 = truth.wavelength[0, j].to_value(u.nm)
        lam1 = truth.wavelength[1, j].to_value(u.nm)
        pix = np.asarray(spec.pixel, dtype=float)
        true_dx = x - np.interp(np.interp(x, pix, lam0), lam1, pix)
        diffs.append(sol.fiber_offset(x, np.full(x.size, m), 0) - true_dx)
    d = np.concatenate(diffs)
    # fiber 0 sits ~11 px from fiber 1; each fiber's solution is good to ~3 m/s (0.002 px), so
    # the offset to ~0.003 px rms (measured 0.0010 px); 0.006 px is ~2x that expectation
    assert np.sqrt(np.mean(d**2)) < 0.006
