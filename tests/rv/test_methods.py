"""measure(method="ccf"/"blocks"), rv_mask and the continuum rule: known answers on simulated spectra
and the literal routines under their legacy options."""

from pathlib import Path

import astropy.units as u
import numba
import numpy as np
import pytest
from astropy.nddata import VarianceUncertainty

from nres._jit import set_num_threads
from nres.doppler import C_M_S
from nres.flags import Flag
from nres.rv import Template, continuum, measure, mgbcc, rv_mask
from nres.sim.extracted import simulate_extracted
from nres.spectrum import EchelleSpectrum

DATA = Path(__file__).parents[1] / "data"
ORDERS = [80, 81, 82]
N_PIXEL = 1024
Z_B = 1.0e-5


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():
    """Small fits: one numba thread (thread start-up dominates on the loaded machine)."""
    previous = numba.get_num_threads()
    set_num_threads(1)
    yield
    set_num_threads(previous)


def _truth_template(star, spec, oversample=6):
    lam = spec.wavelength.to_value(u.nm)[0]
    grid = np.array([np.linspace(lo.min() - 1.0, lo.max() + 1.0, oversample * N_PIXEL) for lo in lam]) * u.nm
    return Template(grid, star.flux(grid), wavelength_medium="vacuum", wavelength_frame="barycentric")


@pytest.fixture(scope="module")
def noiseless():
    out = {}
    for v in (-100.0, 0.0, 100.0):
        out[v] = simulate_extracted(
            seed=1, rv=v * u.km / u.s, z_b=Z_B, orders=ORDERS, n_pixel=N_PIXEL, noiseless=True
        )
    return out


@pytest.mark.parametrize("v", [-100.0, 0.0, 100.0])
def test_blocks_bias_noiseless(noiseless, v):
    spec, truth = noiseless[v]
    r = measure(spec, _truth_template(truth.template, spec), method="blocks", z_b=Z_B)
    # target (issue 10): |bias| < 1 m/s with the defects fixed; measured 0.03 m/s
    assert abs(r.rv_observed.to_value(u.m / u.s) - C_M_S * truth.z_obs) < 1.0
    assert abs(r.rv.to_value(u.m / u.s) - C_M_S * truth.z_star) < 1.0
    per_block = r.meta["blocks"]["rv"] - C_M_S * truth.z_obs
    assert r.meta["n_blocks_used"] >= 30  # 3 orders x 12 blocks, edge blocks may go
    assert np.all(np.abs(per_block[r.meta["blocks"]["used"]]) < 3.0), per_block  # each block: 3 m/s
    assert r.meta["legacy_options"]["block_sign"] == "fixed"


@pytest.mark.parametrize("v", [-100.0, 0.0, 100.0])
def test_ccf_default_recovers_velocity(noiseless, v):
    spec, truth = noiseless[v]
    r = measure(spec, _truth_template(truth.template, spec), method="ccf", z_b=Z_B)
    # the CCF peak (parabola on a 0.5 km/s grid) is not an unbiased estimator: mgbcc's own spec is
    # 30 m/s (idl-rv-ops.md test idea 1); measured 1.8-5.5 m/s here with the truth template
    assert abs(r.rv_observed.to_value(u.m / u.s) - C_M_S * truth.z_obs) < 20.0
    # diagnostics: R = 53000 and 5.5 km/s lines give a ~11 km/s FWHM; contrast in (0, 1)
    assert 6e3 < r.ccf["fwhm"][0].to_value(u.m / u.s) < 16e3
    assert np.isfinite(r.ccf["bisector_span"][0].value)
    assert r.meta["legacy_options"]["ccf_redshift"] == "exact"


def _gdl_spectrum(case="vp14p200"):
    with np.load(DATA / "rv_gdl_cases.npz") as d:
        g = {k.split("__")[1]: d[k] for k in d.files if k.startswith(case + "__")}
    star = g["in_star"].astype(float)
    spec = EchelleSpectrum(
        star[None, None],
        uncertainty=VarianceUncertainty(np.maximum(star, 1.0)[None, None]),
        wavelength=g["in_slam"][None, None] * u.nm,
        orders=[90],
        fibers=[0],
    )
    tmpl = Template(g["in_zlam"] * u.nm, g["in_zstar"].astype(float), wavelength_frame="barycentric")
    return spec, tmpl, g


def test_ccf_legacy_is_mgbcc():
    spec, tmpl, g = _gdl_spectrum()
    r = measure(spec, tmpl, method="ccf", legacy=True, z_b=0.0)
    direct = mgbcc(g["in_zlam"], g["in_zstar"], g["in_slam"], g["in_star"])
    assert r.meta["rcc"][0] == direct.rcc
    # dlnlambda: the lag is the redshift itself
    assert r.rv_observed.to_value(u.m / u.s) == pytest.approx(C_M_S * direct.rcc, rel=1e-12)
    # IDL's parabolic /LSQUADRATIC vs GDL's straight line: 1e-8 in rcc (3 m/s) on this case (measured 8e-9)
    assert abs(direct.rcc - g["mgbcc_scalars"][0]) < 1e-8
    exact = measure(spec, tmpl, method="ccf", legacy=True, ccf_redshift="exact", z_b=0.0)
    assert exact.rv_observed.to_value(u.m / u.s) == pytest.approx(C_M_S * np.expm1(direct.rcc), rel=1e-12)


def test_blocks_legacy_sign_and_error():
    spec, tmpl, g = _gdl_spectrum()
    idl = measure(spec, tmpl, method="blocks", legacy=True, z_b=0.0)
    fixed = measure(spec, tmpl, method="blocks", legacy=True, block_sign="fixed", z_b=0.0)
    assert idl.meta["rcc"] == pytest.approx(fixed.meta["rcc"], abs=0)
    nz = idl.meta["block_rr"] != 0
    np.testing.assert_array_equal(idl.meta["block_rr"][nz], -fixed.meta["block_rr"][nz])
    # the chain reproduces GDL's robust average (GDL resampled with a straight line, we with IDL's
    # parabola: the block shifts differ by the residual of the pre-shift, <= 1e-8 here)
    assert abs(idl.meta["rroa"] - g["pipe_rroa_rrom_rroe"][0]) < 1e-8
    # defect 2: the "redshift error" is the offset's standard error, O(0.1) for a redshift of O(1e-7):
    # GDL gives 0.09-0.21 on this case, we 0.11-0.20 (it depends on the resampled template, which
    # differs by GDL's straight-line interpolation)
    assert np.all((idl.meta["block_err"][0] > 0.05) & (idl.meta["block_err"][0] < 0.3))
    assert np.all((g["pipe_bf2_err"] > 0.05) & (g["pipe_bf2_err"] < 0.3))
    shift = measure(spec, tmpl, method="blocks", legacy=True, block_error="shift", z_b=0.0)
    assert np.median(shift.meta["block_err"][nz]) < 1e-3 * np.median(idl.meta["block_err"][nz])


def test_rv_mask_flags():
    spec, _ = simulate_extracted(seed=3, rv=0 * u.km / u.s, z_b=0.0, orders=[60, 61, 62], noiseless=True)
    flags = np.asarray(spec.flags).copy()
    flags[0, 1, 2000] |= np.uint16(Flag.BLEED)
    spec = EchelleSpectrum(
        spec.data,
        uncertainty=spec.uncertainty,
        flags=flags,
        wavelength=spec.wavelength,
        orders=spec.orders,
        fibers=spec.fibers,
        blaze=spec.blaze,
    )
    f = rv_mask(spec)
    lam = spec.wavelength.to_value(u.nm)[0]
    # O2 A band 758-777 nm (air) widened by 31 km/s: pixels well inside are TELLURIC, far outside not
    inside = (lam > 760.0) & (lam < 776.0)
    outside = ((lam > 752.0) & (lam < 757.0)) | ((lam > 778.3) & (lam < 779.5))  # next bands: 750, 780 nm
    assert inside.any() and np.all(f[inside] & Flag.TELLURIC)
    assert not np.any(f[outside] & Flag.TELLURIC)
    # badlams 'w' row 764.5 +- 5.0 nm (vacuum)
    assert np.all(f[np.abs(lam - 764.5) < 4.9] & Flag.BAD_WAVELENGTH)
    assert np.all(f[:, :20] & Flag.ORDER_EDGE) and not np.any(f[:, 20:-20] & Flag.ORDER_EDGE)
    low = np.asarray(spec.blaze)[0] < 0.05 * np.asarray(spec.blaze)[0].max(axis=1, keepdims=True)
    assert np.array_equal((f & Flag.LOW_SIGNAL) != 0, low)
    assert np.all(f[1, 1997:2004] & Flag.BLEED) and not f[1, 1996] & Flag.BLEED


def test_continuum_rule_recovers_a_smooth_continuum():
    x = np.linspace(-1, 1, 2000)
    cont = 1000.0 * (1 + 0.3 * x - 0.2 * x**2 + 0.05 * x**3)
    rng = np.random.default_rng(5)
    lines = np.ones_like(x)
    for c, d in zip(rng.uniform(-1, 1, 60), rng.uniform(0.05, 0.8, 60), strict=True):
        lines *= 1 - d * np.exp(-0.5 * ((x - c) / 0.002) ** 2)
    est = continuum(cont * lines)
    # lines cover ~15 % of the pixels and only ever lower the flux: the upper envelope is within
    # 0.3 % of the true continuum everywhere (measured 0.05 %)
    assert np.max(np.abs(est / cont - 1)) < 3e-3


@pytest.mark.parametrize("method", ["template", "blocks", "ccf"])
def test_ccf_diagnostics_span_three_fwhm(noiseless, method):
    """Every method that forms a CCF reports one wide enough for its bisector: +-3 FWHM (>= +-2.5 here,
    the FWHM being re-measured by the Gaussian fit), with a finite bisector span; for this symmetric
    simulated star (Gaussian lines, no convective blueshift) the span is small."""
    spec, truth = noiseless[0.0]
    r = measure(spec, _truth_template(truth.template, spec), method=method, z_b=Z_B)
    v = r.ccf["velocity"][0].to_value(u.m / u.s)
    fwhm = r.ccf["fwhm"][0].to_value(u.m / u.s)
    centre = r.ccf["center"][0].to_value(u.m / u.s)
    assert 6e3 < fwhm < 16e3  # R = 53000 and 5.5 km/s lines: a ~11 km/s CCF
    assert v.min() < centre - 2.5 * fwhm and v.max() > centre + 2.5 * fwhm
    span = r.ccf["bisector_span"][0].to_value(u.m / u.s)
    # blends of unequal lines leave a small asymmetry on 3 orders: measured -3.6 m/s (template, blocks)
    # and -0.3 m/s (ccf); 20 m/s is far below the several hundred m/s a +-4 km/s window fails with (NaN)
    assert np.isfinite(span) and abs(span) < 20.0, span
