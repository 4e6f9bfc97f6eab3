"""Scattered light: smooth inter-order model, residual zero within its error, unbiased fluxes."""

import numpy as np
import pytest

from nres.errors import InvalidParameterError
from nres.extract import (
    extract,
    fit_scattered_light,
    inter_order_mask,
    measure_profiles,
    subtract_scattered_light,
)

from ._extract_synth import make_traces, render, star_flux, to_frame

NX, X0, NY = 512, 1700, 200
RN = 5.0


def smooth_background(shape, x0):
    """A smooth 2-D scattered-light field (e-): a tilted plane plus a broad bump, 15..60 e-."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    x = x + x0
    return 15.0 + 0.1 * y + 20.0 * np.exp(-0.5 * (((x - 1900.0) / 400.0) ** 2 + ((y - 90.0) / 150.0) ** 2))


@pytest.fixture(scope="module")
def scene():
    tr = make_traces(n_orders=4, tilt=40.0, y_first=30.0)
    x = np.arange(NX) + X0
    bkg = smooth_background((NY, NX), X0)
    sf = star_flux(x, len(tr), level=5.0e3)
    clean = render(tr, sf, shape=(NY, NX), x0=X0)
    flat = to_frame(render(tr, np.full((len(tr), NX), 3.0e4), shape=(NY, NX), x0=X0), read_noise=RN, x0=X0)
    prof = measure_profiles(flat, tr, n_blocks=4)
    return tr, bkg, sf, clean, prof


def test_noiseless_model_and_unbiased_flux(scene):
    tr, bkg, sf, clean, prof = scene
    frame = to_frame(clean + bkg, read_noise=RN, x0=X0)
    corrected, model = subtract_scattered_light(frame, tr)
    # inside the apertures the model interpolates across the traces: compare with the truth there
    inside = ~inter_order_mask((NY, NX), tr, frame.meta, margin=0.0)
    err = np.abs(model - bkg)[inside].max()
    assert err < 0.2, err  # e- per pixel; 11 px x 0.2 e- = 2 e- < 0.04 % of a 5000 e- column
    ref = extract(to_frame(clean, read_noise=RN, x0=X0), tr, profile=prof)
    got = extract(corrected, tr, profile=prof, background=model)
    bias = np.nanmean(got.data / ref.data - 1.0, axis=-1)
    # issue target: extracted flux unbiased to < 0.2 % against the frame without scattered light
    assert np.all(np.abs(bias) < 2e-3), bias
    box_bias = np.nanmean(
        extract(corrected, tr, method="box").data
        / extract(to_frame(clean, read_noise=RN, x0=X0), tr, method="box").data
        - 1.0,
        axis=-1,
    )
    assert np.all(np.abs(box_bias) < 2e-3), box_bias


def test_noisy_inter_order_residual_is_zero_within_error(scene):
    tr, bkg, _, clean, _ = scene
    rng = np.random.default_rng(4)
    noisy = rng.poisson(clean + bkg) + rng.normal(0, RN, clean.shape)
    frame = to_frame(noisy, read_noise=RN, x0=X0, var=RN**2 + clean + bkg)
    model = fit_scattered_light(frame, tr)
    far = inter_order_mask((NY, NX), tr, frame.meta)
    resid = (noisy - model)[far]
    se = resid.std() / np.sqrt(resid.size)
    assert abs(resid.mean()) < 4 * se, (resid.mean(), se)
    # and the model is close to the truth everywhere (noise of ~1e5 samples over ~30 spline terms)
    assert np.abs(model - bkg).max() < 1.5


def test_not_forced_non_negative(scene):
    tr, _, _, clean, _ = scene
    frame = to_frame(clean - 3.0, read_noise=RN, x0=X0)  # a negative pedestal (over-subtracted bias)
    model = fit_scattered_light(frame, tr)
    # the Gaussian wings 7.25 px (4.8 sigma) from a trace add ~1e-3 e- to the inter-order pixels
    np.testing.assert_allclose(model, -3.0, atol=0.01)
    assert np.all(model < 0)


def test_bad_options(scene):
    tr, bkg, _, clean, _ = scene
    with pytest.raises(InvalidParameterError):
        fit_scattered_light(to_frame(clean, read_noise=RN, x0=X0), tr, x_bin=0)


def _inter_order_mask_twin(ny, centers, half):
    """Numpy reference of the kernel: the dense comparison, one full-frame pass per trace."""
    rows = np.arange(ny)[:, None]
    far = np.ones((ny, centers.shape[1]), dtype=bool)
    for c in centers:
        ok = np.isfinite(c)
        far[:, ok] &= np.abs(rows - c[None, ok]) > half
    return far


def test_inter_order_mask_kernel_matches_twin():
    from nres.extract._extract_kernels import _inter_order_mask

    rng = np.random.default_rng(5)
    ny, nx = 120, 64
    cen = rng.uniform(-10.0, ny + 10.0, (9, nx))
    cen[2, 5:20] = np.nan  # outside a trace's x range
    cen[3, :4] = np.inf
    cen[4] = np.round(cen[4]) + 4.5  # rows exactly at +-half: the comparison is strict
    for half in (0.0, 4.5, 7.25):
        got = _inter_order_mask(ny, np.ascontiguousarray(cen), half)
        np.testing.assert_array_equal(got, _inter_order_mask_twin(ny, cen, half))  # exact: same test


def test_inter_order_mask_known_rows(scene):
    # trace centres at known rows: the excluded band is exactly the rows within half of each centre
    tr = scene[0]
    frame_meta = to_frame(np.zeros((NY, NX)), read_noise=RN, x0=X0).meta
    far = inter_order_mask((NY, NX), tr, frame_meta, margin=1.0)
    x = np.arange(NX) + X0
    cen = tr.center(x)
    half = 0.5 * tr.box_height + 1.0
    for col in (0, NX // 2, NX - 1):
        near = np.zeros(NY, bool)
        for c in cen[:, col]:
            near |= np.abs(np.arange(NY) - c) <= half
        np.testing.assert_array_equal(far[:, col], ~near)


def _fit_grid_twin(data, use, x_bin, y_knot, x_knot):
    """Reference of the batched ``_fit_grid``: one scipy LSQ spline per column bin along y (knots
    halved until the fit is finite), then one along x, evaluated point by point."""
    from scipy.interpolate import make_lsq_spline

    def fit(x, y, w, spacing, x_eval):
        lo, hi = x_eval[0], x_eval[-1]
        n_int = max(int(round((hi - lo) / spacing)), 1)
        while n_int >= 1:
            t = np.r_[[lo] * 4, np.linspace(lo, hi, n_int + 1)[1:-1], [hi] * 4]
            c = make_lsq_spline(x, y, t, k=3, w=w).c  # NaN when rank-deficient (scipy >= 1.15)
            if np.isfinite(c).all():
                return make_lsq_spline(x, y, t, k=3, w=w)(x_eval)
            n_int //= 2
        raise AssertionError("no spline")

    ny, nx = data.shape
    nb = nx // x_bin
    edges = np.linspace(0, nx, nb + 1).round().astype(int)
    rows = np.arange(ny, dtype=float)
    per_bin = []
    for b in range(nb):
        u, d = use[:, edges[b] : edges[b + 1]], data[:, edges[b] : edges[b + 1]]
        n, s = u.sum(axis=1), (u * d).sum(axis=1)
        ok = n > 0
        per_bin.append(fit(rows[ok], s[ok] / n[ok], np.sqrt(n[ok]), y_knot, rows))
    xc = 0.5 * (edges[:-1] + edges[1:] - 1)
    vals = np.vstack([per_bin[:1], per_bin, per_bin[-1:]])
    xs, w = np.r_[0.0, xc, nx - 1.0], np.r_[1e-3, np.ones(nb), 1e-3]
    return fit(xs, vals, w, x_knot, np.arange(nx, dtype=float)).T


def test_batched_grid_fit_matches_per_bin_scipy_fits():
    from nres.extract.background import _fit_grid

    rng = np.random.default_rng(11)
    ny, nx = 300, 256
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    data = smooth_background((ny, nx), 1700) + rng.normal(0, 3.0, (ny, nx))
    use = (np.sin(2 * np.pi * (y + 0.01 * x) / 23.0) > 0.3) & (rng.random((ny, nx)) > 0.05)
    # bin 2 has no samples in rows 60..239 (six 30 px knot intervals, whole B-spline supports,
    # are empty): the batched solve must hand it to the knot-dropping path, as the per-bin fit did
    use[60:240, 64:96] = False
    got = _fit_grid(data, use, 32, 30.0, 96.0)
    ref = _fit_grid_twin(data, use, 32, 30.0, 96.0)
    # the same least-squares problems, normal equations (LDL^T) vs scipy's QR: round-off only
    # (values ~15..60 e-, conditioning of a cubic B-spline basis ~1e2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    assert got.flags.c_contiguous
