"""Drift of a TARGET frame from its simultaneous ThAr, carried to the star fiber.

On a TARGET frame fiber 1 carries ThAr while the star fiber carries the star. The lines of fiber 1
are found (unflagged ones only: saturated, blended and edge lines are left out) and paired with
the same lines of the master arc: either the positions the master *solution* predicts for its
matched list lines, or the lines found in the master *arc spectrum*. Their pixel differences
``delta = x_target - x_master`` are fitted by a smooth model ``delta(x, m) = sum_jk d_jk P_j(u)
P_k(v)`` (u, v as in :mod:`nres.wavecal.solution`). The target's wavelengths are then
``lambda(x) = lambda_master(x - delta(x))``.

The model is a quadratic along x; along the orders its degree follows the lines' lever arm
(``order_degree=None``: 0 when the orders with lines span fewer than 20 orders, 1 below 40, 2 from
40). In an echelle the velocity per pixel is nearly the same in every order, so a spectrograph
drift moves the lines of all orders by similar numbers of pixels, and order terms only refine
that over many orders. On the pipeline's 8-order windows the fiber-1 lines of the orders next to
the window's edge sit 0.002-0.01 px off in a TARGET frame (star light in the neighbouring fiber)
while the others agree to 1e-4 px, and ``order_degree=2`` bent towards them: 10-30 m/s in single
orders and 3-8 m/s overall on noiseless drift-free frames (``order_degree=0``: < 0.6 m/s overall
and < 0.7 m/s in every order).

The fit is weighted by the centre errors, with an *excess scatter* added in quadrature to every
pair's error, estimated so that the robust sigma of the normalised residuals is 1 (0 when the
centre errors already describe the scatter; ~0.003-0.005 px on simulated TARGET frames, whose
chi2/dof was 2-4 without it), and iterative clipping. Pairs whose centre error exceeds
``max_line_error`` are dropped.

The star fiber sees the same wavelength ``dx_f`` pixels away (``dx_f = x_f - x_1``, the master
solution's fiber offset), so its drift is ``delta_f(x, m) = delta(x - dx_f(x, m), m)``: the drift
is carried at equal wavelength, not at equal pixel. Velocities are the apparent Doppler shift of
the ThAr lines, ``v = delta * (dlambda/dx) / lambda * c`` (positive: lines moved to the red); the
per-order value is the mean over the order's pixels and the overall value the mean over the orders
inside the range of orders with lines, with errors propagated from the fit's covariance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..doppler import C_M_S
from ..errors import FitError, InvalidParameterError
from ._robust import clipped_lstsq
from .lines import find_lines
from .solution import WavelengthSolution, legendre_basis

__all__ = ["Drift", "DriftCorrectedSolution", "measure_drift"]

_OFFSET_STEP = 64.0  # px between the fiber-offset samples interpolated when carrying the drift
_MIN_PAIRS = 10  # fewer paired lines than this measure no drift
_ORDERS_PER_DEGREE = 20  # span of orders with lines per degree of the model along the orders


def _excess_scatter(resid, err):
    """Scatter (px) that, added in quadrature to ``err``, makes the normalised residuals' robust
    sigma (1.4826 x median absolute value) 1; 0 when it is already <= 1."""
    if resid.size == 0:
        return 0.0
    absr = np.abs(resid)

    def robust(s):
        return 1.4826 * np.median(absr / np.sqrt(err**2 + s**2))

    if robust(0.0) <= 1.0:
        return 0.0
    lo, hi = 0.0, 1.4826 * float(np.median(absr))  # robust(hi) <= 1.4826 median(|r|) / hi = 1
    for _ in range(50):  # bisection: robust(s) decreases with s; 2^-50 of hi
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if robust(mid) > 1.0 else (lo, mid)
    return hi


def _scatter_fit(design, shift, line_err, *, clip, max_iter):
    """Clipped weighted fit with the excess scatter re-estimated until it settles.

    Returns ``(coef, used, resid, excess)``: the fit made with errors ``hypot(line_err, excess)``.
    """
    p = design.shape[1]
    new = 0.0
    for _ in range(max(int(max_iter), 1)):
        excess = new
        err = np.hypot(line_err, excess)
        w = 1.0 / err**2
        coef, used, resid = clipped_lstsq(
            design, shift, err, w, clip=clip, max_iter=max_iter, min_used=2 * p, who="measure_drift"
        )
        new = _excess_scatter(resid[used], line_err[used])
        if abs(new - excess) <= 1e-3 * new + 1e-7:  # 1e-7 px: far below any drift error
            break
    return coef, used, resid, excess


def _fiber1_pixel(solution, x, order, fiber):
    """Fiber-1 pixel ``x - dx_f(x)`` seeing the wavelength of (x, order, fiber).

    ``dx_f`` is smooth (a cubic of ~10 px amplitude), so it is evaluated every 64 px and
    interpolated linearly (error < 1e-4 px in dx; the drift's gradient is ~1e-5, so < 1e-9 px).
    """
    x, order = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.int64))
    if int(fiber) == 1:
        return x.astype(np.float64)
    out = np.empty(x.shape)
    for m in np.unique(order):
        sel = order == m
        xs = x[sel]
        grid = np.arange(np.floor(xs.min()) - _OFFSET_STEP, xs.max() + 2 * _OFFSET_STEP, _OFFSET_STEP)
        dx = solution.fiber_offset(grid, np.full(grid.size, m), int(fiber))
        out[sel] = xs - np.interp(xs, grid, dx)
    return out


@dataclass(frozen=True, eq=False)
class Drift:
    """A smooth pixel drift of the ThAr fiber against the master arc, and its star-fiber velocity.

    Attributes
    ----------
    coefficients : ndarray (x_degree + 1, order_degree + 1)
        Legendre coefficients of ``delta(x, m)`` (px), fiber-1 pixels.
    covariance : ndarray (p, p)
        Their covariance (px^2), scaled by max(1, chi2/dof).
    solution : WavelengthSolution
        The master solution (velocity scale and fiber offsets).
    reference_fiber : int
        The ThAr fiber measured (1).
    order_range : tuple of int
        Smallest and largest physical order with used lines.
    lines : QTable
        Pairs: ``order`` (physical), ``x`` (target), ``x_err``, ``x_master``, ``x_master_err``,
        ``shift``, ``shift_err`` (the fit's error: centre errors and excess scatter),
        ``residual`` (px), ``used``.
    per_order : QTable
        ``fiber``, ``order``, ``shift_px`` (mean over the order's pixels), ``shift_err_px``,
        ``velocity`` and ``velocity_err`` (m/s), ``extrapolated`` (outside ``order_range``).
    summary : QTable
        One row per fiber: ``fiber``, ``velocity``, ``velocity_err`` (m/s, mean over the orders in
        ``order_range``), ``shift_px``, ``shift_err_px``.
    qc : dict
        ``n_target_lines``, ``n_pairs``, ``n_used``, ``rms_px``, ``chi2_dof``, ``start_shift_px``,
        ``excess_scatter_px``, ``n_imprecise`` (pairs over ``max_line_error``), ``order_degree``.
    """

    coefficients: np.ndarray
    covariance: np.ndarray
    solution: WavelengthSolution
    reference_fiber: int = 1
    order_range: tuple = (52, 118)
    lines: QTable | None = None
    per_order: QTable | None = None
    summary: QTable | None = None
    qc: dict = field(default_factory=dict)

    @property
    def x_degree(self) -> int:
        return self.coefficients.shape[0] - 1

    @property
    def order_degree(self) -> int:
        return self.coefficients.shape[1] - 1

    def _design(self, x, order, fiber):
        x1 = _fiber1_pixel(self.solution, x, order, fiber) if int(fiber) != self.reference_fiber else x
        return legendre_basis(x1, order, self.x_degree, self.order_degree)

    def shift(self, x, order, fiber=1):
        """Drift ``delta`` (px) at pixel(s) ``x`` of physical order(s) in ``fiber``."""
        x, order = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.int64))
        return (self._design(x.ravel(), order.ravel(), fiber) @ self.coefficients.ravel()).reshape(x.shape)

    def shift_error(self, x, order, fiber=1):
        """Standard error (px) of :meth:`shift`."""
        x, order = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.int64))
        b = self._design(x.ravel(), order.ravel(), fiber)
        return np.sqrt(np.einsum("ij,jk,ik->i", b, self.covariance, b)).reshape(x.shape)

    def velocity(self, x, order, fiber=1):
        """Apparent velocity of the drift, ``delta dlambda/dx / lambda c`` (Quantity m/s)."""
        x, order = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.int64))
        return self.shift(x, order, fiber) * _velocity_per_px(self.solution, x, order, fiber) * (u.m / u.s)

    def corrected_solution(self, solution=None) -> DriftCorrectedSolution:
        """The master solution (or ``solution``) with this drift applied: the target's wavelengths.

        ``apply_solution(target_spec, drift.corrected_solution())`` fills the target's wavelengths.
        """
        base = self.solution if solution is None else solution
        if isinstance(base, DriftCorrectedSolution):
            msg = "corrected_solution: the solution already carries a drift; pass the master solution"
            raise InvalidParameterError(msg)
        params = {f.name: getattr(base, f.name) for f in dataclasses.fields(WavelengthSolution)}
        qc = {**base.qc, "drift_n_used": self.qc.get("n_used")}
        if self.summary is not None:
            for row in self.summary:
                qc[f"drift_m_s_{int(row['fiber'])}"] = float(row["velocity"].to_value(u.m / u.s))
        params["qc"] = qc
        return DriftCorrectedSolution(**params, drift=self)


@dataclass(frozen=True, eq=False)
class DriftCorrectedSolution(WavelengthSolution):
    """A master :class:`WavelengthSolution` evaluated at ``x - delta_f(x)``: a drifted frame's
    wavelengths. Every method of the master applies (``wavelength``, ``fiber_offset``, and
    ``apply_solution``); ``wavelength_error`` is the master's (add the drift's own,
    ``drift.shift_error`` times the dispersion, for a single frame). Not written to FITS: store
    the master solution and the drift's tables instead.
    """

    drift: Drift | None = None

    def _evaluate(self, x, order, fiber):
        x, order, fiber = np.broadcast_arrays(
            np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.int64), np.asarray(fiber)
        )
        shifted = x.copy()
        for f in np.unique(fiber):
            sel = fiber == f
            shifted[sel] = x[sel] - self.drift.shift(x[sel], order[sel], int(f))
        return super()._evaluate(shifted, order, fiber)

    def to_hdulist(self):
        msg = (
            "DriftCorrectedSolution: not written to FITS; write the master solution and the drift's "
            "tables (drift.per_order, drift.lines) instead"
        )
        raise InvalidParameterError(msg)


def _velocity_per_px(solution, x, order, fiber):
    """(dlambda/dx) / lambda * c, m/s per px, of ``solution`` at (x, order, fiber)."""
    h = 0.5
    f = np.full(np.shape(x), int(fiber))
    lam = solution.wavelength(x, order, f).to_value(u.nm)
    slope = (solution.wavelength(x + h, order, f) - solution.wavelength(x - h, order, f)).to_value(u.nm) / (
        2 * h
    )
    return slope / lam * C_M_S


def _reference_lines(master, solution, reference_fiber, find_kwargs):
    """(order, x, x_err) of the master's lines in the reference fiber (physical orders)."""
    if isinstance(master, WavelengthSolution):
        lines = master.lines
        if lines is None:
            msg = "master: the solution carries no matched lines (solution.lines is None)"
            raise InvalidParameterError(msg)
        sel = np.asarray(lines["fiber"]) == reference_fiber
        if "used" in lines.colnames:
            sel &= np.asarray(lines["used"], dtype=bool)
        order = np.asarray(lines["order"], dtype=np.int64)[sel]
        lam = lines["wavelength"].to_value(u.nm)[sel]
        x = np.asarray(lines["x"], dtype=np.float64)[sel]
        # one reference per list line and order (a combined solution stacks its DOUBLEs' lines)
        _, first = np.unique(np.stack([order.astype(np.float64), lam]), axis=1, return_index=True)
        order, lam, x = order[first], lam[first], x[first].copy()
        f = np.full(x.size, reference_fiber)
        # the solution's pixel of each list line (Newton from the observed centre)
        for _ in range(4):
            h = 0.5
            w0 = master.wavelength(x, order, f).to_value(u.nm)
            slope = (master.wavelength(x + h, order, f) - master.wavelength(x - h, order, f)).to_value(
                u.nm
            ) / (2 * h)
            x = x - (w0 - lam) / slope
        return order, x, np.zeros(x.size)
    if not hasattr(master, "fibers") or not hasattr(master, "orders"):
        msg = f"master: expected a WavelengthSolution or an EchelleSpectrum, got {type(master).__name__}"
        raise InvalidParameterError(msg)
    if solution is None:
        msg = "measure_drift: with a master arc spectrum, pass solution= (its WavelengthSolution)"
        raise InvalidParameterError(msg)
    found = find_lines(master, fibers=[reference_fiber], **(find_kwargs or {}))
    found = found[found["flags"] == 0]
    order = np.asarray(found["order"], dtype=np.int64) + solution.order_shift
    return order, np.asarray(found["x"], dtype=np.float64), np.asarray(found["x_err"], dtype=np.float64)


def _pair(ref_order, ref_x, tgt_order, tgt_x, centre, tolerance):
    """Indices (i_ref, i_tgt) of unique nearest pairs with |x_t - x_r - centre| <= tolerance."""
    ir, it = [], []
    for m in np.unique(ref_order):
        r = np.flatnonzero(ref_order == m)
        t = np.flatnonzero(tgt_order == m)
        if r.size == 0 or t.size == 0:
            continue
        t = t[np.argsort(tgt_x[t])]
        want = ref_x[r] + centre
        k = np.clip(np.searchsorted(tgt_x[t], want), 1, max(t.size - 1, 1))
        k0 = np.clip(k - 1, 0, t.size - 1)
        k1 = np.clip(k, 0, t.size - 1)
        near = np.where(np.abs(tgt_x[t[k0]] - want) <= np.abs(tgt_x[t[k1]] - want), k0, k1)
        ok = np.abs(tgt_x[t[near]] - want) <= tolerance
        cand_r, cand_t = r[ok], t[near[ok]]
        uniq, counts = np.unique(cand_t, return_counts=True)
        single = np.isin(cand_t, uniq[counts == 1])  # a target line claimed twice is ambiguous
        ir.append(cand_r[single])
        it.append(cand_t[single])
    if not ir:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(ir), np.concatenate(it)


def measure_drift(
    target_spec,
    master,
    *,
    solution=None,
    fibers=None,
    reference_fiber=1,
    x_degree=2,
    order_degree=None,
    max_shift=2.0,
    tolerance=0.3,
    clip=5.0,
    max_iter=10,
    pixel_step=8,
    found=None,
    find_kwargs=None,
    max_line_error=0.1,
) -> Drift:
    """Drift of a frame's simultaneous ThAr against the master arc, carried to the star fiber(s).

    Parameters
    ----------
    target_spec : EchelleSpectrum
        Extracted TARGET (or any) frame with ThAr in ``reference_fiber``; data in electrons with
        variance, orders labelled as the master arc's.
    master : WavelengthSolution or EchelleSpectrum
        The master arc's solution (its matched lines, at the positions the solution predicts) or
        the master arc spectrum itself (its lines found here; then ``solution`` is required).
    solution : WavelengthSolution or None
        Velocity scale and fiber offsets (default ``master`` when it is a solution).
    fibers : sequence of int or None
        Fibers to report (default every fiber of ``target_spec``).
    reference_fiber : int
        The ThAr fiber (1).
    x_degree : int
        Degree of the Legendre drift model along x (2: a shift, a stretch and a curvature).
    order_degree : int or None
        Its degree along the orders; None: from the span of the orders with paired lines, 0 below
        20 orders, 1 below 40, else 2 (see the module notes).
    max_shift : float
        Largest drift searched (px): a first pairing within this range sets the median shift.
    tolerance : float
        Pairs then lie within this distance (px) of the median shift.
    clip : float
        Pairs with |residual| > clip x max(1, robust sigma) standard errors are not used (the
        errors include the excess scatter, so the robust sigma is ~1).
    max_iter : int
        Fit-and-clip iterations.
    pixel_step : int
        Every ``pixel_step``-th pixel enters the per-order means.
    found : QTable or None
        Lines of ``target_spec`` from :func:`find_lines` (default: found here).
    find_kwargs : dict or None
        Options of :func:`find_lines`.
    max_line_error : float
        Pairs whose centre error (target and master in quadrature) exceeds this (px; 0.1 px is
        ~150 m/s, a line barely above the detection threshold) are not used.

    Returns
    -------
    Drift

    Raises
    ------
    InvalidParameterError
        Bad inputs (no variance, unknown fiber, missing ``solution``).
    FitError
        Fewer than 10 line pairs (within ``max_shift``, or precise enough), or too few pairs,
        orders or columns with lines for the model's coefficients.
    """
    sol = master if isinstance(master, WavelengthSolution) else solution
    if not isinstance(sol, WavelengthSolution):
        msg = "measure_drift: solution= must be a WavelengthSolution (the master arc's)"
        raise InvalidParameterError(msg)
    if reference_fiber not in list(np.asarray(target_spec.fibers)):
        have = [int(f) for f in target_spec.fibers]
        msg = f"target_spec: has no fiber {reference_fiber} (fibers {have}); no ThAr to measure"
        raise InvalidParameterError(msg)
    x_degree = int(x_degree)
    order_degree = None if order_degree is None else int(order_degree)
    if x_degree < 0 or (order_degree or 0) < 0 or not max_shift > 0 or not tolerance > 0 or not clip > 0:
        msg = "measure_drift: need degrees >= 0 and max_shift, tolerance, clip > 0"
        raise InvalidParameterError(msg)
    if not max_line_error > 0:
        msg = f"measure_drift: max_line_error must be > 0 px, got {max_line_error!r}"
        raise InvalidParameterError(msg)
    fibers = [int(f) for f in (target_spec.fibers if fibers is None else np.atleast_1d(fibers))]

    ref_order, ref_x, ref_err = _reference_lines(master, sol, reference_fiber, find_kwargs)
    if found is None:
        found = find_lines(target_spec, fibers=[reference_fiber], **(find_kwargs or {}))
    found = found[(np.asarray(found["fiber"]) == reference_fiber) & (np.asarray(found["flags"]) == 0)]
    tgt_order = np.asarray(found["order"], dtype=np.int64) + sol.order_shift
    tgt_x = np.asarray(found["x"], dtype=np.float64)
    tgt_err = np.asarray(found["x_err"], dtype=np.float64)

    ir, it = _pair(ref_order, ref_x, tgt_order, tgt_x, 0.0, max_shift)
    if ir.size < _MIN_PAIRS:
        msg = f"measure_drift: only {ir.size} lines within {max_shift} px of the master's; no drift measured"
        raise FitError(msg)
    start = float(np.median(tgt_x[it] - ref_x[ir]))
    ir, it = _pair(ref_order, ref_x, tgt_order, tgt_x, start, tolerance)
    line_err = np.hypot(tgt_err[it], ref_err[ir])
    precise = np.isfinite(line_err) & (line_err <= max_line_error)
    n_imprecise = int(np.sum(~precise))
    ir, it, line_err = ir[precise], it[precise], np.maximum(line_err[precise], 1e-5)
    if ir.size < _MIN_PAIRS:
        msg = (
            f"measure_drift: only {ir.size} line pairs with centre errors <= max_line_error="
            f"{max_line_error} px ({n_imprecise} less precise); no drift measured"
        )
        raise FitError(msg)
    order = ref_order[ir]
    shift = tgt_x[it] - ref_x[ir]
    x_ref = ref_x[ir]
    if order_degree is None:
        order_degree = min(2, int(order.max() - order.min() + 1) // _ORDERS_PER_DEGREE)
    p = (x_degree + 1) * (order_degree + 1)
    n_orders, n_bins = np.unique(order).size, np.unique(np.floor(x_ref / 64.0)).size
    if shift.size < 2 * p or n_orders <= order_degree or n_bins <= x_degree:
        msg = (
            f"measure_drift: {shift.size} line pairs in {n_orders} orders and {n_bins} 64-px columns "
            f"cannot fix {p} coefficients (x_degree={x_degree}, order_degree={order_degree}); lower them"
        )
        raise FitError(msg)
    design = legendre_basis(x_ref, order, x_degree, order_degree)
    coef, used, resid, excess = _scatter_fit(design, shift, line_err, clip=clip, max_iter=max_iter)
    err = np.hypot(line_err, excess)
    w = 1.0 / err**2
    norm = resid / err
    chi2 = float(np.sum(norm[used] ** 2) / max(used.sum() - p, 1))
    cov = np.linalg.inv((design * (w * used)[:, None]).T @ design) * max(chi2, 1.0)

    lines = QTable()
    lines["order"] = order
    lines["x"] = tgt_x[it]
    lines["x_err"] = tgt_err[it]
    lines["x_master"] = ref_x[ir]
    lines["x_master_err"] = ref_err[ir]
    lines["shift"] = shift
    lines["shift_err"] = err
    lines["residual"] = resid
    lines["used"] = used
    o_used = order[used]
    order_range = (int(o_used.min()), int(o_used.max()))
    drift = Drift(
        coefficients=coef.reshape(x_degree + 1, order_degree + 1),
        covariance=cov,
        solution=sol,
        reference_fiber=int(reference_fiber),
        order_range=order_range,
        lines=lines,
    )
    per_order, summary = _report(drift, target_spec, fibers, int(pixel_step))
    qc = {
        "n_target_lines": len(found),
        "n_pairs": int(shift.size),
        "n_used": int(used.sum()),
        "rms_px": float(np.sqrt(np.mean(resid[used] ** 2))),
        "chi2_dof": chi2,
        "start_shift_px": start,
        "excess_scatter_px": float(excess),
        "n_imprecise": n_imprecise,
        "order_degree": int(order_degree),
    }
    return dataclasses.replace(drift, per_order=per_order, summary=summary, qc=qc)


def _report(drift, spec, fibers, step):
    """Per-order and overall shifts and velocities with errors (linear in the coefficients)."""
    x = np.asarray(spec.pixel, dtype=np.float64)[::step]
    orders = np.asarray(spec.orders, dtype=np.int64) + drift.solution.order_shift
    cov = drift.covariance
    a = drift.coefficients.ravel()
    rows = {
        k: []
        for k in ("fiber", "order", "shift_px", "shift_err_px", "velocity", "velocity_err", "extrapolated")
    }
    summary = {k: [] for k in ("fiber", "velocity", "velocity_err", "shift_px", "shift_err_px")}
    for f in fibers:
        g_v, g_px = [], []
        for m in orders:
            mm = np.full(x.size, m)
            b = drift._design(x, mm, f)
            vpp = _velocity_per_px(drift.solution, x, mm, f)
            gv = (b * vpp[:, None]).mean(axis=0)
            gp = b.mean(axis=0)
            inside = drift.order_range[0] <= m <= drift.order_range[1]
            rows["fiber"].append(f)
            rows["order"].append(int(m))
            rows["shift_px"].append(float(gp @ a))
            rows["shift_err_px"].append(float(np.sqrt(gp @ cov @ gp)))
            rows["velocity"].append(float(gv @ a))
            rows["velocity_err"].append(float(np.sqrt(gv @ cov @ gv)))
            rows["extrapolated"].append(not inside)
            if inside:
                g_v.append(gv)
                g_px.append(gp)
        gv = np.mean(g_v, axis=0) if g_v else np.full(a.size, np.nan)
        gp = np.mean(g_px, axis=0) if g_px else np.full(a.size, np.nan)
        summary["fiber"].append(f)
        summary["velocity"].append(float(gv @ a))
        summary["velocity_err"].append(float(np.sqrt(gv @ cov @ gv)))
        summary["shift_px"].append(float(gp @ a))
        summary["shift_err_px"].append(float(np.sqrt(gp @ cov @ gp)))
    per_order = QTable(rows)
    per_order["velocity"] = per_order["velocity"] * (u.m / u.s)
    per_order["velocity_err"] = per_order["velocity_err"] * (u.m / u.s)
    summary = QTable(summary)
    summary["velocity"] = summary["velocity"] * (u.m / u.s)
    summary["velocity_err"] = summary["velocity_err"] * (u.m / u.s)
    return per_order, summary
