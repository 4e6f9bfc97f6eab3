"""``measure(method="blocks")``: per-order, per-block fits of level, scale and shift.

Default (``block_engine="nres"``): the global start ``s0`` comes from the template CCF of the
``template`` method (reported as ``RVResult.ccf``); every order is cut into ``nblock`` equal pixel
blocks (:func:`nres.rv.idl_blocks.block_starts`) and each block is fitted by Gauss-Newton
(:func:`nres.rv._kernels.fit_blocks`) with the model ``c_i (aa + bb T(ln lambda_i - s))``: T is the
template's exact pixel mean, ``c_i`` the blaze times the ratio of the data's and the template's
continua (the rule of :mod:`nres.rv.continuum`), weights ``1 / (variance + c_i^2 var_T)``. The shift
has the redshift's sign and its error is the covariance of the shift itself. Blocks are combined by
inverse variance with iterative rejection at ``clip`` sigma.

Legacy (``block_engine="idl"``): the original's chain: Stage A ``mgbcc`` on the Mg b order, the
template interpolated at ``lambda (1 + rcc)`` by the 4-point least-squares rule, the data smoothed by
three 3-pixel boxcars, :func:`nres.rv.idl_blocks.blockfit2` per block, the quartile-clipped
combination. ``block_sign="idl"`` keeps the fitted ``rr`` (which is ``-z``) as the redshift,
``block_error="offset"`` reports the offset's variance as the redshift error (data independent).
"""

from __future__ import annotations

import numpy as np
from astropy.table import QTable

from ..doppler import C_M_S
from ..errors import FitError
from ..flags import Flag
from . import _idl, _kernels
from .ccf import MGB_ORDER, _template_values
from .continuum import continuum_rows
from .idl_blocks import block_starts, blockfit2, combine_blocks
from .idl_ccf import mgbcc

__all__ = ["NBLOCK"]

#: The original's number of blocks per order (spectrographs.csv).
NBLOCK = 12


def measure_blocks(
    template, orders, lam, data, var, good, blaze, *, nblock, v_range, clip, opts, tvar_fn, degree, pixel_mean
):
    """The ``blocks`` method (see the module docstring). Returns the tuple measure() assembles."""
    if opts["block_engine"] == "idl":
        return _measure_idl(template, orders, lam, data, good, nblock=nblock, opts=opts)
    from .measure import _combine, _template_start

    x = np.log(lam)
    n_o, n = x.shape
    segs = [template.segment_for(float(np.nanmin(xx)), float(np.nanmax(xx))) for xx in x]
    s0, fine, ccf_fine = _template_start(template, segs, x, data, var, good, degree, v_range)
    starts, blen = block_starts(n, nblock)
    b = np.ones_like(data) if blaze is None else blaze
    half = 0.5 * np.abs(np.gradient(x, axis=1))
    tvar = tvar_fn(segs, x, s0)
    segs_a = np.asarray(segs, dtype=np.int64)
    tv = _template_values(template, segs_a, x - s0)
    tok = np.isfinite(tv)
    with np.errstate(invalid="ignore", divide="ignore"):
        cd = continuum_rows(np.where(good, data / b, np.nan), good)
    ct = continuum_rows(np.where(tok, tv, np.nan), tok)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = b * cd / ct
    tv_var = 0.0 if tvar is None else c**2 * np.nan_to_num(tvar, nan=np.inf)
    v = var + tv_var
    ok = good & tok & np.isfinite(c) & (v > 0) & (segs_a >= 0)[:, None]
    w = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
    # every block of every order at once: (n_order, nblock, blen) views, blocks with > 20 usable pixels
    idx = starts[:, None] + np.arange(blen)[None, :]
    nuse = np.count_nonzero(w[:, idx], axis=2)
    border, bblock = np.nonzero(nuse > 20)
    if border.size == 0:
        msg = "measure: no block has usable pixels"
        raise FitError(msg)
    bseg = segs_a[border]
    pick = (border[:, None], idx[bblock])
    flat = {
        key: np.ascontiguousarray(np.where(np.isfinite(arr[pick]), arr[pick], 0.0).ravel(), dtype=np.float64)
        for key, arr in (("x", x), ("half", half), ("c", c), ("d", data), ("w", w))
    }
    bseg = np.asarray(bseg, dtype=np.int64)
    bblock = bblock.tolist()
    start = np.arange(bseg.size + 1, dtype=np.int64) * blen
    params, sigma = _kernels.fit_blocks(
        flat["x"],
        flat["half"],
        flat["c"],
        flat["d"],
        flat["w"],
        start,
        bseg,
        *template._pieces,
        float(s0),
        float(np.log1p(30e3 / C_M_S)),
        bool(pixel_mean),
        30,
        1e-13,
    )
    sb, sigb = params[:, 2], sigma[:, 2]
    mean, err, chi2, used_b = _combine(sb, sigb, clip)
    border = np.asarray(border)
    s = np.full(n_o, np.nan)
    sig = np.full(n_o, np.nan)
    for o in range(n_o):
        k = (border == o) & used_b
        if k.any():
            wk = 1.0 / sigb[k] ** 2
            s[o] = np.sum(wk * sb[k]) / np.sum(wk)
            sig[o] = 1.0 / np.sqrt(np.sum(wk))
    flags = np.zeros(n_o, dtype=np.uint16)
    flags[~np.isfinite(s)] |= np.uint16(Flag.NO_WEIGHT)
    used = np.isfinite(s)
    table = QTable()
    table["order"] = np.asarray(orders)[border]
    table["block"] = bblock
    table["rv"] = C_M_S * np.expm1(sb)
    table["rv_err"] = C_M_S * np.exp(sb) * sigb
    table["level"], table["scale"] = params[:, 0], params[:, 1]
    table["used"] = used_b
    extra = {"blocks": table, "n_blocks_used": int(used_b.sum())}
    v_grid = C_M_S * np.expm1(fine)
    return s, sig, flags, used, mean, err, chi2, v_grid, ccf_fine, extra


def _measure_idl(template, orders, lam, data, good, *, nblock, opts):
    """The original's Stage A + Stage B chain (see the module docstring)."""
    orders = np.asarray(orders)
    n_o, n = lam.shape
    x = np.log(lam)
    segs = [template.segment_for(float(np.nanmin(xx)), float(np.nanmax(xx))) for xx in x]
    k_mgb = np.flatnonzero(orders == MGB_ORDER)
    k_mgb = int(k_mgb[0]) if k_mgb.size else n_o // 2
    if segs[k_mgb] < 0:
        msg = f"measure: the template does not cover order {orders[k_mgb]} (the Stage A order)"
        raise FitError(msg)
    zlam_all = template.wavelength.to_value("nm")
    d = np.where(good, data, 0.0)
    cc = mgbcc(zlam_all[segs[k_mgb]], template.flux[segs[k_mgb]], lam[k_mgb], d[k_mgb])
    rcc = cc.rcc
    starts, blen = block_starts(n, nblock)
    rr = np.zeros((n_o, nblock))
    err = np.zeros((n_o, nblock))
    for o in range(n_o):
        if segs[o] < 0:
            continue
        zdat = _idl.interpol_lsquadratic(template.flux[segs[o]], zlam_all[segs[o]] * (1.0 + rcc), lam[o])
        sdat = _idl.smooth(_idl.smooth(_idl.smooth(d[o], 3), 3), 3)
        for kb, st in enumerate(starts):
            sl = slice(st, st + blen)
            if np.mean(sdat[sl]) == 0 or np.mean(zdat[sl]) == 0:
                continue
            f = blockfit2(lam[o][sl], zdat[sl], sdat[sl])
            if opts["block_error"] == "offset":
                e = np.sqrt(max(f.cov[0, 0], 0.0))
            else:
                # the shift parameter's variance (pixels) rescaled by the weighted residual variance,
                # converted to ln(lambda) with the block's mean pixel step
                dof = max(blen - 3, 1)
                scale = np.sum(f.resid**2) / dof
                e = np.sqrt(max(f.cov[2, 2], 0.0) * scale) * np.mean(np.abs(np.gradient(x[o][sl])))
            rr[o, kb] = f.rr if opts["block_sign"] == "idl" else -f.rr
            err[o, kb] = e
    rroa, rrom, rroe = combine_blocks(rr, err)
    z_cc = rcc if opts["ccf_redshift"] == "dlnlambda" else np.expm1(rcc)
    z_obs = (1.0 + z_cc) * (1.0 + rroa) - 1.0
    s_o = np.full(n_o, np.nan)
    sig_o = np.full(n_o, np.nan)
    for o in range(n_o):
        k = (rr[o] != 0) & (err[o] != 0)
        if k.any():
            wk = 1.0 / err[o][k] ** 2
            s_o[o] = np.log1p((1.0 + z_cc) * (1.0 + np.sum(wk * rr[o][k]) / np.sum(wk)) - 1.0)
            sig_o[o] = 1.0 / np.sqrt(np.sum(wk))
    flags = np.zeros(n_o, dtype=np.uint16)
    flags[~np.isfinite(s_o)] |= np.uint16(Flag.NO_WEIGHT)
    used = np.isfinite(s_o)
    extra = {
        "rcc": rcc,
        "ampcc": cc.ampcc,
        "widcc": cc.widcc,
        "rroa": rroa,
        "rrom": rrom,
        "rroe": rroe,
        "block_rr": rr,
        "block_err": err,
    }
    chi2 = float(np.nansum(((s_o - np.log1p(z_obs)) / sig_o)[used] ** 2))
    return (
        s_o,
        sig_o,
        flags,
        used,
        float(np.log1p(z_obs)),
        float(rroe),
        chi2,
        cc.velocity * 1e3,
        cc.ccf,
        extra,
    )
