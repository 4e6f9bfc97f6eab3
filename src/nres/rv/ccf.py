"""``measure(method="ccf")``: the original's Stage A cross-correlation generalised to all orders.

Default (``ccf_engine="nres"``): every order of the data and the template is continuum-normalised by
the rule of :mod:`nres.rv.continuum`, resampled on a uniform ln(lambda) grid of step ``h`` (the finest
pixel step over the orders divided by ``oversample``; the template from its spline, the data by a
cubic spline through its good pixels), high-passed by the original's 150 km/s boxcar and correlated
(FFT, no wrap-around) over the velocity range. The per-order CCFs are summed with weights 1 / (median
normalised variance) and the peak refined by mgbcc's parabola; the redshift is exact,
``z = exp(lag) - 1``. Per-order velocities come from each order's own CCF peak.

``rv_err_photon`` is the photon-limited precision of the data given the template (Bouchy et al.
2001: ``sigma_s^-2 = sum (dT/d ln lambda)^2 / variance`` over the good pixels, template variance
included): the CCF peak is not an optimal estimator, so its true scatter is larger; see
``rv_err_empirical`` (from the per-order scatter).

Legacy (``ccf_engine="mgbcc"``): the literal :func:`nres.rv.idl_ccf.mgbcc` on the data as given
(the original used the blaze-subtracted spectrum, :func:`nres.extract.blaze_subtracted`) and the
template's own samples; ``ccf_orders="mgb"`` uses the Mg b order (m = 90) only, and
``ccf_redshift="dlnlambda"`` takes the lag itself as z.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import make_interp_spline

from ..doppler import C_M_S
from ..errors import FitError
from ..flags import Flag
from . import _idl, _kernels
from .continuum import continuum, continuum_rows, normalize
from .idl_ccf import HIGHPASS_KM_S, mgbcc

__all__ = ["MGB_ORDER"]

#: The original's Mg b order (index 38 on NRES): physical order m = 90 (512-523 nm).
MGB_ORDER = 90


def _peak(cc, lags):
    """mgbcc's peak refinement on a CCF sampled at integer lags: parabola over |j - ix| <= 0.33 FWHM
    (>= 5 points, else |j - ix| <= 2); returns (lag, height, fwhm in lags)."""
    ix = int(np.argmax(cc))
    peak = cc[ix]
    half = 0.5 * peak
    right = np.flatnonzero(cc[ix:] <= half)
    left = np.flatnonzero(cc[: ix + 1][::-1] <= half)
    if right.size == 0 or left.size == 0 or ix == 0 or ix == cc.size - 1:
        return np.nan, np.nan, np.nan
    kr, kl = ix + int(right[0]), ix - int(left[0])
    xr = kr - 1 + (cc[kr - 1] - half) / (cc[kr - 1] - cc[kr])
    xl = kl + 1 - (cc[kl + 1] - half) / (cc[kl + 1] - cc[kl])
    fwhm = xr - xl
    j = np.arange(cc.size) - ix
    near = np.abs(j) <= 0.33 * fwhm
    if near.sum() < 5:
        near = np.abs(j) <= 2
    c2, c1, c0 = np.polyfit(j[near].astype(float), cc[near], 2)
    ds = -c1 / (2.0 * c2)
    return float(lags[ix] + ds), float(c0 + c1 * ds + c2 * ds * ds), float(fwhm)


def _highpass(y, width):
    return y - _idl.smooth(y, width)


def _template_values(template, segs, u, derivative=False):
    """Template point values (and d/d ln lambda) at u (n_order, n) for each order's segment (NaN
    outside / no segment), one jitted call over all orders (:func:`nres.rv._kernels.template_model`)."""
    n_o, n = u.shape
    start = np.arange(n_o + 1, dtype=np.int64) * n
    tv, td = _kernels.template_model(
        np.ascontiguousarray(u, dtype=np.float64).ravel(),
        np.zeros(n_o * n),
        start,
        np.ascontiguousarray(segs, dtype=np.int64),
        *template._pieces,
        np.zeros(n_o),
        False,
    )
    return (tv.reshape(n_o, n), td.reshape(n_o, n)) if derivative else tv.reshape(n_o, n)


def _photon_sigma(template, seg, x, s, var_n, good, tvar):
    """Photon-limited sigma of s = ln(1 + z) per order (Bouchy 2001) from the template derivative."""
    seg = np.asarray(seg, dtype=np.int64)
    valid = (seg >= 0) & np.isfinite(s)
    u = x - np.where(valid, s, 0.0)[:, None]
    tv, td = _template_values(template, np.where(valid, seg, -1), u, derivative=True)
    tok = np.isfinite(tv)
    cont = continuum_rows(np.where(tok, tv, np.nan), tok)
    td = td / cont
    v = var_n + (0.0 if tvar is None else tvar)
    with np.errstate(invalid="ignore"):
        ok = good & np.isfinite(td) & np.isfinite(v) & (v > 0)
    info = np.sum(np.where(ok, td**2 / np.where(ok, v, 1.0), 0.0), axis=1)
    with np.errstate(divide="ignore"):
        return np.where(valid & (ok.sum(axis=1) > 10), 1.0 / np.sqrt(info), np.nan)


def measure_ccf(template, orders, lam, data, var, good, blaze, *, v_range, clip, opts, oversample, tvar_fn):
    """The ``ccf`` method (see the module docstring). Returns the tuple measure() assembles."""
    from .measure import _combine

    x = np.log(lam)
    n_o = x.shape[0]
    segs = np.array([template.segment_for(float(np.nanmin(xx)), float(np.nanmax(xx))) for xx in x])
    use = np.ones(n_o, dtype=bool) if opts["ccf_orders"] == "all" else np.asarray(orders) == MGB_ORDER
    if not use.any():
        msg = f"measure: ccf_orders='mgb' needs order {MGB_ORDER}, not among {list(orders)}"
        raise FitError(msg)
    use &= segs >= 0
    if opts["ccf_engine"] == "mgbcc":
        return _measure_mgbcc(template, segs, use, x, lam, data, var, good, blaze, opts, clip, tvar_fn)
    flux_n, var_n, _ = normalize(data, var, blaze, good)
    h = float(np.min([np.median(np.abs(np.diff(xx))) for xx in x])) / oversample
    kmax = int(np.ceil(max(abs(v_range[0]), abs(v_range[1])) / C_M_S / h))
    lags = np.arange(-kmax, kmax + 1)
    width = int(HIGHPASS_KM_S * 1e3 / C_M_S / h)
    total = np.zeros(lags.size)
    per_order = np.full((n_o, lags.size), np.nan)
    zz_tot = 0.0
    for k in np.flatnonzero(use):
        g = good[k] & np.isfinite(flux_n[k])
        if g.sum() < 50:
            continue
        xs, ys = x[k][g], flux_n[k][g]
        order = np.argsort(xs)
        xs, ys = xs[order], ys[order]
        grid = xs[0] + h * np.arange(int((xs[-1] - xs[0]) / h) + 1)
        sd = make_interp_spline(xs, ys - 1.0, k=3)(grid)
        # masked stretches contribute nothing: zero where the nearest data pixel is farther than 1 px
        gap = np.abs(xs[np.clip(np.searchsorted(xs, grid), 0, xs.size - 1)] - grid) > 1.5 * h * oversample
        sd[gap] = 0.0
        sd = _highpass(sd, width)
        tgrid = grid[0] - kmax * h + h * np.arange(grid.size + 2 * kmax)
        tv = template.evaluate_ln(segs[k], tgrid)
        tok = np.isfinite(tv)
        if tok.sum() < 50:
            continue
        tv = np.where(tok, tv / continuum(np.where(tok, tv, np.nan), tok) - 1.0, 0.0)
        tv = _highpass(tv, width)
        n = sd.size + tv.size
        nfft = 1 << int(np.ceil(np.log2(n)))
        # cc[L] = sum_k sd[k] tv[k + kmax - L] (tv starts kmax samples before sd): data redshifted by
        # L samples peaks at +L; irfft(...)[m] = sum_k sd[k] tv[k - m], so cc[L] is element L - kmax
        full = np.fft.irfft(np.fft.rfft(sd, nfft) * np.conj(np.fft.rfft(tv, nfft)), nfft)
        cc = full[(lags - kmax) % nfft]
        wgt = 1.0 / np.nanmedian(var_n[k][g])
        total += wgt * cc
        norm_o = np.sqrt(np.sum(sd * sd) * np.sum(tv * tv))
        per_order[k] = cc / norm_o if norm_o > 0 else np.nan
        zz_tot += wgt * np.sqrt(np.sum(sd * sd) * np.sum(tv * tv))
    if zz_tot == 0:
        msg = "measure: no order could be cross-correlated"
        raise FitError(msg)
    total /= zz_tot
    lag, amp, fwhm = _peak(total, lags)
    if not np.isfinite(lag):
        msg = "measure: the summed CCF has no peak inside the velocity range"
        raise FitError(msg)
    to_s = (lambda q: np.log1p(q)) if opts["ccf_redshift"] == "dlnlambda" else (lambda q: q)
    s_mean = to_s(lag * h)
    s = np.full(n_o, np.nan)
    for k in range(n_o):
        if np.all(np.isfinite(per_order[k])):
            lk, _, _ = _peak(per_order[k], lags)
            if np.isfinite(lk) and abs(lk - lag) < max(fwhm, 3.0):
                s[k] = to_s(lk * h)
    tvar = tvar_fn(segs, x, s_mean)
    sig = _photon_sigma(template, segs, x, np.where(np.isfinite(s), s, s_mean), var_n, good, tvar)
    flags = np.zeros(n_o, dtype=np.uint16)
    flags[~np.isfinite(s) | ~np.isfinite(sig)] |= np.uint16(Flag.NO_WEIGHT)
    s = np.where(np.isfinite(sig), s, np.nan)
    _, err, chi2, used = _combine(s, sig, clip)
    flags[np.isfinite(s) & ~used] |= np.uint16(Flag.OUTLIER)
    v_grid = C_M_S * np.expm1(lags * h)
    window = np.abs(lags - lag) <= 3.0 * fwhm
    extra = {"ccf_amplitude": amp, "ccf_fwhm_kms": fwhm * h * C_M_S / 1e3, "ccf_step": h}
    return s, sig, flags, used, s_mean, err, chi2, v_grid[window], total[window], extra


def _measure_mgbcc(template, segs, use, x, lam, data, var, good, blaze, opts, clip, tvar_fn):
    """The literal mgbcc per used order on the data as given and the template's own samples."""
    from .measure import _combine

    n_o = x.shape[0]
    s = np.full(n_o, np.nan)
    results = {}
    for k in np.flatnonzero(use):
        zl = template.wavelength.to_value("nm")[segs[k]]
        zs = template.flux[segs[k]]
        ok = np.isfinite(zl) & np.isfinite(zs)
        order = np.argsort(lam[k])
        try:
            r = mgbcc(zl[ok], zs[ok], lam[k][order], np.where(good[k], data[k], 0.0)[order])
        except FitError:
            continue
        results[k] = r
        s[k] = np.log1p(r.rcc) if opts["ccf_redshift"] == "dlnlambda" else r.rcc
    if not results:
        msg = "measure: mgbcc failed on every order"
        raise FitError(msg)
    flux_n, var_n, _ = normalize(data, var, blaze, good)
    s_ref = float(np.nanmedian(s))
    tvar = tvar_fn(segs, x, s_ref)
    sig = _photon_sigma(template, segs, x, np.where(np.isfinite(s), s, s_ref), var_n, good, tvar)
    flags = np.zeros(n_o, dtype=np.uint16)
    flags[~np.isfinite(s) | ~np.isfinite(sig)] |= np.uint16(Flag.NO_WEIGHT)
    s = np.where(np.isfinite(sig), s, np.nan)
    mean, err, chi2, used = _combine(s, sig, clip)
    first = results[min(results)]
    extra = {
        "ccf_amplitude": first.ampcc,
        "ccf_fwhm_kms": first.widcc,
        "ccf_step": first.step,
        "rcc": {int(k): v.rcc for k, v in results.items()},
    }
    if len(results) == 1:
        mean = s[min(results)]
    flags[np.isfinite(s) & ~used] |= np.uint16(Flag.OUTLIER)
    v = first.velocity * 1e3
    return s, sig, flags, used, mean, err, chi2, v, first.ccf.astype(float), extra
