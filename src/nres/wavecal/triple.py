"""``combine_doubles``: several DOUBLE solutions -> one solution of all three fibers (the TRIPLE).

The original (``avg_doub2trip`` / ``thar_triple``, idl-wavecal.md 10.3-10.4) averaged the fitted
parameters and coefficients element by element and fitted the fiber-shift polynomial from line
pairs. Here the averaging is done on what the solutions predict, not on their parameters (each
solution's correction belongs to its own fitted physical model):

1. fiber 1: every DOUBLE's fiber-1 wavelength on a grid (every ``step`` px of the orders with
   lines); a DOUBLE whose grid departs from the median of the others by more than ``clip`` of its
   own standard error (rms over the grid) is rejected whole (with three or more inputs); the
   rest are averaged with weights 1 / (mean variance of each);
2. star fibers: ``lambda_f(x) = lambda_1(x - dx_f(x))`` with ``dx_f`` the smooth line-pair model of
   :func:`measure_fiber_offsets` pooled over all DOUBLEs that lit fiber f;
3. the result is a :class:`WavelengthSolution`: the mean physical model (with the measured offsets
   as its F00..F19) plus, per fiber, a Legendre correction fitted to the combined grid, whose
   covariance is propagated linearly from the inputs' covariances and the offsets'.
"""

from __future__ import annotations

import dataclasses

import astropy.units as u
import numpy as np
from astropy.table import QTable, vstack

from ..doppler import C_M_S
from ..errors import FitError, InvalidParameterError
from .fibers import FiberOffsets, _design, measure_fiber_offsets
from .solution import WavelengthSolution, _basis, correction_basis

__all__ = ["combine_doubles"]


def _grid(orders, step, nx):
    xg = np.append(np.arange(0.0, nx, float(step)), nx - 1.0)
    xx, oo = np.meshgrid(xg, orders)
    return xx.ravel(), oo.ravel().astype(np.int64)


def _input_basis(sol, x, order, fiber):
    """(n, p_k) design of ``sol``'s correction for ``fiber`` at (x, order) (its own basis kind)."""
    return _basis(sol.correction, x, order, sol.x_degree, sol.order_degree)


def _mean_model(models):
    """Physical model with the mean (<= 4 inputs) or median (> 4) of sinalp, fl, y0, z0, coefs.

    The original's rule (avg_doub2trip); the per-fiber corrections fitted afterwards absorb any
    difference, so the choice only sets the starting point of the representation.
    """
    agg = np.mean if len(models) <= 4 else np.median
    base = models[0]
    return dataclasses.replace(
        base,
        sinalp=float(agg([m.sinalp for m in models])),
        fl=float(agg([m.fl for m in models])),
        y0=float(agg([m.y0 for m in models])),
        z0=float(agg([m.z0 for m in models])),
        coefs=tuple(float(v) for v in agg([m.coefs for m in models], axis=0)),
    )


def combine_doubles(
    solutions,
    *,
    offsets=None,
    clip=5.0,
    x_degree=None,
    order_degree=None,
    step=32,
    offset_kwargs=None,
) -> WavelengthSolution:
    """One wavelength solution of fibers 0, 1 and 2 from the solutions of several DOUBLE arcs.

    Parameters
    ----------
    solutions : sequence of WavelengthSolution
        Solutions of DOUBLEs (each fitted fiber 1 and one star fiber; 0+1 and 1+2 may be mixed),
        orders labelled alike (same ``order_shift``).
    offsets : FiberOffsets or None
        Star-fiber offsets; default :func:`measure_fiber_offsets` over the accepted ``solutions``
        (``offset_kwargs`` are passed on).
    clip : float
        With three or more inputs, a DOUBLE whose fiber-1 wavelengths differ from the median of
        all by more than ``clip`` times its own standard error (rms over the grid) is rejected.
    x_degree, order_degree : int or None
        Degrees of the output corrections (default: the largest of the inputs' Legendre degrees and
        the offsets' degrees, so the offsets' uncertainty reaches the star fibers' covariance).
    step : int
        Grid spacing along x (px) on which the solutions are combined.
    offset_kwargs : dict or None
        Options of :func:`measure_fiber_offsets`.

    Returns
    -------
    WavelengthSolution
        ``fibers`` = 1 and every star fiber with measured offsets; ``qc``: ``n_doubles``,
        ``n_rejected``, ``rejected`` (indices, comma-separated), ``deviation_<k>`` (rms
        normalised difference of input k from the median), ``representation_rms_m_s_<f>`` (grid
        fit residual), ``offset_rms_px_<f>``; ``lines`` = the inputs' lines with a ``double`` column.

    Raises
    ------
    InvalidParameterError
        No solutions, mixed order labels, or ``offsets`` of the wrong type.
    FitError
        No input fitted fiber 1, or every input rejected.
    """
    solutions = list(solutions) if not isinstance(solutions, WavelengthSolution) else [solutions]
    if not solutions or not all(isinstance(s, WavelengthSolution) for s in solutions):
        msg = "combine_doubles: solutions must be a non-empty sequence of WavelengthSolution"
        raise InvalidParameterError(msg)
    shifts = {int(s.order_shift) for s in solutions}
    if len(shifts) > 1:
        msg = f"combine_doubles: the solutions label orders differently (order_shift {sorted(shifts)})"
        raise InvalidParameterError(msg)
    if not all(1 in s.fibers for s in solutions):
        msg = "combine_doubles: every DOUBLE solution must have fitted fiber 1 (the ThAr fiber)"
        raise FitError(msg)
    if offsets is not None and not isinstance(offsets, FiberOffsets):
        msg = f"offsets: expected FiberOffsets, got {type(offsets).__name__}"
        raise InvalidParameterError(msg)

    nx = solutions[0].model.nx
    lo, hi = [], []
    for s in solutions:
        if s.lines is None or len(s.lines) == 0:
            msg = "combine_doubles: a solution without matched lines (solution.lines) cannot be placed"
            raise InvalidParameterError(msg)
        o = np.asarray(s.lines["order"])[np.asarray(s.lines["fiber"]) == 1]
        lo.append(o.min())
        hi.append(o.max())
    orders = np.arange(min(lo), max(hi) + 1)
    x, m = _grid(orders, step, nx)
    ones = np.ones(x.size, dtype=np.int64)

    # 1. fiber 1 of every DOUBLE, rejection of whole outliers, weighted mean
    lam = np.stack([s.wavelength(x, m, ones).to_value(u.nm) for s in solutions])
    err = np.stack([s.wavelength_error(x, m, ones).to_value(u.nm) for s in solutions])
    n = len(solutions)
    keep = np.ones(n, dtype=bool)
    dev = np.zeros(n)
    if n >= 3:
        med = np.median(lam, axis=0)
        dev = np.sqrt(np.mean(((lam - med) / np.maximum(err, 1e-12)) ** 2, axis=1))
        keep = dev <= clip
        if not keep.any():
            msg = f"combine_doubles: every DOUBLE departs from the median by > {clip} sigma"
            raise FitError(msg)
    w = np.where(keep, 1.0 / np.mean(err**2, axis=1), 0.0)
    w = w / w.sum()
    lam1 = w @ lam
    if offsets is None:  # line pairs of the accepted DOUBLEs only
        kept = [s for s, k in zip(solutions, keep, strict=True) if k]
        offsets = measure_fiber_offsets(kept, **(offset_kwargs or {}))

    model = offsets.apply_to(_mean_model([s.model for s, k in zip(solutions, keep, strict=True) if k]))
    if x_degree is None or order_degree is None:
        # the star fibers' wavelengths carry the offsets' polynomial too: with the inputs' degrees
        # alone the grid fit projected away the offsets' uncertainty along the orders (a 4.2 sigma
        # miss in tests/wavecal/test_wave_accuracy.py)
        leg = [s for s in solutions if s.correction == "legendre"]
        xd0 = max(max((s.x_degree for s in leg), default=6), int(offsets.x_degree))
        od0 = max(max((s.order_degree for s in leg), default=5), int(offsets.order_degree))
        x_degree = xd0 if x_degree is None else x_degree
        order_degree = od0 if order_degree is None else order_degree
    xd, od = int(x_degree), int(order_degree)
    design = correction_basis(x, m, xd, od)
    if design.shape[1] >= x.size:
        msg = f"combine_doubles: degrees ({xd}, {od}) need more grid points; lower step="
        raise InvalidParameterError(msg)
    proj = np.linalg.pinv(design)  # unweighted least squares on the uniform grid

    fibers = tuple(sorted({1, *offsets.fibers}))
    coefs, covs, qc = [], [], {}
    for f in fibers:
        if f == 1:
            xs = x
            target = lam1
        else:
            xs = x - offsets.dx(x, m, f)
            target = w @ np.stack([s.wavelength(xs, m, ones).to_value(u.nm) for s in solutions])
        phys = model.wavelength(x, m, np.full(x.size, f)).to_value(u.nm)
        coef = proj @ (target - phys)
        resid = target - phys - design @ coef
        qc[f"representation_rms_m_s_{f}"] = float(np.sqrt(np.mean((resid / target * C_M_S) ** 2)))
        # covariance: the grid values are linear in every input's coefficients (and in the offsets)
        cov = np.zeros((design.shape[1], design.shape[1]))
        for k, s in enumerate(solutions):
            if w[k] == 0:
                continue
            g = proj @ (w[k] * _input_basis(s, xs, m, 1))
            cov += g @ s.covariance[s._fiber_slot(1)] @ g.T
        if f != 1:
            h = 0.5  # the fiber-1 dispersion at the shifted pixels; dlambda/d(dx) = -dispersion
            disp = (
                w
                @ np.stack(
                    [
                        s.wavelength(xs + h, m, ones).to_value(u.nm)
                        - s.wavelength(xs - h, m, ones).to_value(u.nm)
                        for s in solutions
                    ]
                )
                / (2 * h)
            )
            slot = offsets.fibers.index(f)
            b_off = _design(offsets.basis, x, m, offsets.x_degree, offsets.order_degree)
            g = proj @ (-disp[:, None] * b_off)
            cov += g @ offsets.covariance[slot] @ g.T
            qc[f"offset_rms_px_{f}"] = offsets.qc.get(f"rms_px_{f}")
        coefs.append(coef.reshape(xd + 1, od + 1))
        covs.append(cov)

    tables = []
    for k, s in enumerate(solutions):
        t = QTable(s.lines)
        t["double"] = np.full(len(t), k)
        tables.append(t)
    qc.update(
        n_doubles=n,
        n_rejected=int((~keep).sum()),
        rejected=",".join(str(k) for k in np.flatnonzero(~keep)),
        x_degree=xd,
        order_degree=od,
        n_used=int(sum(s.qc.get("n_used", 0) for s, k in zip(solutions, keep, strict=True) if k)),
    )
    for k in range(n):
        qc[f"deviation_{k}"] = float(dev[k])
    return WavelengthSolution(
        model=model,
        fibers=fibers,
        coefficients=np.stack(coefs),
        covariance=np.stack(covs),
        order_shift=int(solutions[0].order_shift),
        x_shift=0.0,
        lines=vstack(tables, metadata_conflicts="silent"),
        qc=qc,
        per_order=None,
        correction="legendre",
    )
