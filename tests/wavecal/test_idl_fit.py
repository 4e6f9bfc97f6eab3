"""The original's thar_fitall (nres.wavecal.idl_fit) against its GDL run (idl_reference/thar).

Fixture ``tests/data/wavecal_thar_fit_gdl.npz``: GDL's gsw=0 catalogue (all 1845 lines), its 1694
matched lines, fitted C0..C14 and scalars, and the final wavelengths and the truth at every 64th
column. The formal 1-sigma errors of the physical parameters of this fit (from the matched lines'
xperr) are 3.6e-8 in sinalp, 2.3e-4 mm in fl and 1.2e-4 mm in y0: the parity tolerances below are
small fractions of them. The LM stopping point depends on last-bit rounding (the legacy Jacobian
is made of differences of a few rounding units): perturbing the catalogue positions by 1e-6 px
moves it by up to 2.3e-9 in sinalp, 2.1e-5 mm in fl and y0, 1.7e-6 nm in lam_c and 0.95% in
chi2; the tolerances cover that spread, so the tests do not depend on this machine's libm.
"""

import dataclasses
import math
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from nres.errors import FitError, InvalidParameterError
from nres.instrument import PhysicalModel, thar_lines
from nres.spectrum import EchelleSpectrum
from nres.wavecal import _kernels, apply_solution
from nres.wavecal.idl_fit import _rcubic, fit_idl, thar_fitall_legacy, width_filter
from nres.wavecal.idl_match import pair_votes

DATA = Path(__file__).parents[1] / "data" / "wavecal_thar_fit_gdl.npz"


@pytest.fixture(scope="module")
def gdl():
    return dict(np.load(DATA))


@pytest.fixture(scope="module")
def start():
    # the GDL run: site lsc, MJD 58200, get_specdat's newest row (58190), single-precision pi
    return PhysicalModel.for_site("lsc", mjd=58200, legacy=True)


def _catalog(gdl):
    c = gdl["catalog"].astype(np.float64)
    return {"order_index": c[:, 0], "x": c[:, 1], "amp": c[:, 2], "wid": c[:, 3]}


@pytest.fixture(scope="module")
def legacy_fit(gdl, start):
    return fit_idl(_catalog(gdl), model=start, legacy=True)


@pytest.fixture(scope="module")
def default_fit(gdl, start):
    return fit_idl(_catalog(gdl), model=start)


def test_matched_lines_identical(legacy_fit, gdl):
    lines = legacy_fit.lines
    assert len(lines) == gdl["matched_x"].size == 1694
    np.testing.assert_array_equal(lines["order_index"], gdl["matched_order_index"])
    np.testing.assert_array_equal(lines["x"], gdl["matched_x"])
    np.testing.assert_array_equal(lines["wavelength"].to_value(u.nm), gdl["matched_line"])
    # model wavelengths and residuals at the final parameters: 1.3e-6 nm measured (the two LM runs
    # stop at slightly different points of the same minimum, see the parameter test)
    np.testing.assert_allclose(lines["model"].to_value(u.nm), gdl["matched_model"], rtol=0, atol=3e-6)
    np.testing.assert_allclose(lines["residual"].to_value(u.nm), gdl["matched_residual"], rtol=0, atol=3e-6)
    # matcherr: IDL keeps dlambda/dx in single precision (3.2e-6 relative measured)
    np.testing.assert_allclose(lines["error"].to_value(u.nm), gdl["matched_error"], rtol=1e-5)
    # the unmatched lines of the skipped top order (index 66) keep a zero residual, as in IDL
    assert legacy_fit.qc["n_width"] == 1718 and legacy_fit.qc["n_clipped"] == 42


def test_physical_parameters(legacy_fit, gdl):
    s = gdl["scalars"]  # nmatch, sinalp, grinc, fl, y0, z0, rms_c, dlam2_c, chi2_c, mgbdisp, lammid
    q = legacy_fit.qc
    assert q["nmatch"] == int(s[0])
    # measured: 1.9e-9 (0.05 sigma), 8.6e-7 mm (0.004 sigma), 1.3e-5 mm (0.11 sigma); limits about
    # twice the rounding spread (module docstring), <= 0.33 sigma
    assert abs(q["sinalp"] - s[1]) < 5e-9
    # GDL converts to degrees with single-precision !pi (2.1e-6 deg at 76.36 deg): undo that first
    grinc_gdl = s[2] * float(np.float32(math.pi)) / math.pi
    assert abs(q["grinc"] - grinc_gdl) < math.degrees(5e-9 / math.cos(math.radians(s[2])))
    assert abs(q["fl"] - s[3]) < 5e-5
    assert abs(q["y0"] - s[4]) < 4e-5
    # z0 follows fl through the tie 1.5751e-4 per mm
    assert abs(q["z0"] - s[5]) < 1.5751e-4 * 5e-5 + 1e-12


def test_coefficients_and_scalars(legacy_fit, gdl):
    s = gdl["scalars"]
    q = legacy_fit.qc
    # C0..C14 (nm): 5.0e-7 measured, the polynomial absorbing the small parameter differences
    np.testing.assert_allclose(legacy_fit.model.coefs, gdl["coefs"], rtol=0, atol=1e-6)
    # rms_c 2.8e-9 nm off (2e-5 relative), dlam2 8.4e-5 and chi2 8.7e-4 relative, mgbdisp 5.2e-7 nm,
    # lammid 1.3e-8 nm measured
    assert abs(q["rms_nm"] - s[6]) < 1e-8
    assert abs(q["dlam2"] / s[7] - 1) < 3e-4
    assert abs(q["chi2"] / s[8] - 1) < 2e-2
    assert abs(q["mgbdisp"] - s[9]) < 2e-6
    assert abs(q["lammid"] - s[10]) < 1e-7
    np.testing.assert_allclose(
        legacy_fit.lines["best"].to_value(u.nm), gdl["matched_best"], rtol=0, atol=3e-6
    )


def test_final_wavelengths(legacy_fit, gdl):
    lam = legacy_fit.wavelength_grid().to_value(u.nm)[:, gdl["lam_columns"]]
    # the README's expectation for lam_c is ~1e-6 nm; 8.7e-7 max and 2.3e-7 rms measured
    np.testing.assert_allclose(lam, gdl["lam_c"], rtol=0, atol=3e-6)
    assert np.sqrt(np.mean((lam - gdl["lam_c"]) ** 2)) < 1e-6


def test_rcubic_reproduces_gdl_given_its_matches(gdl, start):
    # thar_rcubic alone, on GDL's own matched lines: the linear fit is deterministic
    lines = {
        "x": gdl["matched_x"].astype(np.float64),
        "io": gdl["matched_order_index"].astype(np.int64),
        "residual": gdl["matched_residual"],
    }
    dlam2 = float(np.mean(gdl["matched_residual"] ** 2))
    assert abs(dlam2 / gdl["scalars"][7] - 1) < 1e-12
    incr, res, weight, rms, chi2, _ = _rcubic(lines, dlam2, start)
    # double vs GDL's single-precision basis and normal matrix: 2e-12 nm measured
    np.testing.assert_allclose(np.asarray(start.coefs) - incr, gdl["coefs"], rtol=0, atol=1e-10)
    best = gdl["matched_model"] - (gdl["matched_residual"] - res)
    np.testing.assert_allclose(best, gdl["matched_best"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(weight, gdl["matched_weight"], rtol=0, atol=1e-7)
    assert abs(rms / gdl["scalars"][6] - 1) < 1e-9
    # chi2 uses the weights, from IDL's single-precision quartiles: 7.8e-8 relative measured
    assert abs(chi2 / gdl["scalars"][8] - 1) < 1e-6


def test_default_fixes_the_order_loop(legacy_fit, default_fit, gdl):
    # the original skips order index 66 (order index 1 has no line after the width filter)
    assert 66 not in legacy_fit.lines["order_index"]
    assert np.sum(default_fit.lines["order_index"] == 66) >= 15
    # both recover the injected truth; 0.004 px rms for both (GDL: 0.0031 px, README)
    truth = gdl["truth_lam"]
    disp = np.gradient(truth, gdl["lam_columns"], axis=1)
    for fit in (legacy_fit, default_fit):
        lam = fit.wavelength_grid().to_value(u.nm)[:, gdl["lam_columns"]]
        assert np.sqrt(np.mean(((lam - truth) / disp) ** 2)) < 0.006
    # the absolute finite-difference steps converge in fewer evaluations (52 vs 99 measured)
    assert default_fit.qc["nfev"] < legacy_fit.qc["nfev"]


def _vote_twin(lam_obs, starts, stops, lam_ref, rstarts, rstops):
    """numpy reference of the kernel: dense pair votes per order, acceptance, nearest list line."""
    out = np.full(lam_obs.size, -1)
    for o0, o1, r0, r1 in zip(starts, stops, rstarts, rstops, strict=True):
        obs, ref = lam_obs[o0:o1], lam_ref[r0:r1]
        if obs.size < 2 or ref.size <= 2:
            continue
        votes = pair_votes(obs, ref)
        accept = votes >= max(5, 2.0 / 3.0 * votes.max())
        for i in range(obs.size):
            cand = np.flatnonzero(accept[:, i])
            if cand.size:
                out[o0 + i] = r0 + cand[np.argmin(np.abs(obs[i] - ref[cand]))]
    return out


def test_vote_kernel_matches_numpy_twin():
    rng = np.random.default_rng(5)
    obs, ref, st, sp, rst, rsp = [], [], [], [], [], []
    n_o = n_r = 0
    for no, nr in [(30, 50), (1, 10), (8, 2), (45, 70), (0, 5), (12, 12)]:
        truth = np.sort(rng.uniform(500.0, 510.0, nr))
        pick = np.sort(rng.choice(nr, size=min(no, nr), replace=False)) if no <= nr else np.arange(nr)
        o = truth[pick] + rng.normal(0.0, 0.002, pick.size) + 0.05
        o = np.sort(np.concatenate([o, rng.uniform(500.0, 510.0, max(no - pick.size, 0))]))
        obs.append(o)
        ref.append(rng.permutation(truth) if nr == 12 else truth)  # one list out of order
        st.append(n_o)
        sp.append(n_o + o.size)
        rst.append(n_r)
        rsp.append(n_r + nr)
        n_o += o.size
        n_r += nr
    lam_obs, lam_ref = np.concatenate(obs), np.concatenate(ref)
    args = [np.array(a, dtype=np.int64) for a in (st, sp, rst, rsp)]
    out = np.empty(lam_obs.size, dtype=np.int64)
    _kernels.vote_match_orders(lam_obs, args[0], args[1], lam_ref, args[2], args[3], 0.3, 0.015, 5, out)
    expected = _vote_twin(lam_obs, *args[:2], lam_ref, *args[2:])
    np.testing.assert_array_equal(out, expected)
    assert np.sum(out >= 0) > 60


def test_width_filter_known_answer():
    x = np.linspace(1000.0, 3000.0, 41)
    wida = np.full(x.size, 4.3)  # detrended width 4.3: histogram bin [4.2, 4.4)
    wida[[3, 10]] = [4.75, 3.6]  # 0.55 and 0.6 px off the mode (4.2): rejected
    wida[[5, 20]] = [4.65, 3.75]  # 0.45 px off: kept
    wid = wida + (x - 2048.0) * 0.8 / 4096.0
    keep, mode = width_filter(x, wid)
    assert mode == pytest.approx(4.2)  # the left edge of the mode's bin, as the original
    assert keep.sum() == 39 and not keep[3] and not keep[10]
    keep3, _ = width_filter(x, wid, tolerance=3.0)  # site tlv
    assert keep3.all()
    with pytest.raises(FitError, match="width"):
        width_filter(np.array([10.0]), np.array([4.0]))


@pytest.fixture(scope="module")
def synthetic(start):
    """Noiseless arc: Gaussians (sigma 1.75 px) of the Redman lines on 30 counts, drawn with a model
    perturbed as the GDL case (grinc +0.0005 deg, fl +0.005 mm, y0 +0.002 mm; up to 0.67 px)."""
    grinc = math.degrees(math.asin(start.sinalp)) + 0.0005
    truth = dataclasses.replace(
        start, sinalp=math.sin(math.radians(grinc)), fl=start.fl + 0.005, y0=start.y0 + 0.002
    )
    grid = truth.wavelength_grid()[1].to_value(u.nm)
    lines = thar_lines("redman")
    lam, bright = lines["wavelength"].to_value(u.nm), np.asarray(lines["intensity"])
    k = np.arange(start.nx, dtype=np.float64)
    flux = np.full((start.nord, start.nx), 30.0)
    for i, row in enumerate(grid):
        s = (lam > row[0]) & (lam < row[-1])
        xl = np.interp(lam[s], row, k)
        peak = 0.5 * np.minimum(bright[s], 60000.0)
        flux[i] += (peak[:, None] * np.exp(-0.5 * ((k[None] - xl[:, None]) / 1.75) ** 2)).sum(axis=0)
    return flux, grid


def test_thar_fitall_legacy_recovers_injected_truth(synthetic, start):
    flux, grid = synthetic
    spec = EchelleSpectrum(flux[None, ::-1], orders=start.orders[::-1], fibers=[1])  # any order layout
    fit = thar_fitall_legacy(spec, model=start, legacy=True)
    disp = np.gradient(grid, axis=1)
    err = (fit.wavelength_grid().to_value(u.nm) - grid) / disp
    # 0.0011 px rms, 0.0036 px max measured (start: 0.67 px max); the floor is the 3-point centroid
    # bias (<= 0.008 px per line for sigma ~1.75 px, idl-wavecal.md 4), averaged down by the fit
    assert np.sqrt(np.mean(err**2)) < 0.003
    assert np.abs(err).max() < 0.01
    # the solution object gives the same wavelengths through apply_solution
    sol = fit.to_solution()
    out = apply_solution(spec, sol)
    np.testing.assert_allclose(
        out.wavelength.to_value(u.nm)[0, ::-1], fit.wavelength_grid().to_value(u.nm), atol=1e-9
    )


def test_input_validation(start, gdl):
    with pytest.raises(InvalidParameterError, match="wid"):
        fit_idl({"order_index": [0], "x": [1.0], "amp": [1.0]}, model=start)
    with pytest.raises(InvalidParameterError, match="shape"):
        thar_fitall_legacy(np.zeros((3, 10)), model=start)
    with pytest.raises(FitError, match="not a ThAr"):
        thar_fitall_legacy(np.random.default_rng(1).normal(100, 1, (67, 4096)), model=start)
    with pytest.raises(ValueError, match="order_loop"):
        fit_idl(_catalog(gdl), model=start, order_loop="bad")
