"""``solve``: ThAr wavelength solution of an extracted arc; ``apply_solution`` fills wavelengths.

Steps (idl-wavecal.md 5-8 made iterative; xwavecal's Legendre x 1/m correction):
1. find the lines (:func:`find_lines`), keep the unflagged ones;
2. robust start: global (order relabel, x shift) and per-order shifts of the starting model by
   cross-correlating predicted and found line positions (:func:`find_offset`);
3. iterate: match (shrinking tolerance) -> physical fit of (sinalp, fl, y0; z0 tied to fl as the
   original, or free with a Gaussian prior) with scipy ``least_squares`` (first passes only) ->
   linear weighted fit of the correction ``(1/m) sum a_jk P_j(x) P_k(m)`` per fiber, its degrees
   chosen by k-fold cross-validation on the lines -> clip outliers; until the matched set is stable.
Weights are 1/(centre error x dispersion)^2 throughout.
"""

from __future__ import annotations

import dataclasses
import math

import astropy.units as u
import numpy as np
from astropy.table import QTable

from .. import legacy as _legacy
from ..doppler import C_M_S
from ..errors import FitError, InvalidParameterError
from ..flags import FLAG_DTYPE, Flag
from ..provenance import record_provenance
from . import _kernels
from ._robust import grouped_normal, variance_components
from .lines import find_lines
from .match import find_offset, match_lines
from .solution import WavelengthSolution, _basis, correction_basis

__all__ = ["solve", "apply_solution", "Z0_PER_FL"]

#: The original's tie of z0 to the focal length, dz0 = Z0_PER_FL * dfl (idl-wavecal.md 7.1).
Z0_PER_FL = 1.5751e-4
_SOLVE = "solve"
_legacy.register(
    _SOLVE,
    "correction",
    choices=("legendre", "idl"),
    default="legendre",
    legacy="idl",
    reference="idl-wavecal.md 3.7, 8 and 15",
    summary="C0..C14: P_a(x) P_b(order) with a + b <= 4, no 1/m; cannot follow the ~0.001 nm residuals",
)

# parameter scales of the physical fit (the original's dlamdparm steps): sinalp, fl (mm), y0 (mm), z0
_SCALES = np.array([1e-5, 0.1, 0.01, 1e-6])


def _model_with(model, p, z0_mode):
    d = p * _SCALES[: p.size]
    dz0 = d[3] if z0_mode == "prior" else Z0_PER_FL * d[1]
    return dataclasses.replace(
        model, sinalp=model.sinalp + d[0], fl=model.fl + d[1], y0=model.y0 + d[2], z0=model.z0 + dz0
    )


def _fit_physical(model, x, order, fiber, lam, sigma, z0_mode, z0_sigma):
    """Least-squares fit of the physical parameters to matched lines; returns (model, condition)."""
    npar = 4 if z0_mode == "prior" else 3

    def resid(p):
        m = _model_with(model, p, z0_mode)
        r = (m.wavelength(x, order, fiber).to_value(u.nm) - lam) / sigma
        if z0_mode == "prior":
            r = np.append(r, p[3] * _SCALES[3] / z0_sigma)
        return r

    # Gauss-Newton with forward differences (the problem is nearly linear; matches are frozen, and
    # each model construction costs ~10 ms, so a general LM would spend seconds on it)
    p = np.zeros(npar)
    r0 = resid(p)
    jac = np.empty((r0.size, npar))
    for _ in range(8):
        for k in range(npar):
            dp = p.copy()
            dp[k] += 1e-3
            jac[:, k] = (resid(dp) - r0) / 1e-3
        step = np.linalg.lstsq(jac, -r0, rcond=None)[0]
        p = p + step
        r0 = resid(p)
        if np.max(np.abs(step)) < 1e-3:  # 1e-8 in sinalp: the correction takes the rest
            break
    norms = np.maximum(np.linalg.norm(jac, axis=0), 1e-300)
    jn = jac / norms
    cond = float(np.linalg.cond(jn.T @ jn))
    # covariance of the (scaled) parameters from the normalised residuals: sigma^2 units
    cov = np.linalg.pinv(jn.T @ jn) / np.outer(norms, norms)
    return _model_with(model, p, z0_mode), cond, cov


def _physical_jacobian(model, x, order, fiber, z0_mode):
    """(n, n_par) derivative of the model wavelength (nm) per unit scaled parameter at p = 0."""
    npar = 4 if z0_mode == "prior" else 3
    base = model.wavelength(x, order, fiber).to_value(u.nm)
    jac = np.empty((x.size, npar))
    for k in range(npar):
        dp = np.zeros(npar)
        dp[k] = 1e-3
        jac[:, k] = (_model_with(model, dp, z0_mode).wavelength(x, order, fiber).to_value(u.nm) - base) / 1e-3
    return jac


#: Largest condition number of the column-scaled normal matrix of a correction: beyond it the
#: inversion keeps < 6 significant digits (float64), so the fit and its covariance are not trusted.
#: A window of the detector makes high degrees indeterminate (10 orders span 0.27 of the order
#: axis: P_k(v) of degree >= 4 become nearly collinear there).
MAX_CONDITION = 1e10
#: The correction must absorb what the physical fit left uncertain: the part of the fitted physical
#: parameters' error outside the correction's span must stay below this fraction of the
#: correction's own error (so neglecting it understates the reported errors by < 5 %).
MAX_UNABSORBED = 0.3


def _normal(basis, w, y):
    """(B^T W B, B^T W y, y^T W y) with the numba kernel."""
    p = basis.shape[1]
    nmat, rhs = np.empty((p, p)), np.empty(p)
    _kernels.normal_equations(
        np.ascontiguousarray(basis), np.ascontiguousarray(w), np.ascontiguousarray(y), nmat, rhs
    )
    return nmat, rhs, float(np.sum(w * y * y))


def _admissible(a, jw, cov_p):
    """Whether the weighted design ``a`` (n, p) is well conditioned and spans the physical fit's error.

    ``jw`` (n, k): the weighted derivatives of the model wavelength by the physical parameters,
    ``cov_p`` their covariance (or None: no physical fit to absorb). The error the physical fit
    left in the lines, ``jw dp``, is taken out by the correction only where ``jw`` lies in the
    span of ``a``; the rest (``r = (I - P_a) jw``) would be an error the correction's covariance
    does not know. Returns ``(ok, condition, unabsorbed / correction error)``.
    """
    scale = np.maximum(np.linalg.norm(a, axis=0), 1e-300)
    an = a / scale
    nmat = an.T @ an
    cond = float(np.linalg.cond(nmat))
    if not np.isfinite(cond) or cond > MAX_CONDITION:
        return False, cond, np.inf
    if jw is None or cov_p is None:
        return True, cond, 0.0
    inv = np.linalg.inv(nmat)
    lever = np.einsum("ij,jk,ik->i", an, inv, an)  # variance of the fit at each line, sigma^2
    resid = jw - an @ (inv @ (an.T @ jw))
    unabsorbed = np.einsum("ij,jk,ik->i", resid, cov_p, resid)
    ratio = float(np.sqrt(np.max(unabsorbed / np.maximum(lever, 1e-300))))
    return ratio <= MAX_UNABSORBED, cond, ratio


def _cv_degrees(basis_full, y, w, xd_max, od_max, folds, seed=0, jac=None, cov_p=None):
    """(x_degree, order_degree) minimising the k-fold held-out chi^2 (normal-equation blocks).

    Only admissible degrees compete (:func:`_admissible`: numerically determined, and absorbing
    the physical fit's error given by ``jac`` (n, k; nm per unit parameter) and ``cov_p``); when
    no degree absorbs it, every well-conditioned one does.
    """
    n = y.size
    fold = np.random.default_rng(seed).permutation(n) % folds
    sw = np.sqrt(w)
    a = basis_full * sw[:, None]
    b = y * sw
    jw = None if jac is None else jac * sw[:, None]
    candidates = {}
    for xd in range(1, xd_max + 1):
        for od in range(0, od_max + 1):
            cols = (np.arange(xd + 1)[:, None] * (od_max + 1) + np.arange(od + 1)[None, :]).ravel()
            if cols.size * 3 > n:
                continue
            candidates[(xd, od)] = (cols, *_admissible(a[:, cols], jw, cov_p))
    allowed = [k for k, v in candidates.items() if v[1]]
    if not allowed:
        allowed = [k for k, v in candidates.items() if v[2] <= MAX_CONDITION]
    blocks = [
        (a[fold == k].T @ a[fold == k], a[fold == k].T @ b[fold == k], b[fold == k] @ b[fold == k])
        for k in range(folds)
    ]
    n_all = sum(blk[0] for blk in blocks)
    b_all = sum(blk[1] for blk in blocks)
    best = None
    for xd, od in sorted(allowed):
        cols = candidates[(xd, od)][0]
        score = 0.0
        for nk, bk, ck in blocks:
            ntr = (n_all - nk)[np.ix_(cols, cols)]
            d = np.sqrt(np.maximum(np.diag(ntr), 1e-300))  # column scaling: the solve stays accurate
            try:
                coef = np.linalg.solve(ntr / np.outer(d, d), (b_all - bk)[cols] / d) / d
            except np.linalg.LinAlgError:
                score = np.inf
                break
            score += ck - 2 * coef @ bk[cols] + coef @ nk[np.ix_(cols, cols)] @ coef
        if best is None or score < best[0]:
            best = (score, xd, od)
    if best is None:
        msg = f"solve: {n} lines are too few to choose the correction degrees (need >= 6); give them"
        raise FitError(msg)
    return best[1], best[2]


def _fit_correction(kind, x, order, y, w, xd, od, order_var=0.0):
    """Weighted linear fit of y = basis @ a; returns (coef (xd+1, od+1) or (15, 1), covariance).

    ``order_var`` > 0 (nm^2): the lines of one order also share an offset of that variance (a
    random effect), so the fit is generalised least squares (:func:`~nres.wavecal._robust.grouped_normal`).
    """
    basis = _basis(kind, x, order, xd, od)
    nmat, rhs, _ = _normal(basis, w, y)
    if order_var > 0:
        nmat, rhs = grouped_normal(nmat, rhs, basis, w, y, order, order_var)
    d = np.sqrt(np.maximum(np.diag(nmat), 1e-300))  # column scaling before the inversion
    cov = np.linalg.inv(nmat / np.outer(d, d)) / np.outer(d, d)
    coef = cov @ rhs
    return coef.reshape(-1, 1) if kind == "idl" else coef.reshape(xd + 1, od + 1), cov


def solve(
    arc_spec,
    *,
    lines=None,
    model=None,
    found=None,
    fibers=None,
    max_shift=20.0,
    max_stretch=16.0,
    z0="tied",
    z0_sigma=2e-6,
    x_degree=None,
    order_degree=None,
    max_degree=(8, 8),
    folds=5,
    clip=5.0,
    max_iter=10,
    min_lines=30,
    find_kwargs=None,
    correction=None,
    legacy=False,
) -> WavelengthSolution:
    """Wavelength solution of an extracted ThAr arc.

    Parameters
    ----------
    arc_spec : EchelleSpectrum
        Extracted arc (fibers with ThAr), data in electrons with variance.
    lines : QTable or None
        Line list with ``wavelength`` (vacuum) and ``intensity`` (default ``thar_lines("redman")``).
    model : PhysicalModel
        Starting model (e.g. ``PhysicalModel.for_site(site, mjd=...)``, possibly of an earlier date).
    found : QTable or None
        Lines from :func:`find_lines` (default: found here with ``find_kwargs``).
    fibers : sequence of int or None
        Fibers to fit (default all of ``arc_spec.fibers``).
    max_shift, max_stretch : float
        Largest start offset and stretch (change of the order length / 2) searched, px; order
        relabels of -1, 0, +1 are searched too.
    z0 : {"tied", "prior"}
        "tied": dz0 = 1.5751e-4 dfl, as the original; "prior": z0 free with a Gaussian prior of
        width ``z0_sigma`` about the starting value.
    x_degree, order_degree : int or None
        Fixed degrees of the correction; None chooses them by ``folds``-fold cross-validation
        within ``max_degree``.
    clip : float
        Lines with |residual| > clip x max(1, robust sigma) standard errors are not used.
    max_iter : int
        Iterations of match -> fit -> clip.
    min_lines : int
        Fewer matched lines raise FitError.
    find_kwargs : dict or None
        Options of :func:`find_lines` when ``found`` is not given.
    correction : {"legendre", "idl"}, optional
        "legendre" (default): the cross-validated ``(1/m) P_j(x) P_k(m)`` model. "idl" (legacy):
        increments of the original's 15 terms C0..C14 (:func:`~nres.wavecal.solution.idl_basis`),
        fitted with nres's weights and iteration (not thar_rcubic's two-pass w^2 weighting).
    legacy : bool
        Shorthand for every legacy option (``correction="idl"``).

    Returns
    -------
    WavelengthSolution

    Raises
    ------
    InvalidParameterError
        No model, a bad option or degree, or a requested fiber not in ``arc_spec``.
    FitError
        Too few lines found or matched.
    """
    from ..instrument import thar_lines

    kind = _legacy.resolve(_SOLVE, legacy, correction=correction)["correction"]
    if model is None:
        msg = "solve: model= is required (a PhysicalModel, e.g. PhysicalModel.for_site(site, mjd=mjd))"
        raise InvalidParameterError(msg)
    if z0 not in ("tied", "prior"):
        msg = f"solve: z0={z0!r}; expected 'tied' or 'prior'"
        raise InvalidParameterError(msg)
    if (x_degree is None) != (order_degree is None):
        msg = "solve: give both x_degree and order_degree, or neither (cross-validation)"
        raise InvalidParameterError(msg)
    degrees = (max_degree[0], max_degree[1]) if x_degree is None else (x_degree, order_degree)
    if int(degrees[0]) < 1 or int(degrees[1]) < 0:
        msg = f"solve: degrees {degrees} (x, order); expected x >= 1 and order >= 0"
        raise InvalidParameterError(msg)
    lines = thar_lines("redman") if lines is None else lines
    lam_list = np.asarray(lines["wavelength"].to_value(u.nm), dtype=np.float64)
    order_list = np.argsort(lam_list)
    lam_list = lam_list[order_list]
    bright = (
        np.asarray(lines["intensity"], dtype=float)[order_list]
        if "intensity" in lines.colnames
        else (np.ones(lam_list.size))
    )
    if found is None:
        found = find_lines(arc_spec, fibers=fibers, **(find_kwargs or {}))
    if fibers is not None:
        found = found[np.isin(found["fiber"], fibers)]
    n_found = len(found)
    good = found[found["flags"] == 0]
    fiber_ids = tuple(int(f) for f in np.unique(good["fiber"]))
    if len(good) < min_lines:
        msg = f"solve: only {len(good)} usable lines found (need min_lines={min_lines}) in fibers {fibers}"
        raise FitError(msg)

    grids = model.wavelength_grid().to_value(u.nm)

    def grid_of(f, m):
        if m < model.ord0 or m >= model.ord0 + model.nord:
            return None
        return grids[f, m - model.ord0]

    k_shift, shift, stretch, per_order_shift, _ = find_offset(
        good, lam_list, bright, grid_of, max_shift=max_shift, max_stretch=max_stretch
    )
    x = np.asarray(good["x"], dtype=np.float64)
    xerr = np.asarray(good["x_err"], dtype=np.float64)
    fib = np.asarray(good["fiber"], dtype=np.int64)
    order = np.asarray(good["order"], dtype=np.int64) + k_shift
    inside = (order >= model.ord0) & (order < model.ord0 + model.nord)
    x, xerr, fib, order = x[inside], xerr[inside], fib[inside], order[inside]
    label = order - k_shift
    group = fib * 1000 + order
    start_dx = np.array(
        [per_order_shift.get((int(f), int(m)), shift) for f, m in zip(fib, label, strict=True)]
    )
    start_dx = start_dx + stretch * (x - 2047.5) / 2047.5  # t of the found x (= predicted + shift)

    # an order polynomial needs more distinct orders than its degree
    od_cap = int(min(max_degree[1], np.unique(order).size - 1))
    # dispersion at each line (nm/px) from the starting grid
    dgrid = np.gradient(grids, axis=2)
    disp = np.abs(dgrid[fib, order - model.ord0, np.clip(np.round(x).astype(int), 0, model.nx - 1)])

    current = model
    coefs = {f: None for f in fiber_ids}
    covs = {}
    xd = od = None
    used = np.ones(x.size, dtype=bool)
    prev = None
    cond = np.nan
    tolerances = [1.5, 1.0, 0.5]
    it = 0
    for it in range(max_iter):
        if it == 0:
            pred = current.wavelength(x - start_dx, order, fib).to_value(u.nm)
        else:
            pred = _evaluate(current, coefs, x, order, fib, xd, od, kind)
        tol = tolerances[min(it, len(tolerances) - 1)]
        idx = match_lines(pred, disp, group, lam_list, tolerance=tol, isolation=2.0 * tol + 1.0)
        sel = (idx >= 0) & (used if it > 1 else True)
        if sel.sum() < min_lines:
            msg = f"solve: only {int(sel.sum())} matched (need {min_lines}); wrong model=?"
            raise FitError(msg)
        lam_m = lam_list[np.where(idx >= 0, idx, 0)]
        sigma = np.maximum(xerr, 1e-4) * disp
        if it < 2:
            current, cond, cov_p = _fit_physical(
                current, x[sel], order[sel], fib[sel], lam_m[sel], sigma[sel], z0, z0_sigma
            )
        phys = current.wavelength(x, order, fib).to_value(u.nm)
        y = lam_m - phys
        w = 1.0 / sigma**2
        if kind == "idl":
            xd, od = 14, 0
        elif x_degree is not None and order_degree is not None:
            xd, od = int(x_degree), int(order_degree)
        elif it == 0:
            # provisional until the physical fit and matches settle; lower in a window of few orders
            xd, od = 4, min(4, od_cap)
            while od > 1 and not _admissible(correction_basis(x[sel], order[sel], xd, od), None, None)[0]:
                od -= 1
        elif it == 2:
            allsel = sel
            basis_full = correction_basis(x[allsel], order[allsel], max_degree[0], od_cap)
            # the fibers share one degree choice, made by CV on fiber 1's lines (else the first fiber's)
            f0 = 1 if 1 in fiber_ids else fiber_ids[0]
            fs = fib[allsel] == f0
            jac = _physical_jacobian(current, x[allsel][fs], order[allsel][fs], fib[allsel][fs], z0)
            ys, ws = y[allsel][fs], w[allsel][fs]
            xd, od = _cv_degrees(basis_full[fs], ys, ws, max_degree[0], od_cap, folds, jac=jac, cov_p=cov_p)
        resid = np.zeros(x.size)
        for f in fiber_ids:
            s = sel & (fib == f)
            coefs[f], covs[f] = _fit_correction(kind, x[s], order[s], y[s], w[s], xd, od)
            s_all = fib == f
            resid[s_all] = (lam_m[s_all] - phys[s_all]) - _basis(
                kind, x[s_all], order[s_all], xd, od
            ) @ coefs[f].ravel()
        norm = resid / sigma
        robust = 1.4826 * np.median(np.abs(norm[sel]))
        new_used = (idx >= 0) & (np.abs(norm) <= clip * robust)
        state = (tuple(np.flatnonzero(new_used)), xd, od)
        used = new_used
        if it >= 2 and state == prev:
            break
        prev = state

    sel = used
    lam_m = lam_list[np.where(idx >= 0, idx, 0)]
    sigma = np.maximum(xerr, 1e-4) * disp
    # Final fit per fiber with the two error components the line-centre errors leave out (on the
    # demo's 2-D arcs: chi2/dof 2-2.6, and whole orders at the window's edges offset by up to 9
    # millipixels from extraction residuals): a scale of the line variances and an offset shared by
    # the lines of an order (:func:`~nres.wavecal._robust.variance_components`); the covariance
    # carries both.
    y = lam_m - current.wavelength(x, order, fib).to_value(u.nm)
    components = {}
    if kind != "idl":
        for f in fiber_ids:
            s = sel & (fib == f)
            r = y[s] - _basis(kind, x[s], order[s], xd, od) @ coefs[f].ravel()
            n_par = (xd + 1) * (od + 1)
            scale, order_var = variance_components(r, 1.0 / sigma[s] ** 2, order[s], od + 1, n_par)
            coefs[f], covs[f] = _fit_correction(
                kind, x[s], order[s], y[s], 1.0 / (scale * sigma[s] ** 2), xd, od, order_var
            )
            lam_typ = float(np.median(lam_m[s]))
            components[f] = (scale, math.sqrt(order_var) / lam_typ * C_M_S)
    final = _evaluate(current, coefs, x, order, fib, xd, od, kind)
    resid = final - lam_m
    p = (xd + 1) * (od + 1) * len(fiber_ids)
    chi2_dof = float(np.sum((resid[sel] / sigma[sel]) ** 2) / max(sel.sum() - p, 1))
    table = QTable()
    m_ok = idx >= 0
    table["fiber"] = fib[m_ok]
    table["order"] = order[m_ok]
    table["x"] = x[m_ok]
    table["x_err"] = xerr[m_ok]
    table["wavelength"] = lam_m[m_ok] * u.nm
    table["fit"] = final[m_ok] * u.nm
    table["residual"] = resid[m_ok] * u.nm
    table["residual_m_s"] = resid[m_ok] / lam_m[m_ok] * C_M_S * u.m / u.s
    table["sigma"] = sigma[m_ok] * u.nm
    table["used"] = sel[m_ok]

    solution = WavelengthSolution(
        model=current,
        fibers=fiber_ids,
        coefficients=np.stack([coefs[f] for f in fiber_ids]),
        covariance=np.stack([covs[f] for f in fiber_ids]),
        order_shift=int(k_shift),
        x_shift=0.0,
        lines=table,
        correction=kind,
    )
    per_order, floor = _per_order_qc(solution, found, k_shift, arc_spec.pixel, arc_spec.orders)
    rms = float(np.sqrt(np.mean(resid[sel] ** 2)))
    qc = {
        "n_found": int(n_found),
        "n_matched": int(m_ok.sum()),
        "n_used": int(sel.sum()),
        "rms_nm": rms,
        "rms_m_s": float(np.sqrt(np.mean((resid[sel] / lam_m[sel] * C_M_S) ** 2))),
        "chi2_dof": chi2_dof,
        **{f"line_error_scale_{f}": v[0] for f, v in components.items()},
        **{f"order_scatter_m_s_{f}": v[1] for f, v in components.items()},
        "noise_floor_m_s": floor,
        "condition_number": cond,
        "x_degree": int(xd),
        "order_degree": int(od),
        "iterations": int(it + 1),
        "start_shift_px": float(shift),
        "start_stretch_px": float(stretch),
        "start_order_shift": int(k_shift),
    }
    return dataclasses.replace(solution, qc=qc, per_order=per_order)


def _evaluate(model, coefs, x, order, fib, xd, od, kind):
    out = model.wavelength(x, order, fib).to_value(u.nm)
    for f, c in coefs.items():
        s = fib == f
        out[s] += _basis(kind, x[s], order[s], xd, od) @ c.ravel()
    return out


def _per_order_qc(solution, found, k_shift, pixel, spec_orders):
    """Per (fiber, order) QC table and the noise floor (m/s, rms over the pixels of orders >= 5 lines).

    Errors are evaluated over the arc's columns ``pixel`` (a window's, not the whole detector's:
    outside them the correction is an extrapolation nobody uses). ``zero_point_err_m_s``: the
    solution's standard error at the middle column; ``mean_err_m_s``: the error of the order's mean
    over its columns (what an RV zero point inherits); ``wavelength_err_m_s``: the rms over the
    columns (every 16th) of the pointwise error; ``calibrated``: inside the range of orders the
    correction interpolates (:meth:`WavelengthSolution.calibrated_orders`). The noise floor is the
    rms of the pointwise error over the orders with >= 5 used lines.
    """
    pixel = np.asarray(pixel, dtype=np.float64)
    pixel = pixel if pixel.ndim == 1 else pixel.reshape(-1, pixel.shape[-1])[0]
    xs = pixel[:: max(1, pixel.size // 256)]
    centre = 0.5 * (float(pixel.min()) + float(pixel.max()))
    ffound = np.asarray(found["fiber"])
    ofound = np.asarray(found["order"]) + k_shift
    lines = solution.lines
    lf, lo, lu = np.asarray(lines["fiber"]), np.asarray(lines["order"]), np.asarray(lines["used"])
    res = lines["residual"].to_value(u.nm)
    names = ("fiber", "order", "n_found", "n_used", "rms_nm", "zero_point_err_m_s", "mean_err_m_s",
             "wavelength_err_m_s", "calibrated")  # fmt: skip
    cols = {k: [] for k in names}
    floor_sq = []
    model = solution.model
    for f in solution.fibers:
        orders = np.union1d(np.unique(ofound[ffound == f]), np.asarray(spec_orders) + k_shift)
        orders = orders[(orders >= model.ord0) & (orders < model.ord0 + model.nord)]
        if orders.size == 0:
            continue
        span = solution.calibrated_orders(f)
        grid_x = np.concatenate([[centre], xs])
        xx = np.tile(grid_x, orders.size)
        mm = np.repeat(orders, grid_x.size)
        verr = solution.velocity_error(xx, mm, f).to_value(u.m / u.s).reshape(orders.size, grid_x.size)
        mean_err = solution.mean_velocity_error(xs, orders, f).to_value(u.m / u.s)
        for k, m in enumerate(orders):
            sel = (lf == f) & (lo == m) & lu
            n_used = int(sel.sum())
            if n_used >= 5:
                floor_sq.append(verr[k, 1:] ** 2)
            cols["fiber"].append(int(f))
            cols["order"].append(int(m))
            cols["n_found"].append(int(np.sum((ffound == f) & (ofound == m))))
            cols["n_used"].append(n_used)
            cols["rms_nm"].append(float(np.sqrt(np.mean(res[sel] ** 2))) if n_used else np.nan)
            cols["zero_point_err_m_s"].append(float(verr[k, 0]))
            cols["mean_err_m_s"].append(float(mean_err[k]))
            cols["wavelength_err_m_s"].append(float(np.sqrt(np.mean(verr[k, 1:] ** 2))))
            cols["calibrated"].append(bool(span is None or span[0] <= m <= span[1]))
    table = QTable(cols)
    floor = float(np.sqrt(np.mean(np.concatenate(floor_sq)))) if floor_sq else math.nan
    return table, floor


def apply_solution(spec, solution):
    """A copy of ``spec`` with the solution's wavelengths (vacuum, topocentric) for every fiber.

    Parameters
    ----------
    spec : EchelleSpectrum
        Any extracted spectrum of the same instrument (orders labelled as the arc's were).
    solution : WavelengthSolution

    Returns
    -------
    EchelleSpectrum
        With ``wavelength`` (fiber, order, pixel) nm; fibers without a fitted correction use fiber 1's.
        Orders outside the fiber's calibrated range (:meth:`WavelengthSolution.calibrated_orders`:
        the correction would be extrapolated across orders, e.g. a partial order at the edge of a
        window whose arc showed too few lines) carry ``Flag.BAD_WAVELENGTH`` on every pixel, so
        they are masked and an RV leaves them out; their wavelengths are still filled.

    Raises
    ------
    InvalidParameterError
        ``solution`` is not a :class:`WavelengthSolution`.
    """
    if not isinstance(solution, WavelengthSolution):
        msg = f"apply_solution: solution must be a WavelengthSolution, got {type(solution).__name__}"
        raise InvalidParameterError(msg)
    x = np.asarray(spec.pixel, dtype=np.float64)
    orders = np.asarray(spec.orders) + solution.order_shift
    wl = np.empty(spec.shape)
    flags = np.array(spec.flags, dtype=FLAG_DTYPE)
    uncalibrated = []
    for i, f in enumerate(spec.fibers):
        span = solution.calibrated_orders(int(f))
        for j, m in enumerate(orders):
            xx = x if x.ndim == 1 else x[i, j]
            wl[i, j] = solution.wavelength(xx, np.full(xx.size, m), int(f)).to_value(u.nm)
            if span is not None and not span[0] <= m <= span[1]:
                flags[i, j] |= FLAG_DTYPE(Flag.BAD_WAVELENGTH)
                uncalibrated.append(f"{int(f)}:{int(m)}")
    out = spec._replace(
        wavelength=wl * u.nm, wavelength_medium="vacuum", wavelength_frame="topocentric", flags=flags
    )
    record_provenance(
        out.meta,
        "nres.wavecal.apply_solution",
        correction=solution.correction,
        x_degree=solution.x_degree,
        order_degree=solution.order_degree,
        n_used=solution.qc.get("n_used"),
        rms_m_s=solution.qc.get("rms_m_s"),
        uncalibrated=",".join(uncalibrated),
    )
    return out
