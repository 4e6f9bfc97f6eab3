"""Fiber-to-fiber offsets ``dx(x, m) = x_fiber - x_fiber1`` from the matched lines of DOUBLE arcs.

A DOUBLE lights the ThAr reference fiber 1 and one star fiber (0 or 2). The same catalogue line,
matched in both fibers of the same order, gives one offset ``dx = x_f - x_1`` at the star-fiber
pixel ``x_f`` (the original's ``thar_xdisp``, idl-wavecal.md 10.4). A smooth model is fitted to
the pairs of one or several DOUBLEs: a Legendre series ``sum_jk b_jk P_j(u) P_k(v)`` with
``u = (x - 2047.5) / 2047.5``, ``v = (m - 85) / 33``, inverse-variance weights and iterative
robust clipping. The sign is always ``x_fiber - x_fiber1`` (the original's three-fiber path wrote
fiber 0's with the opposite sign, idl-wavecal.md 13 fix 5), evaluated at the star fiber's pixel,
which is the convention of :meth:`PhysicalModel.wavelength` (``lambda_f(x) = lambda_1(x - dx(x))``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from astropy.table import QTable

from .. import legacy as _legacy
from ..errors import FitError, InvalidParameterError
from ._robust import clipped_lstsq, grouped_normal, variance_components
from .solution import legendre_basis

__all__ = ["FiberOffsets", "measure_fiber_offsets", "line_pairs", "idl_shift_basis"]

_MEASURE = "measure_fiber_offsets"
_legacy.register(
    _MEASURE,
    "basis",
    choices=("legendre", "idl"),
    default="legendre",
    legacy="idl",
    reference="idl-wavecal.md 3.8 and 10.4",
    summary="the 10 raw-power terms of jx = x - nx/2 and jo = iord - nord/2 (thar_xdisp's basis)",
)
_legacy.register(
    _MEASURE,
    "weighting",
    choices=("inverse_variance", "idl"),
    default="inverse_variance",
    legacy="idl",
    reference="idl-wavecal.md 10.4 (step 3)",
    summary="errors floored at their 10th percentile, weights (err10/err)^2 entering squared (err^-4)",
)

_MIN_PAIRS = 10  # the original stops below 10 cross-fiber pairs (idl-wavecal.md 12)


def idl_shift_basis(x, order, *, nx=4096, nord=67, ord0=52):
    """Design matrix (n, 10) of the original's fiber-shift polynomial F0..F9 (pixels per unit).

    ``jx = x - nx/2`` and ``jo = m - ord0 - nord/2`` (nord/2 = 33.5), raw powers in the order of
    idl-wavecal.md 3.8: 1, jo, jx, jx jo, jo^2, jx jo^2, jx^2, jo jx^2, jx^3, jo^3.
    """
    jx = np.asarray(x, dtype=np.float64).ravel() - nx / 2.0
    jo = np.asarray(order, dtype=np.float64).ravel() - ord0 - nord / 2.0
    one = np.ones_like(jx)
    return np.stack([one, jo, jx, jx * jo, jo**2, jx * jo**2, jx**2, jo * jx**2, jx**3, jo**3], axis=1)


def _design(kind, x, order, x_degree, order_degree):
    if kind == "idl":
        return idl_shift_basis(x, order)
    return legendre_basis(x, order, x_degree, order_degree)


@dataclass(frozen=True, eq=False)
class FiberOffsets:
    """Smooth pixel offsets ``dx = x_fiber - x_fiber1`` of the star fibers.

    Attributes
    ----------
    fibers : tuple of int
        Star fibers with a fitted offset (0 and/or 2).
    coefficients : ndarray (n_fiber, p)
        Coefficients of the basis (px); ``p = (x_degree + 1)(order_degree + 1)`` for "legendre",
        10 for "idl" (the original's F0..F9 for that fiber).
    covariance : ndarray (n_fiber, p, p)
        Covariance of the coefficients, px^2: generalised least squares with the pair-error scale
        and the per-order scatter of ``qc`` (the original's weighting: scaled by max(1, chi2/dof)).
    x_degree, order_degree : int
        Degrees of the Legendre basis (3, 3 for "idl": its terms are a subset of cubic x cubic).
    basis : str
        "legendre" or "idl" (:func:`idl_shift_basis`).
    order_range : tuple of int
        Smallest and largest physical order with pairs (outside it the model extrapolates).
    x_range : tuple of float
        Smallest and largest star-fiber column with pairs (a window's columns; the same).
    pairs : QTable
        One row per line pair: ``double`` (index of the input), ``fiber``, ``order``,
        ``wavelength`` (list, nm), ``x`` (star fiber, px), ``x1`` (fiber 1, px), ``dx``,
        ``dx_err``, ``residual`` (px), ``used``.
    qc : dict
        Per fiber ``n_pairs_<f>``, ``n_used_<f>``, ``rms_px_<f>`` (used pairs), ``chi2_dof_<f>``,
        ``pair_error_scale_<f>`` and ``order_scatter_px_<f>`` (the error components of the fit).
    """

    fibers: tuple
    coefficients: np.ndarray
    covariance: np.ndarray
    x_degree: int = 3
    order_degree: int = 3
    basis: str = "legendre"
    order_range: tuple = (52, 118)
    x_range: tuple = (0.0, 4095.0)
    pairs: QTable | None = None
    qc: dict = field(default_factory=dict)

    def _slot(self, fiber):
        if fiber not in self.fibers:
            msg = f"FiberOffsets: fiber {fiber} has no measured offset (have {self.fibers})"
            raise InvalidParameterError(msg)
        return self.fibers.index(fiber)

    def dx(self, x, order, fiber):
        """Offset ``x_fiber - x_fiber1`` (px) at star-fiber pixel(s) ``x`` of physical order(s).

        Fiber 1 gives 0. Shapes broadcast; returns a float64 array.
        """
        x, order = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.float64))
        if int(fiber) == 1:
            return np.zeros(x.shape)
        coef = self.coefficients[self._slot(int(fiber))]
        return (_design(self.basis, x, order, self.x_degree, self.order_degree) @ coef).reshape(x.shape)

    def dx_error(self, x, order, fiber):
        """Standard error (px) of :meth:`dx` from the coefficients' covariance."""
        x, order = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.float64))
        if int(fiber) == 1:
            return np.zeros(x.shape)
        cov = self.covariance[self._slot(int(fiber))]
        b = _design(self.basis, x, order, self.x_degree, self.order_degree)
        return np.sqrt(np.einsum("ij,jk,ik->i", b, cov, b)).reshape(x.shape)

    def to_fibcoefs(self, fiber, *, nx=4096, nord=67, ord0=52):
        """The original's 10 shift coefficients (F0..F9 of :class:`PhysicalModel`) for ``fiber``.

        With ``basis="idl"`` these are the fitted coefficients; otherwise the 10-term polynomial is
        fitted by least squares to the model on a grid of every 32nd pixel of ``x_range`` and every
        order of ``order_range``, where the pairs constrain it: fitted over the whole detector, the
        model's extrapolation beyond a window's columns would set the polynomial, and the physical
        model of a TRIPLE (:meth:`apply_to`) then departs from the offsets inside the window (7-12
        m/s per order on the demo's window, 1-2 m/s with the pairs' columns).

        Returns
        -------
        ndarray (10,)
            Pixels; ``dx = sum_k F_k t_k(jx, jo)`` with the terms of :func:`idl_shift_basis`.
        """
        slot = self._slot(int(fiber))
        if self.basis == "idl":
            return np.array(self.coefficients[slot], dtype=np.float64)
        lo, hi = (float(v) for v in self.x_range)
        xg = np.append(np.arange(lo, hi, 32.0), hi)
        og = np.arange(self.order_range[0], self.order_range[1] + 1, dtype=np.float64)
        xx, oo = (a.ravel() for a in np.meshgrid(xg, og))
        target = self.dx(xx, oo, fiber)
        design = idl_shift_basis(xx, oo, nx=nx, nord=nord, ord0=ord0)
        scale = np.maximum(np.abs(design).max(axis=0), 1e-300)  # jx^3 ~ 1e10: normalise columns
        return np.linalg.lstsq(design / scale, target, rcond=None)[0] / scale

    def apply_to(self, model):
        """A copy of ``model`` (PhysicalModel) whose fiber-shift polynomials are these offsets'.

        Fibers without a measured offset keep the model's polynomial.
        """
        fib = [list(model.fibcoefs[0]), list(model.fibcoefs[1])]
        for f in self.fibers:
            fib[f // 2] = list(self.to_fibcoefs(f, nx=model.nx, nord=model.nord, ord0=model.ord0))
        return dataclasses.replace(model, fibcoefs=tuple(tuple(r) for r in fib))


def _lines_of(item, k):
    lines = getattr(item, "lines", item)
    if not isinstance(lines, QTable | type(None)) and not hasattr(lines, "colnames"):
        msg = f"doubles[{k}]: expected a WavelengthSolution or a QTable of matched lines"
        raise InvalidParameterError(msg)
    if lines is None:
        msg = f"doubles[{k}]: the solution carries no matched lines (solution.lines is None)"
        raise InvalidParameterError(msg)
    need = {"fiber", "order", "x", "x_err", "wavelength"}
    missing = need - set(lines.colnames)
    if missing:
        msg = f"doubles[{k}]: matched-line table lacks column(s) {sorted(missing)}"
        raise InvalidParameterError(msg)
    return lines


def line_pairs(doubles, *, reference=1):
    """Pairs of the same catalogue line matched in a star fiber and the reference fiber.

    Parameters
    ----------
    doubles : WavelengthSolution or QTable, or a sequence of them
        Solutions of DOUBLE arcs (their ``lines`` table) or such tables: columns ``fiber``,
        ``order`` (physical), ``x``, ``x_err`` (px), ``wavelength`` (list line, nm) and optionally
        ``used`` (lines the solution clipped are left out).
    reference : int
        The reference fiber (1, the ThAr fiber).

    Returns
    -------
    QTable
        ``double``, ``fiber``, ``order``, ``wavelength`` (nm), ``x`` (star fiber), ``x1``
        (reference fiber), ``dx = x - x1``, ``dx_err = hypot(x_err, x1_err)`` (px).
    """
    import astropy.units as u

    if not isinstance(doubles, list | tuple):
        doubles = [doubles]
    cols = {k: [] for k in ("double", "fiber", "order", "wavelength", "x", "x1", "dx", "dx_err")}
    for k, item in enumerate(doubles):
        lines = _lines_of(item, k)
        fib = np.asarray(lines["fiber"], dtype=np.int64)
        order = np.asarray(lines["order"], dtype=np.int64)
        lam = np.asarray(u.Quantity(lines["wavelength"], u.nm).value, dtype=np.float64)
        x = np.asarray(lines["x"], dtype=np.float64)
        xe = np.asarray(lines["x_err"], dtype=np.float64)
        ok = np.asarray(lines["used"], dtype=bool) if "used" in lines.colnames else np.ones(fib.size, bool)
        # the same list line in the same order: both fibers were matched to one catalogue entry,
        # so its wavelength is bit-identical (the original accepted |dlambda| <= 0.005 nm)
        ref = {
            (int(m), float(w)): i
            for i, (f, m, w) in enumerate(zip(fib, order, lam, strict=True))
            if f == reference and ok[i]
        }
        for i in np.flatnonzero(ok & (fib != reference)):
            j = ref.get((int(order[i]), float(lam[i])))
            if j is None:
                continue
            cols["double"].append(k)
            cols["fiber"].append(int(fib[i]))
            cols["order"].append(int(order[i]))
            cols["wavelength"].append(lam[i])
            cols["x"].append(x[i])
            cols["x1"].append(x[j])
            cols["dx"].append(x[i] - x[j])
            cols["dx_err"].append(float(np.hypot(xe[i], xe[j])))
    table = QTable(
        {
            k: np.asarray(v, dtype=np.int64 if k in ("double", "fiber", "order") else float)
            for k, v in cols.items()
        }
    )
    table["wavelength"] = table["wavelength"] * u.nm
    return table


def _fit_fiber(design, dx, err, kind_weights, clip, max_iter, order, k):
    """Weighted fit with iterative robust clipping; returns (coef, cov, used, residual, chi2_dof,
    (line error scale, order scatter px)).

    With inverse-variance weights the clipped fit is redone as generalised least squares with the
    error components the pair errors leave out (:func:`~nres.wavecal._robust.variance_components`):
    a scale of the pair variances and an offset shared by the pairs of one order (``order``; ``k``
    group-level terms = order degree + 1). On the demo's windowed arcs the pairs of the two orders
    at each edge of the window are offset by ~8 millipixels (extraction residuals) and the
    offsets' reported errors must carry that.
    """
    if kind_weights == "idl":
        # thar_xdisp: err floored at its 10th percentile, w = (err10/err)^2, and lstsqr squares w
        err10 = np.percentile(err, 10)
        w = (err10 / np.maximum(err, err10)) ** 4
    else:
        w = 1.0 / err**2
    scale = np.maximum(np.abs(design).max(axis=0), 1e-300)
    a = design / scale
    coef, used, resid = clipped_lstsq(
        a, dx, err, w, clip=clip, max_iter=max_iter, min_used=design.shape[1] + 1, who="measure_fiber_offsets"
    )
    chi2 = float(np.sum((resid[used] / err[used]) ** 2) / max(used.sum() - design.shape[1], 1))
    if kind_weights == "idl":
        nmat = (a * (w * used)[:, None]).T @ a
        cov = np.linalg.inv(nmat)
        wu = w * used  # the sandwich covariance of a fit with non-inverse-variance weights
        meat = (a * (wu**2 * err**2)[:, None]).T @ a
        cov = cov @ meat @ cov
        cov = cov * max(chi2, 1.0) / np.outer(scale, scale)
        return coef / scale, cov, used, resid, chi2, (max(chi2, 1.0), 0.0)
    au, wu, yu, gu = a[used], w[used], dx[used], np.asarray(order)[used]
    line_scale, order_var = variance_components(resid[used], wu, gu, k, design.shape[1])
    wu = wu / line_scale
    nmat, rhs = grouped_normal((au * wu[:, None]).T @ au, au.T @ (wu * yu), au, wu, yu, gu, order_var)
    cov = np.linalg.inv(nmat)
    coef = cov @ rhs
    resid = dx - a @ coef
    components = (line_scale, float(np.sqrt(order_var)))
    return coef / scale, cov / np.outer(scale, scale), used, resid, chi2, components


def _cv_offset_degrees(pairs, fibers, max_degree, clip, max_iter, folds, seed=0):
    """(x_degree, order_degree) minimising the held-out chi^2 of the pairs, summed over the fibers.

    Each fiber's pairs are first clipped with the largest degrees its pairs support; candidates
    need >= 3 pairs per coefficient and a numerically determined fit in every fiber
    (:data:`~nres.wavecal.solve.MAX_CONDITION`).
    """
    from .solve import MAX_CONDITION

    xd_max, od_max = max_degree
    data = []
    for f in fibers:
        sel = np.asarray(pairs["fiber"]) == f
        x, m = np.asarray(pairs["x"][sel], float), np.asarray(pairs["order"][sel], float)
        dx = np.asarray(pairs["dx"][sel], dtype=np.float64)
        err = np.maximum(np.asarray(pairs["dx_err"][sel], dtype=np.float64), 1e-6)
        full = legendre_basis(x, m, xd_max, od_max)
        used = np.ones(dx.size, dtype=bool)
        if dx.size >= 3 * full.shape[1]:
            scale = np.maximum(np.abs(full).max(axis=0), 1e-300)
            _, used, _ = clipped_lstsq(full / scale, dx, err, err**-2.0, clip=clip, max_iter=max_iter,
                                       min_used=full.shape[1] + 1, who="measure_fiber_offsets")  # fmt: skip
        sw = 1.0 / err[used]
        a, b = full[used] * sw[:, None], dx[used] * sw
        fold = np.random.default_rng(seed).permutation(b.size) % folds
        blocks = [(a[fold == k].T @ a[fold == k], a[fold == k].T @ b[fold == k]) for k in range(folds)]
        data.append((a, b, blocks))
    best = None
    for xd in range(xd_max + 1):
        for od in range(od_max + 1):
            cols = (np.arange(xd + 1)[:, None] * (od_max + 1) + np.arange(od + 1)[None, :]).ravel()
            score = 0.0
            for a, b, blocks in data:
                sub = a[:, cols]
                d = np.maximum(np.linalg.norm(sub, axis=0), 1e-300)
                if b.size < 3 * cols.size or np.linalg.cond((sub / d).T @ (sub / d)) > MAX_CONDITION:
                    score = np.inf
                    break
                n_all = sum(blk[0] for blk in blocks)[np.ix_(cols, cols)]
                r_all = sum(blk[1] for blk in blocks)[cols]
                for nk, rk in blocks:
                    nk, rk = nk[np.ix_(cols, cols)], rk[cols]
                    dd = np.sqrt(np.maximum(np.diag(n_all - nk), 1e-300))
                    coef = np.linalg.solve((n_all - nk) / np.outer(dd, dd), (r_all - rk) / dd) / dd
                    score += coef @ nk @ coef - 2.0 * coef @ rk  # + the constant b_k . b_k
            if np.isfinite(score) and (best is None or score < best[0]):
                best = (score, xd, od)
    if best is None:
        msg = f"measure_fiber_offsets: too few line pairs to choose degrees within {max_degree}; give them"
        raise FitError(msg)
    return best[1], best[2]


def measure_fiber_offsets(
    doubles,
    *,
    x_degree=None,
    order_degree=None,
    max_degree=(3, 3),
    folds=5,
    clip=5.0,
    max_iter=10,
    basis=None,
    weighting=None,
    legacy=False,
) -> FiberOffsets:
    """Fit the star fibers' pixel offsets ``dx = x_fiber - x_fiber1`` from DOUBLE solutions.

    Parameters
    ----------
    doubles : WavelengthSolution or QTable, or a sequence of them
        Solutions of DOUBLE arcs (fibers 0+1 and/or 1+2); pairs of all of them are pooled, so
        several DOUBLEs average robustly (pairs beyond ``clip`` are left out).
    x_degree, order_degree : int or None
        Degrees of the Legendre model along x and order. None (default): chosen by ``folds``-fold
        cross-validation on the pairs within ``max_degree`` (3, 3: the family of the original's
        cubic shift polynomial, whose residual from the simulator's truth is < 1e-3 px), shared by
        the fibers. A window of the detector needs less and fits the noise (and the extraction's
        per-order offsets at its edges) with more: on the demo's 10 orders x 2048 columns (3, 3)
        gave mean per-order errors of 5-6 m/s, the chosen degrees 2-3 m/s.
    max_degree : (int, int)
        Largest (x, order) degrees cross-validation considers.
    folds : int
        Folds of the cross-validation.
    clip : float
        Pairs with |residual| > clip x max(1, robust sigma) standard errors are not used.
    max_iter : int
        Fit-and-clip iterations.
    basis : {"legendre", "idl"}, optional
        "legendre" (default) or, legacy, the original's 10 raw-power terms (the coefficients are
        then F0..F9 directly).
    weighting : {"inverse_variance", "idl"}, optional
        "inverse_variance" (default) or, legacy, thar_xdisp's (err10/err)^4.
    legacy : bool
        Shorthand for both legacy options.

    Returns
    -------
    FiberOffsets

    Raises
    ------
    InvalidParameterError
        Inputs without matched lines or bad degrees.
    FitError
        Fewer than 10 pairs for a star fiber (the original's limit), or too few after clipping.
    """
    opts = _legacy.resolve(_MEASURE, legacy, basis=basis, weighting=weighting)
    kind = opts["basis"]
    if kind == "idl":
        x_degree, order_degree = 3, 3
    if (x_degree is None) != (order_degree is None):
        msg = "measure_fiber_offsets: give both x_degree and order_degree, or neither (cross-validation)"
        raise InvalidParameterError(msg)
    degrees = tuple(int(v) for v in (max_degree if x_degree is None else (x_degree, order_degree)))
    folds = int(folds)
    if len(degrees) != 2 or min(degrees) < 0 or not clip > 0 or folds < 2:
        msg = "measure_fiber_offsets: need degrees >= 0, clip > 0 and folds >= 2"
        raise InvalidParameterError(msg)
    pairs = line_pairs(doubles)
    fibers = tuple(int(f) for f in np.unique(pairs["fiber"]))
    if not fibers:
        msg = "measure_fiber_offsets: no line matched in both a star fiber and fiber 1 (DOUBLE solutions?)"
        raise FitError(msg)
    counts = {f: int(np.sum(np.asarray(pairs["fiber"]) == f)) for f in fibers}
    if x_degree is None:
        x_degree, order_degree = degrees  # kept when a fiber has too few pairs (raised below)
        p_max = (degrees[0] + 1) * (degrees[1] + 1)
        for f, n_f in counts.items():
            if _MIN_PAIRS <= n_f < 2 * p_max:
                msg = (
                    f"measure_fiber_offsets: fiber {f} has {n_f} line pairs for {p_max} coefficients of "
                    "max_degree; lower max_degree or give x_degree/order_degree"
                )
                raise FitError(msg)
        if min(counts.values()) >= _MIN_PAIRS:
            x_degree, order_degree = _cv_offset_degrees(pairs, fibers, degrees, float(clip), max_iter, folds)
    x_degree, order_degree = int(x_degree), int(order_degree)
    n = len(pairs)
    resid_all = np.full(n, np.nan)
    used_all = np.zeros(n, dtype=bool)
    coefs, covs, qc = [], [], {}
    for f in fibers:
        sel = np.flatnonzero(np.asarray(pairs["fiber"]) == f)
        if sel.size < _MIN_PAIRS:
            msg = f"measure_fiber_offsets: fiber {f} has {sel.size} line pairs; need >= {_MIN_PAIRS}"
            raise FitError(msg)
        design = _design(kind, pairs["x"][sel], pairs["order"][sel], x_degree, order_degree)
        if sel.size < 2 * design.shape[1]:
            msg = (
                f"measure_fiber_offsets: fiber {f} has {sel.size} line pairs for {design.shape[1]} "
                "coefficients; lower x_degree/order_degree"
            )
            raise FitError(msg)
        dx = np.asarray(pairs["dx"][sel], dtype=np.float64)
        err = np.maximum(np.asarray(pairs["dx_err"][sel], dtype=np.float64), 1e-6)
        orders_f = np.asarray(pairs["order"][sel])
        k = 4 if kind == "idl" else order_degree + 1
        coef, cov, used, resid, chi2, (line_scale, scatter) = _fit_fiber(
            design, dx, err, opts["weighting"], float(clip), max_iter, orders_f, k
        )
        coefs.append(coef)
        covs.append(cov)
        resid_all[sel] = resid
        used_all[sel] = used
        qc[f"n_pairs_{f}"] = int(sel.size)
        qc[f"n_used_{f}"] = int(used.sum())
        qc[f"rms_px_{f}"] = float(np.sqrt(np.mean(resid[used] ** 2)))
        qc[f"chi2_dof_{f}"] = chi2
        qc[f"pair_error_scale_{f}"] = line_scale
        qc[f"order_scatter_px_{f}"] = scatter
    pairs["residual"] = resid_all
    pairs["used"] = used_all
    orders = np.asarray(pairs["order"])
    return FiberOffsets(
        fibers=fibers,
        coefficients=np.stack(coefs),
        covariance=np.stack(covs),
        x_degree=x_degree,
        order_degree=order_degree,
        basis=kind,
        order_range=(int(orders.min()), int(orders.max())),
        x_range=(float(np.min(pairs["x"])), float(np.max(pairs["x"]))),
        pairs=pairs,
        qc=qc,
    )
