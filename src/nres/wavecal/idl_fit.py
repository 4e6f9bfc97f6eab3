"""The original's end-to-end ThAr fit (``thar_fitall``), for parity with archived IDL solutions.

Ported from idl-wavecal.md 5-8 (not from the IDL source): ``thar_setup`` after the catalogue
(expected line errors from the first guess, the width filter), two Levenberg-Marquardt fits of
(sinalp, fl, y0) with z0 tied to fl in which every evaluation re-matches the lines by pair voting
and penalises unmatched lines with 0.1 nm (``thar_mpfit``), the 4-sigma clip between them, and
``thar_rcubic``'s two-pass weighted fit of the C0..C14 increments. The nonlinear fit uses MINPACK's
Levenberg-Marquardt (scipy ``least_squares(method="lm")``, as MPFIT is a port of MINPACK-1) with
MPFIT's defaults: ftol = xtol = gtol = 1e-10, column-norm scaling, factor 100, one-sided finite
differences, and a last evaluation at the solution.

Two defects of the original are fixed by default and kept as legacy options: the order loop that
skips the highest orders when some order has no lines (``order_loop``), and finite-difference
steps proportional to the parameters, started at [5e-8, 0, 0] (``fd_step``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import QTable
from scipy.optimize import least_squares

from .. import legacy as _legacy
from ..errors import FitError, InvalidParameterError
from . import _kernels
from .idl_catalog import _idl_median, _quartile, _running_median, thar_catalog
from .solution import WavelengthSolution, idl_basis
from .solve import Z0_PER_FL

__all__ = ["IDLFit", "fit_idl", "thar_fitall_legacy", "width_filter"]

_FIT = "fit_idl"
_legacy.register(
    _FIT,
    "order_loop",
    choices=("all", "count"),
    default="all",
    legacy="count",
    reference="idl-wavecal.md 6 [BUG] and 13 (fix 3)",
    summary="thar_mpfit looped over order indices 0..n_orders_with_lines-1: top orders skipped, unpenalised",
)
_legacy.register(
    _FIT,
    "fd_step",
    choices=("absolute", "mpfit"),
    default="absolute",
    legacy="mpfit",
    reference="idl-wavecal.md 7.1, 7.3 and 13 (fix 7)",
    summary="MPFIT's relative steps sqrt(eps)|p| from p0=[5e-8,0,0]: a ~1e-15 sinalp step, noisy Jacobian",
)

_DWU = 0.1  # nm: the residual of an unmatched line (thar_mpfit)
_DW, _DS = 0.3, 0.015  # nm: pair-mean and pair-separation tolerances of the voting
_LIST_MARGIN = 0.5  # nm: list lines within the order's range +- this are candidates
_LIST_RANGE = (370.0, 870.0)  # nm: thar_setup keeps these list lines
_CLIP_MATCHED = 0.08  # nm: 0.8 x the unmatched value: "matched" in the clip step
_CLIP_SIGMA = 4.0
_MIN_RCUBIC = 20
_TINY = float(np.float32(1e-10))  # IDL's single-precision 1.e-10 weight
_MPFIT_EPS = float(np.sqrt(np.finfo(np.float64).eps))  # MPFIT's relative finite-difference step
# absolute steps of the corrected path (sinalp, fl mm, y0 mm): each moves the lines by 1e-6..1e-5 nm,
# 1e7 times the rounding of a wavelength and far inside the linear regime
_ABS_STEPS = np.array([1e-9, 1e-4, 1e-4])
_MGB_ORDER_INDEX, _MGB_SPAN = 38, 10.5777  # thar_rcubic's stability monitor (nm)


def width_filter(x, wid, *, nx=4096, tolerance=0.5):
    """The original's line-width filter (thar_setup, gsw = 0): keep widths near the histogram mode.

    Parameters
    ----------
    x, wid : ndarray
        Line centres (px) and 3-point widths (px) of the catalogue.
    nx : int
        Detector columns.
    tolerance : float
        Half-width of the accepted band, px (the original: 0.5; 3.0 for site tlv).

    Returns
    -------
    keep : ndarray of bool
    mode : float
        Histogram mode of the detrended widths (the bin's left edge, as the original), px.
    """
    x = np.asarray(x, dtype=np.float64)
    wid = np.asarray(wid, dtype=np.float64)
    wida = wid - (x - nx / 2.0) * (0.8 / 4096.0)  # detrend: 0.8 px over the chip
    centre = wida[(x >= 1000.0) & (x <= 3000.0)]
    centre = centre[(centre >= 0.0) & (centre <= 10.0)]
    if centre.size == 0:
        msg = "width_filter: no catalogue line with 1000 <= x <= 3000 and width 0..10 px"
        raise FitError(msg)
    hist = np.bincount(np.minimum(np.floor(centre / 0.2).astype(np.int64), 50), minlength=51)
    mode = 0.2 * int(np.argmax(hist))
    return np.abs(wida - mode) <= tolerance, mode


def _deriv_at(lam_m, lam_p):
    return 0.5 * (lam_p - lam_m)


@dataclass(frozen=True, eq=False)
class IDLFit:
    """Result of :func:`fit_idl` / :func:`thar_fitall_legacy` (the original's common-block outputs).

    Attributes
    ----------
    model : PhysicalModel
        Fitted model: sinalp, fl, y0, z0 and C0..C14 (unless frozen) of the fit; everything else as
        the starting model.
    start : PhysicalModel
        Starting model (csv row).
    fiber : int
        Fiber fitted.
    perturbation : ndarray (4,)
        Final Levenberg-Marquardt parameters [d sinalp, d fl (mm), d y0 (mm), d z0 (tied)].
    coefs_increment : ndarray (15,)
        thar_rcubic's increment c (the coefficients became ``start.coefs - c``), nm.
    lines : QTable
        Matched lines of the last evaluation: ``order`` (m), ``order_index``, ``x`` (px),
        ``wavelength`` (list, nm), ``model`` (nm, before the C0..C14 update), ``residual`` (model -
        list, nm), ``error`` (nm), ``weight`` (thar_rcubic's second-pass weight), ``best`` (nm,
        after the update).
    catalog : QTable
        Lines after the width filter: ``order``, ``x``, ``amp``, ``wid``, ``xperr`` (nm),
        ``residual`` (nm; 0.1 if unmatched), ``clipped``.
    qc : dict
        ``nmatch``, ``amoerr`` and ``dlam2`` (before the polynomial, nm and nm^2), ``rms_nm``
        (rms_c), ``chi2`` (chi2_c), ``mgbdisp``, ``lammid`` (nm), ``n_catalog``, ``n_width``,
        ``width_mode``, ``n_clipped``, ``nfev`` (thar_mpfit evaluations), ``lm_status``.
    """

    model: object
    start: object
    fiber: int
    perturbation: np.ndarray
    coefs_increment: np.ndarray
    lines: QTable
    catalog: QTable
    qc: dict = field(default_factory=dict)
    covariance: np.ndarray | None = None

    def wavelength_grid(self):
        """Fitted wavelengths of every pixel of the fiber, Quantity nm, (nord, nx) (lam_c)."""
        return self.model.wavelength_grid()[self.fiber]

    def to_solution(self) -> WavelengthSolution:
        """The fit as a :class:`WavelengthSolution` (``correction="idl"``, zero increments on
        :attr:`model`), usable with :func:`~nres.wavecal.apply_solution`."""
        cov = np.zeros((15, 15)) if self.covariance is None else self.covariance
        table = QTable()
        table["fiber"] = np.full(len(self.lines), self.fiber, dtype=np.int64)
        table["order"] = self.lines["order"]
        table["x"] = self.lines["x"]
        table["wavelength"] = self.lines["wavelength"]
        table["fit"] = self.lines["best"]
        table["residual"] = self.lines["best"] - self.lines["wavelength"]
        table["used"] = np.asarray(self.lines["weight"]) > 1.5 * _TINY
        return WavelengthSolution(
            model=self.model,
            fibers=(self.fiber,),
            coefficients=np.zeros((1, 15, 1)),
            covariance=cov[None],
            lines=table,
            qc={k: v for k, v in self.qc.items() if np.isscalar(v)},
            correction="idl",
        )


class _Objective:
    """thar_mpfit: residuals clip * diff / xperr of the catalogue lines for a perturbation p (4,)."""

    def __init__(self, start, fiber, io, x, amp, wid, xperr, linelam, order_loop):
        self.start, self.fiber = start, fiber
        self.nx, self.nord = start.nx, start.nord
        self.io, self.x, self.amp, self.wid, self.xperr = io, x, amp, wid, xperr
        self.linelam = linelam
        self.clip = np.ones(x.size)
        self.diff = np.zeros(x.size)  # lines of orders never visited keep 0 (as the original)
        self.nfev = 0
        present = np.unique(io)
        visit = np.arange(present.size) if order_loop == "count" else present
        self.visit = visit[(visit >= 0) & (visit < self.nord)]
        # lines of each visited order, in catalogue order (sorted by x)
        sel = [np.flatnonzero(io == k) for k in self.visit]
        self.lines_idx = np.concatenate(sel) if sel else np.zeros(0, dtype=np.int64)
        counts = np.array([s.size for s in sel], dtype=np.int64)
        self.obs_stop = np.cumsum(counts)
        self.obs_start = self.obs_stop - counts
        # evaluation points: the 3 grid pixels of the quadratic interpolation, the 2 of the
        # derivative at int(x), and the two ends of each visited order
        xl = x[self.lines_idx]
        self.i0 = np.clip(np.floor(xl), 1, self.nx - 2)
        self.t = xl - self.i0
        xi = np.clip(np.trunc(xl), 1, self.nx - 2)
        pts = [self.i0 - 1, self.i0, self.i0 + 1, xi - 1, xi + 1]
        n_l = xl.size
        self.pts_x = np.concatenate(
            [*pts, np.zeros(self.visit.size), np.full(self.visit.size, self.nx - 1.0)]
        )
        iol = io[self.lines_idx]
        self.pts_io = np.concatenate([np.tile(iol, 5), self.visit, self.visit]).astype(np.int64)
        self.n_l = n_l
        self.last = None

    def model_of(self, p):
        s = self.start
        return dataclasses.replace(s, sinalp=s.sinalp + p[0], fl=s.fl + p[1], y0=s.y0 + p[2], z0=s.z0 + p[3])

    def __call__(self, p):
        self.nfev += 1
        model = self.model_of(p)
        lam = model.wavelength_index(self.pts_x, self.pts_io, self.fiber).to_value(u.nm)
        n = self.n_l
        fm, f0, fp, dm, dp = (lam[k * n : (k + 1) * n] for k in range(5))
        t = self.t
        # IDL INTERPOL /QUADRATIC: the parabola through the pixels i - 1, i, i + 1
        lamg = 0.5 * t * (t - 1.0) * fm - (t + 1.0) * (t - 1.0) * f0 + 0.5 * (t + 1.0) * t * fp
        dldx = _deriv_at(dm, dp)
        nv = self.visit.size
        ends = lam[5 * n :].reshape(2, nv)
        lo = ends.min(axis=0) - _LIST_MARGIN
        hi = ends.max(axis=0) + _LIST_MARGIN
        inwin = (self.linelam[None, :] >= lo[:, None]) & (self.linelam[None, :] <= hi[:, None])
        rows, cols = np.nonzero(inwin)  # per order, the list lines in the list's own order
        nsl = inwin.sum(axis=1)
        ref_stop = np.cumsum(nsl)
        ref_start = ref_stop - nsl
        ref = np.ascontiguousarray(self.linelam[cols])
        idx = np.empty(n, dtype=np.int64)
        _kernels.vote_match_orders(
            lamg, self.obs_start, self.obs_stop, ref, ref_start, ref_stop, _DW, _DS, 5, idx
        )
        nobs = self.obs_stop - self.obs_start
        # per line: its order has < 2 lines -> untouched; <= 2 list lines or no match -> 0.1 nm
        k_of = np.repeat(np.arange(nv), nobs)
        skip = nobs[k_of] < 2
        ok = idx >= 0
        tdif = np.where(ok, lamg - ref[np.maximum(idx, 0)], _DWU)
        tgt = self.lines_idx[~skip]
        self.diff[tgt] = tdif[~skip]
        m = np.flatnonzero(ok)
        li = self.lines_idx[m]
        self.last = {
            "io": self.io[li],
            "x": self.x[li],
            "wavelength": ref[idx[m]],
            "model": lamg[m],
            "residual": tdif[m],
            "error": dldx[m] * self.wid[li] / np.sqrt(self.amp[li]),
        }
        return self.clip * self.diff / self.xperr


def _levenberg_marquardt(objective, fd_step, max_nfev):
    """MPFIT's fit of (d sinalp, d fl, d y0) with d z0 = Z0_PER_FL d fl; returns (p (4,), status)."""

    def full(q):
        return np.array([q[0], q[1], q[2], Z0_PER_FL * q[1]])

    cache = {}

    def fun(q):
        key = q.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = objective(full(q)).copy()
        return cache[key]

    def jac(q):
        f0 = fun(q)
        if fd_step == "mpfit":
            h = _MPFIT_EPS * np.abs(q)
            h[h == 0.0] = _MPFIT_EPS
        else:
            h = _ABS_STEPS.copy()
        out = np.empty((f0.size, 3))
        for j in range(3):
            qp = q.copy()
            qp[j] += h[j]
            out[:, j] = (objective(full(qp)) - f0) / h[j]  # one-sided, as MPFIT's default
        return out

    q0 = np.array([5e-8, 0.0, 0.0]) if fd_step == "mpfit" else np.zeros(3)
    res = least_squares(
        fun,
        q0,
        jac=jac,
        method="lm",
        ftol=1e-10,
        xtol=1e-10,
        gtol=1e-10,
        x_scale="jac",
        max_nfev=max_nfev,
    )
    p = full(res.x)
    objective(p)  # MPFIT evaluates once more at the solution: the saved state belongs to it
    return p, int(res.status)


def _lstsqr(dat, funs, wt):
    """The original's lstsqr: weights multiply basis and data (effective weight w^2); returns
    (coefficients, residuals data - fit, chi^2 = sum(res^2 w) / (n - p), inverse normal matrix)."""
    n, p = funs.shape
    funw = funs * wt[:, None]
    a = funw.T @ funw / n
    rhs = funw.T @ (dat * wt) / n
    coef = np.linalg.solve(a, rhs)
    res = dat - funs @ coef
    chisq = float(np.sum(res[wt > 0] ** 2 * wt[wt > 0]) / (np.sum(wt > 0) - p))
    return coef, res, chisq, np.linalg.inv(a * n)


def _rcubic(lines, dlam2, model):
    """thar_rcubic: two-pass weighted fit of C0..C14 increments to the matched-line residuals."""
    dif = np.asarray(lines["residual"], dtype=np.float64)
    funs = idl_basis(lines["x"], model.ord0 + lines["io"], nx=model.nx, nord=model.nord, ord0=model.ord0)
    w0 = 1.0 / (1.0 + dif**2 / dlam2)
    w0[np.abs(dif) > min(3.0 * np.sqrt(dlam2), 0.02)] = _TINY
    _, res0, _, _ = _lstsqr(dif, funs, w0)
    good = w0 >= 1.5 * _TINY
    if good.sum() > 4:
        med0 = _idl_median(res0[good])
        q0, q1 = _quartile(res0[good])
        rmsm = (q1 - q0) / 1.35
        dev = res0 - med0
        w = 1.0 / (1.0 + dev**2 / rmsm**2)
        w[np.abs(dev) >= min(3.0 * rmsm, 0.01)] = _TINY
    else:
        w = np.ones(dif.size)
    coef, res, chisq, cov = _lstsqr(dif, funs, w)
    good = w >= 1.5 * _TINY
    rms = float(np.sqrt(np.mean(res[good] ** 2))) if good.any() else 0.0
    return coef, res, w, rms, chisq, cov


def fit_idl(
    catalog,
    *,
    model,
    lines=None,
    fiber=1,
    freeze_coefs=False,
    width_tolerance=None,
    order_loop=None,
    fd_step=None,
    max_nfev=2000,
    legacy=False,
) -> IDLFit:
    """The original's ThAr fit (thar_setup after the catalogue, thar_mpfit x 2, thar_rcubic).

    Parameters
    ----------
    catalog : mapping or Table
        The line catalogue of the original's ``thar_catalog`` (e.g. :func:`thar_catalog`'s output
        or GDL's): ``order_index`` (0 = order ``model.ord0``; or ``order``, physical m), ``x`` (or
        ``xpos``, px), ``amp`` and ``wid`` (px), all lines before the width filter.
    model : PhysicalModel
        Starting model (the csv row; the original: ``PhysicalModel.for_site(site, mjd=mjd,
        legacy=True)``). Its C0..C14 stay fixed in the nonlinear fit.
    lines : QTable or None
        Line list in the file's order (default ``thar_lines("redman", duplicates="keep")`` in the
        original file order, as thar_setup read it); lines outside 370-870 nm are dropped.
    fiber : int
        Fiber the catalogue belongs to (the parameters always describe fiber 1).
    freeze_coefs : bool
        Keep C0..C14 (the original's ``cubfrz``, set when building TRIPLEs).
    width_tolerance : float or None
        Width-filter band, px (default 0.5, or 3.0 when ``model.site`` is tlv, as the original).
    order_loop : {"all", "count"}, optional
        "all" (default): match every order with lines. "count" (legacy): the original's loop over
        order indices 0 .. (number of orders with lines) - 1, skipping the highest orders when a
        lower one has no lines; their lines keep a zero residual.
    fd_step : {"absolute", "mpfit"}, optional
        "absolute" (default): finite-difference steps 1e-9 in sinalp, 1e-4 mm in fl and y0, start
        at 0. "mpfit" (legacy): MPFIT's sqrt(eps) |p| (sqrt(eps) where p = 0) from p0 = [5e-8, 0,
        0]: a Jacobian dominated by rounding in its first iterations.
    max_nfev : int
        Most function evaluations of each Levenberg-Marquardt fit (MPFIT: 200 iterations).
    legacy : bool
        Shorthand for every legacy option (GDL parity).

    Returns
    -------
    IDLFit

    Raises
    ------
    InvalidParameterError
        Missing catalogue columns or a bad option.
    FitError
        No line survives the width filter, or no line matches.
    """
    from ..instrument import thar_lines

    opts = _legacy.resolve(_FIT, legacy, order_loop=order_loop, fd_step=fd_step)
    get = _columns(catalog)
    io_all = get("order_index")
    x_all = get("x")
    amp_all, wid_all = get("amp"), get("wid")
    nx = model.nx
    if width_tolerance is None:
        width_tolerance = 3.0 if (model.site or "").lower() == "tlv" else 0.5
    # expected line error (nm) from the first guess: |dlambda/dx| at int(x) x wid / sqrt(max(amp, 10))
    xi = np.clip(np.trunc(x_all), 1, nx - 2)
    io_c = np.clip(io_all, 0, model.nord - 1)
    lam_pm = model.wavelength_index(np.concatenate([xi - 1, xi + 1]), np.tile(io_c, 2), fiber).to_value(u.nm)
    dldx0 = _deriv_at(lam_pm[: xi.size], lam_pm[xi.size :])
    xperr_all = dldx0 * wid_all / np.sqrt(np.maximum(amp_all, 10.0))
    keep, mode = width_filter(x_all, wid_all, nx=nx, tolerance=width_tolerance)
    keep &= (io_all >= 0) & (io_all < model.nord)
    if not keep.any():
        msg = "fit_idl: no catalogue line survives the width filter"
        raise FitError(msg)
    io, x, amp, wid, xperr = io_all[keep], x_all[keep], amp_all[keep], wid_all[keep], xperr_all[keep]
    if lines is None:
        lines = thar_lines("redman", duplicates="keep")
        lines = lines[np.argsort(np.asarray(lines["id"]), kind="stable")]
    linelam = np.asarray(lines["wavelength"].to_value(u.nm), dtype=np.float64)
    linelam = np.ascontiguousarray(linelam[(linelam >= _LIST_RANGE[0]) & (linelam <= _LIST_RANGE[1])])

    obj = _Objective(model, int(fiber), io, x, amp, wid, xperr, linelam, opts["order_loop"])
    p, status1 = _levenberg_marquardt(obj, opts["fd_step"], max_nfev)
    # clip: among matched lines, |diff / xperr| > 4 sigma (IQR / 1.349, about zero), then refit from p0
    matched = np.abs(obj.diff) <= _CLIP_MATCHED
    n_clip = 0
    status2 = None
    if matched.sum() > 10:
        normdif = obj.diff / xperr
        q0, q1 = _quartile(normdif[matched])
        bad = matched & (np.abs(normdif) > _CLIP_SIGMA * (q1 - q0) / 1.349)
        n_clip = int(bad.sum())
        if n_clip:
            obj.clip[bad] = 0.0
            p, status2 = _levenberg_marquardt(obj, opts["fd_step"], max_nfev)
    last = obj.last
    nmatch = int(last["residual"].size)
    if nmatch == 0:
        msg = "fit_idl: no line matched the list (wrong model= or not a ThAr spectrum?)"
        raise FitError(msg)
    dlam2 = float(np.mean(last["residual"] ** 2))
    fitted = obj.model_of(p)
    incr = np.zeros(15)
    weight = np.full(nmatch, np.nan)
    best = np.full(nmatch, np.nan)
    rms = chi2 = mgbdisp = lammid = 0.0
    cov = None
    if nmatch >= _MIN_RCUBIC:
        incr, res, weight, rms, chi2, cov = _rcubic(last, dlam2, model)
        best = last["model"] - (last["residual"] - res)
        if not freeze_coefs:
            fitted = dataclasses.replace(fitted, coefs=tuple(np.asarray(fitted.coefs) - incr))
        grid = fitted.wavelength_index(
            np.array([0.0, nx - 1.0, *[2000.0] * 11]),
            np.array([_MGB_ORDER_INDEX] * 2 + list(range(_MGB_ORDER_INDEX - 5, _MGB_ORDER_INDEX + 6))),
            fiber,
        ).to_value(u.nm)
        mgbdisp = float(grid[1] - grid[0] - _MGB_SPAN)
        lammid = float(np.mean(grid[2:]))

    table = QTable()
    table["order"] = (model.ord0 + last["io"]).astype(np.int64)
    table["order_index"] = last["io"].astype(np.int64)
    table["x"] = last["x"]
    table["wavelength"] = last["wavelength"] * u.nm
    table["model"] = last["model"] * u.nm
    table["residual"] = last["residual"] * u.nm
    table["error"] = last["error"] * u.nm
    table["weight"] = weight
    table["best"] = best * u.nm
    cat = QTable()
    cat["order"] = (model.ord0 + io).astype(np.int64)
    cat["x"] = x
    cat["amp"] = amp
    cat["wid"] = wid
    cat["xperr"] = xperr * u.nm
    cat["residual"] = obj.diff * u.nm
    cat["clipped"] = obj.clip == 0.0
    qc = {
        "nmatch": nmatch,
        "amoerr": float(np.sqrt(dlam2)),
        "dlam2": dlam2,
        "rms_nm": rms,
        "chi2": chi2,
        "mgbdisp": mgbdisp,
        "lammid": lammid,
        "n_catalog": int(x_all.size),
        "n_width": int(x.size),
        "width_mode": float(mode),
        "n_clipped": n_clip,
        "nfev": int(obj.nfev),
        "lm_status": int(status1 if status2 is None else status2),
        "sinalp": fitted.sinalp,
        "grinc": float(np.degrees(np.arcsin(fitted.sinalp))),
        "fl": fitted.fl,
        "y0": fitted.y0,
        "z0": fitted.z0,
    }
    return IDLFit(
        model=fitted,
        start=model,
        fiber=int(fiber),
        perturbation=p,
        coefs_increment=incr,
        lines=table,
        catalog=cat,
        qc=qc,
        covariance=cov,
    )


def _columns(catalog):
    """Accessor of the catalogue columns under the names of nres or of thar_catalog."""
    names = set(catalog.colnames if hasattr(catalog, "colnames") else catalog.keys())
    aliases = {"order_index": ("order_index", "row"), "x": ("x", "xpos"), "amp": ("amp",), "wid": ("wid",)}

    def get(key):
        for name in aliases[key]:
            if name in names:
                arr = np.asarray(catalog[name])
                return arr.astype(np.int64) if key == "order_index" else arr.astype(np.float64)
        msg = f"catalog: missing column {aliases[key][0]!r} (expected order_index, x, amp, wid)"
        raise InvalidParameterError(msg)

    return get


def _sanity_count(flux):
    """thar_setup's data check: pixels above running median(15) + 10 x IQR-spacing, summed over orders."""
    total = 0
    for row in flux:
        diff = row - _running_median(row, 15)
        q0, q1 = _quartile(diff)
        total += int(np.sum(diff > 10.0 * (q1 - q0)))
    return total


def thar_fitall_legacy(
    flux,
    *,
    model,
    lines=None,
    fiber=1,
    threshold=4.5,
    freeze_coefs=False,
    order_loop=None,
    fd_step=None,
    legacy=False,
) -> IDLFit:
    """The original's ``thar_fitall`` on an extracted ThAr spectrum: data check, ``thar_catalog``
    (gsw = 0), then :func:`fit_idl`.

    Parameters
    ----------
    flux : EchelleSpectrum or ndarray (nord, nx)
        Extracted, flat-fielded ThAr spectrum. An ndarray is in order-index order (row k = order
        ``model.ord0 + k``); an EchelleSpectrum must hold every order of the model for ``fiber``.
    model : PhysicalModel
        Starting model (see :func:`fit_idl`).
    lines, fiber, freeze_coefs, order_loop, fd_step, legacy
        As :func:`fit_idl`.
    threshold : float
        Catalogue acceptance sig / noise (the original: 4.5).

    Returns
    -------
    IDLFit

    Raises
    ------
    InvalidParameterError
        Wrong shape or missing orders.
    FitError
        Not a ThAr spectrum (<= 400 bright pixels), <= 19 lines found, or the fit failed.
    """
    if hasattr(flux, "orders") and hasattr(flux, "fibers"):
        fibers = [int(f) for f in flux.fibers]
        if fiber not in fibers:
            msg = f"fiber: {fiber} is not in the spectrum's fibers {fibers}"
            raise InvalidParameterError(msg)
        orders = [int(m) for m in flux.orders]
        missing = [int(m) for m in model.orders if m not in orders]
        if missing:
            msg = f"flux: orders {missing} of the model are missing from the spectrum"
            raise InvalidParameterError(msg)
        data = np.asarray(flux.data, dtype=np.float64)[fibers.index(fiber)]
        arr = data[[orders.index(int(m)) for m in model.orders]]
    else:
        arr = np.asarray(flux, dtype=np.float64)
    if arr.shape != (model.nord, model.nx):
        msg = f"flux: expected shape (nord, nx) = ({model.nord}, {model.nx}), got {arr.shape}"
        raise InvalidParameterError(msg)
    n_bright = _sanity_count(arr)
    if n_bright <= 400:
        msg = f"flux: only {n_bright} pixels stand out (need > 400): not a ThAr spectrum"
        raise FitError(msg)
    cat = thar_catalog(arr, threshold=threshold)
    if cat["xpos"].size <= 19:
        msg = f"flux: thar_catalog found {cat['xpos'].size} lines (need > 19)"
        raise FitError(msg)
    return fit_idl(
        cat,
        model=model,
        lines=lines,
        fiber=fiber,
        freeze_coefs=freeze_coefs,
        order_loop=order_loop,
        fd_step=fd_step,
        legacy=legacy,
    )
