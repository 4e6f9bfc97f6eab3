"""ZERO templates: co-adding observed spectra of a star in its rest frame, and the original's ZERO files.

:func:`build_zero` (``Template.from_spectra``) co-adds on a common ln-lambda grid: per order, every good
pixel i of every epoch k is placed at its exact rest-frame position ``ln lambda_i + ln(1 + z_B,k) -
ln(1 + z_*,k)`` (continuum normalised by :mod:`nres.rv.continuum`; telluric, bad-wavelength, edge,
bleed and masked pixels left out), and the rest-frame spectrum is the inverse-variance weighted
least-squares cubic spline ``S(u)`` (``u = ln lambda``, not-a-knot knots every ``knot_step`` pixels
of the first epoch's own sampling, :func:`_knot_grid`) through all of them, over the union of the
epochs' coverage; outliers beyond ``clip`` sigma are rejected and the fit repeated (and, before it,
every epoch's spikes far above its continuum: a one-epoch co-add has no residual to find them).
The extracted pixels record means over a pixel, so S is the star's spectrum at the spectrograph's
pixel sampling: the template carries ``meta["pixel_integrated"]`` and :func:`nres.rv.measure`
compares it with the data point by point. No smoothing is applied; a
negligible second-difference penalty only keeps coefficients that no pixel constrains (telluric gaps)
defined, with a correspondingly huge variance. The template's variance is the diagonal of the
coefficients' covariance mapped to its samples (the band of the inverse of the banded normal matrix);
``measure`` adds it to the data variance. :func:`pixel_mean_design` (the exact pixel-mean operator of a
spline) is kept for forward models that need it.

The star's RV at each epoch is bootstrapped: start from the catalogue ``rv`` for every epoch, build
the template, measure every epoch against it (``method="template"``), set their mean to ``rv`` (the
zero point) and rebuild, ``iterations`` times.

Files: :func:`write_zero` / :func:`read_zero` use the original's ZERO layout (idl-rv-ops.md 5.1): a
header-only primary HDU and a one-row binary table with ``Star``, ``ThAr``, ``WavelenStar`` (nm,
the star's rest frame) and ``WavelenLab`` arrays of IDL shape (nx, nord); nres adds a ``StarVar``
column (the template variance) that the original's reader ignores.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.time import Time
from scipy import sparse
from scipy.interpolate import BSpline
from scipy.linalg import cho_solve_banded, cholesky_banded

from .. import legacy as _legacy
from ..doppler import C_M_S
from ..errors import FitError, InvalidInputFileError, InvalidParameterError
from ..flags import FLAG_DTYPE, Flag, flags_to_mask
from . import _kernels
from .continuum import normalize

__all__ = ["build_zero", "write_zero", "read_zero", "pixel_mean_design"]

_legacy.register(
    "Template.from_spectra",
    "zero_date",
    choices=("exact", "one_day_early"),
    default="exact",
    legacy="one_day_early",
    reference="idl-rv-ops.md 0 (5), 5.2 step 7",
    summary="mk_zero formed the mean JD as MJD + 2400000 - 0.5: z_B one day early (up to 0.46 km/s)",
)

_K = 3


def _not_a_knot(grid):
    return np.concatenate([[grid[0]] * (_K + 1), grid[2:-2], [grid[-1]] * (_K + 1)])


def pixel_mean_design(lo, hi, t):
    """Sparse matrix of the mean of every cubic B-spline basis function over intervals.

    Parameters
    ----------
    lo, hi : ndarray (n,)
        Interval ends (``lo < hi``), inside ``[t[0], t[-1]]``.
    t : ndarray
        Knot vector of a cubic spline (``t.size - 4`` coefficients).

    Returns
    -------
    scipy.sparse.csr_matrix (n, t.size - 4)
        ``A[i, j] = (1 / (hi_i - lo_i)) * integral_{lo_i}^{hi_i} B_j(u) du``, from the degree-4
        antiderivative basis: ``integral_{t_0}^{u} B_j = w_j sum_{l > j} B4_l(u)`` with
        ``w_j = (t_{j+4} - t_j) / 4`` on the knots extended by one at each end.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    n_coef = t.size - _K - 1
    text = np.concatenate([[t[0]], t, [t[-1]]])
    w = (t[_K + 1 :] - t[: -_K - 1]) / (_K + 1)

    def rows(uu):
        dm = BSpline.design_matrix(uu, text, _K + 1).tocsr()
        dm.sort_indices()
        nnz = np.diff(dm.indptr)
        width = int(nnz.max())
        idx = np.full((uu.size, width), -1, dtype=np.int64)
        dat = np.zeros((uu.size, width))
        pos = np.arange(dm.indices.size) - np.repeat(dm.indptr[:-1], nnz)
        idx[np.repeat(np.arange(uu.size), nnz), pos] = dm.indices
        dat[np.repeat(np.arange(uu.size), nnz), pos] = dm.data
        first = np.where(nnz > 0, idx[:, 0], 0)
        return idx, dat, first

    ia, da, ma = rows(lo)
    ib, db, mb = rows(hi)
    span = int(np.max(mb - ma)) + ia.shape[1] + 1
    m = ma[:, None] + 1 + np.arange(span)[None, :]

    def tail(idx, dat):  # R_m(u) = sum_{l >= m} B4_l(u)
        return np.sum(dat[:, None, :] * ((idx[:, None, :] >= m[:, :, None]) & (idx[:, None, :] >= 0)), axis=2)

    j = m - 1
    ok = (j >= 0) & (j < n_coef)
    vals = np.where(ok, w[np.clip(j, 0, n_coef - 1)] * (tail(ib, db) - tail(ia, da)), 0.0)
    vals /= (hi - lo)[:, None]
    r = np.repeat(np.arange(lo.size), span).reshape(lo.size, span)
    keep = ok & (vals != 0)
    return sparse.csr_matrix((vals[keep], (r[keep], j[keep])), shape=(lo.size, n_coef))


def _banded_upper(mat, bw):
    """Upper banded storage (for cholesky_banded) of a symmetric sparse matrix of bandwidth bw."""
    n = mat.shape[0]
    ab = np.zeros((bw + 1, n))
    dia = mat.todia()
    for off, row in zip(dia.offsets, dia.data, strict=True):
        if 0 <= off <= bw:
            ab[bw - off, off:] = row[off:]
    return ab


def _solve_order(x, y, wgt, grid, clip, penalty=1e-9):
    """Weighted least-squares cubic spline through points (x, y) with not-a-knot knots on ``grid``;
    returns (samples at grid, their variance, kept mask).

    The normal matrix is banded (bandwidth 3): banded Cholesky, and the variance of the samples from
    the band of its inverse (:func:`nres.rv._kernels.banded_inverse_band`), O(n) per order."""
    t = _not_a_knot(grid)
    a_mat = BSpline.design_matrix(x, t, _K).tocsr()
    n_coef = a_mat.shape[1]
    d2 = sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n_coef - 2, n_coef))
    keep = wgt > 0
    for _ in range(2):
        aw = a_mat.multiply(np.where(keep, wgt, 0.0)[:, None]).tocsr()
        normal = (a_mat.T @ aw).tocsr()
        diag = normal.diagonal()
        scale = float(np.median(diag[diag > 0])) if np.any(diag > 0) else 1.0
        normal = (normal + penalty * scale * (d2.T @ d2)).tocsr()
        ab = _banded_upper(normal, _K)
        try:
            chol = cholesky_banded(ab)
        except np.linalg.LinAlgError:
            msg = "Template.from_spectra: the co-add's normal equations are singular"
            raise FitError(msg) from None
        coef = cho_solve_banded((chol, False), aw.T @ y)
        resid = (y - a_mat @ coef) * np.sqrt(wgt)
        new = (wgt > 0) & (np.abs(resid) <= clip)
        if np.array_equal(new, keep):
            break
        keep = new
    # var S(g) = b_g N^-1 b_g^T: b_g touches 4 consecutive coefficients, so the band of N^-1 suffices
    band = _kernels.banded_inverse_band(np.ascontiguousarray(chol))
    b_eval = BSpline.design_matrix(grid, t, _K).tocsr()
    b_eval.sort_indices()
    nnz = np.diff(b_eval.indptr)
    var = np.zeros(grid.size)
    cols, vals = b_eval.indices, b_eval.data
    first = b_eval.indptr[:-1]
    for p in range(int(nnz.max())):
        for q in range(int(nnz.max())):
            ok = (p < nnz) & (q < nnz)
            ip, iq = first[ok] + p, first[ok] + q
            cp, cq = cols[ip], cols[iq]
            lo, d = np.minimum(cp, cq), np.abs(cp - cq)
            var[ok] += vals[ip] * vals[iq] * np.where(d <= _K, band[lo, np.minimum(d, _K)], 0.0)
    return b_eval @ coef, var, keep


#: Pixels of an epoch more than this far above the continuum (and ``clip`` sigma above it) are left
#: out of the co-add: an absorption spectrum has no such pixels, cosmic rays and detector artefacts do
#: (a cosmic ray in a one-frame master dark sits at the same pixels in every exposure of the night, so
#: one or two epochs cannot reject it by their residuals).
SPIKE_ABOVE_CONTINUUM = 0.25


def _epoch_arrays(spec, fiber, orders, use_rv_mask, clip):
    from .measure import _order_arrays, _pick_fiber
    from .rvmasks import rv_mask

    fi = _pick_fiber(spec, fiber)
    m, lam, data, var, good, blaze = _order_arrays(spec, fi, orders)
    if use_rv_mask:
        flags = rv_mask(spec, fiber=int(np.asarray(spec.fibers)[fi]))
        rows = [int(np.flatnonzero(np.asarray(spec.orders) == mm)[0]) for mm in m]
        good = good & ~flags_to_mask(flags[rows])
    flux, vn, _ = normalize(data, var, blaze, good)
    good = good & np.isfinite(flux) & np.isfinite(vn) & (vn > 0)
    with np.errstate(invalid="ignore"):
        spike = flux - 1.0 > np.maximum(clip * np.sqrt(vn), SPIKE_ABOVE_CONTINUUM)
    return m, lam, flux, vn, good & ~spike


def _epoch_z_b(spec, zdate):
    from .measure import _barycentric, _header_obstime

    obstime = None
    if zdate == "one_day_early":
        obstime = _header_obstime(spec.meta) - 1.0 * u.day
    z_b, _, _ = _barycentric(spec, True, None, None, None, obstime)
    return z_b


def build_zero(
    spectra,
    *,
    fiber=None,
    z_b=None,
    rv=0.0 * u.m / u.s,
    orders=None,
    knot_step=1.1,
    iterations=3,
    clip=5.0,
    rv_mask=True,
    legacy=False,
    zero_date=None,
):
    """A rest-frame template co-added from observed spectra of one star (see the module docstring).

    Parameters
    ----------
    spectra : sequence of EchelleSpectrum
        Topocentric spectra of the star with wavelengths and variance (at least 1).
    fiber : int, optional
        Fiber id (default: each spectrum's only non-ThAr fiber).
    z_b : sequence of float, optional
        Barycentric redshift of each spectrum; default from its header (:data:`nres.rv.HEADER_KEYWORDS`).
    rv : Quantity
        The star's catalogue RV: the template's zero point (the mean of the epochs' RVs).
    orders : sequence of int, optional
        Physical orders (default all the first spectrum's orders).
    knot_step : float
        Spline knot spacing in pixels of the first epoch (the knots follow its local pixel step in
        ln(lambda)). Wider knots lower the template noise but bias narrow lines (docs/rv.md). Keep it
        >= 1 for a ZERO from one epoch (or from epochs at nearly the same barycentric shift: fewer
        pixels than knots leave samples undetermined) and not an integer: knots locked to the pixels
        bias RVs against a one-epoch ZERO with the pixel phase (default 1.1).
    iterations : int
        Bootstrap iterations (build, measure every epoch, rebuild).
    clip : float
        Pixels whose residual exceeds ``clip`` sigma are rejected (cosmic rays, outliers), and so are
        pixels of an epoch more than ``clip`` sigma and :data:`SPIKE_ABOVE_CONTINUUM` above its
        continuum before the co-add (spikes common to all epochs have no residual).
    rv_mask : bool
        Leave out pixels flagged by :func:`nres.rv.rv_mask` (tellurics, badlams, edges, blue hook, bleed).
    legacy : bool
    zero_date : {"exact", "one_day_early"} or None
        "one_day_early": the original's date bug (z_B from the header time minus one day).

    Returns
    -------
    Template
        Barycentric-frame (rest) template, flux continuum-normalised, with ``variance`` and ``meta``:
        ``z_b``, ``z_star`` (per epoch), ``n_epochs``, ``flags`` (uint16 per sample: NO_WEIGHT where
        no pixel constrains it), ``orders``, ``REDSHIFT`` (the original's keyword, ``-rrt`` of the mean),
        ``pixel_integrated`` (True: compared point by point by ``measure``).
    """
    from .measure import measure
    from .template import Template

    spectra = list(spectra)
    if not spectra:
        msg = "spectra: need at least one spectrum"
        raise InvalidParameterError(msg)
    if not knot_step > 0 or int(iterations) < 0:
        msg = f"knot_step must be > 0 and iterations >= 0, got {knot_step}, {iterations}"
        raise InvalidParameterError(msg)
    opts = _legacy.resolve("Template.from_spectra", legacy, zero_date=zero_date)
    for sp in spectra:
        if sp.wavelength_frame != "topocentric":
            msg = "spectra: Template.from_spectra expects topocentric spectra"
            raise InvalidParameterError(msg)
    if orders is None:
        orders = np.asarray(spectra[0].orders).tolist()
    zb = (
        np.array([_epoch_z_b(sp, opts["zero_date"]) for sp in spectra], dtype=float)
        if z_b is None
        else np.asarray(z_b, dtype=float).ravel()
    )
    if zb.size != len(spectra):
        msg = f"z_b: expected {len(spectra)} values, got {zb.size}"
        raise InvalidParameterError(msg)
    epochs = [_epoch_arrays(sp, fiber, orders, rv_mask, clip) for sp in spectra]
    s_cat = float(np.log1p(rv.to_value(u.m / u.s) / C_M_S))
    s_star = np.full(len(spectra), s_cat)
    medium = spectra[0].wavelength_medium
    template = None
    for it in range(int(iterations) + 1):
        template = _coadd(epochs, zb, s_star, knot_step, clip, medium, Template)
        if it == int(iterations):
            break
        new = np.empty_like(s_star)
        for k, sp in enumerate(spectra):
            r = measure(sp, template, method="template", z_b=zb[k], fiber=fiber, orders=orders)
            new[k] = np.log1p(r.rv.to_value(u.m / u.s) / C_M_S)
        new += s_cat - np.mean(new)
        done = np.max(np.abs(new - s_star)) < 1e-12
        s_star = new
        if done:
            template = _coadd(epochs, zb, s_star, knot_step, clip, medium, Template)
            break
    z_star = np.expm1(s_star)
    rrt = np.mean((1.0 - z_star) * (1.0 + zb) - 1.0)
    meta = dict(template.meta)
    meta.update(
        {
            "z_b": zb.tolist(),
            "z_star": z_star.tolist(),
            "n_epochs": len(spectra),
            "REDSHIFT": float(-rrt),
            "zero_date": opts["zero_date"],
            "knot_step": float(knot_step),
        }
    )
    return Template(template.wavelength, template.flux, template.variance, medium, "barycentric", None, meta)


def _knot_grid(x_ref, lo, hi, knot_step):
    """Knots every ``knot_step`` pixels of one epoch's sampling ``x_ref`` (ln lambda of every pixel of
    the order), from ``lo`` to ``hi``; beyond ``x_ref`` the end steps are extended linearly.

    The pixel step in ln(lambda) varies by +-10-40 % along an order: knots a uniform (median) step apart
    outnumber the pixels wherever the step is larger, so a ZERO from one epoch (or from epochs at nearly
    the same barycentric shift) is underdetermined there -- a third of its samples defined only by the
    penalty, with arbitrary values (ringing to hundreds of times the continuum next to a hot pixel) and a
    huge variance. Knots that follow the pixels keep at least one pixel per knot interval everywhere
    (``knot_step`` >= 1): one epoch gives the interpolating spline through its pixels."""
    fin = np.isfinite(x_ref)
    xr, pr = x_ref[fin], np.flatnonzero(fin).astype(float)
    if xr.size >= 2 and xr[0] > xr[-1]:
        xr, pr = xr[::-1], -pr[::-1]
    if xr.size < 8 or np.any(np.diff(xr) <= 0):
        return None

    def to_x(p):
        out = np.interp(p, pr, xr)
        left, right = p < pr[0], p > pr[-1]
        out[left] = xr[0] + (p[left] - pr[0]) * (xr[1] - xr[0]) / (pr[1] - pr[0])
        out[right] = xr[-1] + (p[right] - pr[-1]) * (xr[-1] - xr[-2]) / (pr[-1] - pr[-2])
        return out

    def to_p(x):
        if x < xr[0]:
            return pr[0] + (x - xr[0]) * (pr[1] - pr[0]) / (xr[1] - xr[0])
        if x > xr[-1]:
            return pr[-1] + (x - xr[-1]) * (pr[-1] - pr[-2]) / (xr[-1] - xr[-2])
        return float(np.interp(x, xr, pr))

    p_lo, p_hi = to_p(lo), to_p(hi)
    pk = p_lo + knot_step * np.arange(int(np.floor((p_hi - p_lo) / knot_step)) + 1)
    # the last knot on the last point (an interval beyond it would only be extrapolated): the last
    # interval is 0.5-1.5 steps long
    if p_hi - pk[-1] > 0.5 * knot_step or pk.size < 2:
        pk = np.append(pk, p_hi)
    else:
        pk[-1] = p_hi
    if pk.size < 8:
        pk = np.linspace(p_lo, p_hi, 8)
    grid = to_x(pk)
    grid[0], grid[-1] = lo, hi  # exact ends: the first and last points lie on the end knots
    return grid


def _coadd(epochs, zb, s_star, knot_step, clip, medium, template_cls):
    orders = epochs[0][0]
    grids, fluxes, variances, flags, done = [], [], [], [], []
    for j in range(len(orders)):
        x_all, y_all, w_all, steps, x_ref = [], [], [], [], None
        for k, (m, lam, flux, var, good) in enumerate(epochs):
            jj = np.flatnonzero(np.asarray(m) == orders[j])
            if jj.size == 0:
                continue
            jj = int(jj[0])
            x = np.log(lam[jj]) + np.log1p(zb[k]) - s_star[k]
            steps.append(np.median(np.abs(np.diff(x))))
            g = good[jj]
            if x_ref is None and g.sum() >= 20:
                x_ref = x  # the knots follow the first epoch's pixels (all epochs share the sampling)
            x_all.append(x[g])
            y_all.append(flux[jj][g])
            w_all.append(1.0 / var[jj][g])
        if not x_all or all(v.size < 20 for v in x_all):
            continue  # no epoch has good pixels here (e.g. a masked telluric order): no template
        x, y, w = np.concatenate(x_all), np.concatenate(y_all), np.concatenate(w_all)
        order = np.argsort(x, kind="stable")
        x, y, w = x[order], y[order], w[order]
        done.append(int(orders[j]))
        grid = _knot_grid(x_ref, x[0], x[-1], knot_step)
        if grid is None:  # non-monotonic wavelengths: a uniform grid at the median step
            h = knot_step * float(np.median(steps))
            grid = x[0] + h * np.arange(max(int(np.ceil((x[-1] - x[0]) / h)) + 1, 8))
            grid[-1] = max(grid[-1], x[-1])
        samples, var, _ = _solve_order(x, y, w, grid, clip)
        # a sample is constrained when a good pixel of some epoch lies within one knot step (one pixel
        # for knot_step < 1); telluric gaps of every epoch are not: their samples only carry the
        # penalty, with a huge variance
        nearest = np.minimum(
            np.abs(grid - x[np.clip(np.searchsorted(x, grid), 0, x.size - 1)]),
            np.abs(grid - x[np.clip(np.searchsorted(x, grid) - 1, 0, x.size - 1)]),
        )
        covered = nearest <= np.gradient(grid) * max(1.0, 1.0 / knot_step) * (1.0 + 1e-9)
        grids.append(grid)
        fluxes.append(samples)
        variances.append(var)
        flags.append(np.where(covered, 0, int(Flag.NO_WEIGHT)).astype(FLAG_DTYPE))
    if not grids:
        msg = "Template.from_spectra: no order has good pixels in every epoch"
        raise FitError(msg)
    n_max = max(g.size for g in grids)

    def pad(arrs, fill):
        return np.array([np.concatenate([a, np.full(n_max - a.size, fill)]) for a in arrs])

    lam = pad([np.exp(g) for g in grids], np.nan)
    meta = {
        "orders": done,
        "flags": pad(flags, int(Flag.NO_WEIGHT)).astype(FLAG_DTYPE),
        "pixel_integrated": True,
    }
    return template_cls(
        lam * u.nm, pad(fluxes, np.nan), pad(variances, np.nan), medium, "barycentric", None, meta
    )


def write_zero(template, path, *, header=None, thar=None, wavelength_lab=None, overwrite=False):
    """Write a template as the original's ZERO file (idl-rv-ops.md 5.1).

    Parameters
    ----------
    template : Template
        Barycentric (rest-frame) template; its segments are the orders (``WavelenStar``, ``Star``).
    path : str or Path
    header : dict or fits.Header, optional
        Extra primary-header cards (OBJECT, SITEID, INSTRUME, MJD-OBS, TEFF, LOGG, ...).
    thar, wavelength_lab : array_like (n_order, nx), optional
        The ZERO's ThAr spectrum and fibre-1 lab wavelengths (zeros / ``WavelenStar`` if not given).
    overwrite : bool
    """
    if template.wavelength_frame != "barycentric":
        template = template.to_barycentric()
    lam = template.wavelength.to_value(u.nm)
    nord, nx = lam.shape
    hdr = fits.Header()
    hdr["OBSTYPE"] = "TEMPLATE"
    hdr["RLEVEL"] = 91
    hdr["NAVG"] = int(template.meta.get("n_epochs", 1))
    hdr["REDSHIFT"] = float(template.meta.get("REDSHIFT", 0.0))
    hdr["MJDC"] = (float(Time.now().mjd), "creation MJD")
    hdr["WAVMED"] = (template.wavelength_medium, "nres: medium of WavelenStar")
    for k, v in dict(header or {}).items():
        hdr[k] = v
    thar = np.zeros((nord, nx)) if thar is None else np.asarray(thar, dtype=float)
    wlab = lam if wavelength_lab is None else np.asarray(wavelength_lab, dtype=float)
    var = template.variance if template.variance is not None else np.zeros((nord, nx))
    dims = f"({nx},{nord})"
    cols = [
        fits.Column("Star", f"{nx * nord}E", dim=dims, array=template.flux[None].astype(np.float32)),
        fits.Column("ThAr", f"{nx * nord}E", dim=dims, array=thar[None].astype(np.float32)),
        fits.Column("WavelenStar", f"{nx * nord}D", dim=dims, array=lam[None]),
        fits.Column("WavelenLab", f"{nx * nord}D", dim=dims, array=wlab[None]),
        fits.Column("StarVar", f"{nx * nord}E", dim=dims, array=np.asarray(var)[None].astype(np.float32)),
    ]
    table = fits.BinTableHDU.from_columns(cols)
    fits.HDUList([fits.PrimaryHDU(header=hdr), table]).writeto(path, overwrite=overwrite)


def read_zero(path, *, wavelength_medium="vacuum"):
    """Read a ZERO file in the original's layout as a rest-frame :class:`~nres.rv.Template`.

    ``WavelenStar`` (nm, the star's rest frame) and ``Star`` become the template (frame
    "barycentric"); ``StarVar`` (nres files) its variance. The header goes to ``meta["header"]``,
    ``ThAr``/``WavelenLab`` to ``meta``.

    Raises
    ------
    InvalidInputFileError
        Missing file, no binary table, or missing columns.
    """
    from .template import Template

    try:
        hdul = fits.open(path)
    except (OSError, FileNotFoundError) as err:
        raise InvalidInputFileError(path, f"cannot open the ZERO file ({err})") from None
    with hdul:
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            raise InvalidInputFileError(path, "expected a binary table in extension 1 (ZERO layout)")
        data = hdul[1].data
        names = {n.lower(): n for n in data.columns.names}
        for need in ("star", "wavelenstar"):
            if need not in names:
                raise InvalidInputFileError(path, f"ZERO table has no column {need!r}")
        star = np.asarray(data[names["star"]][0], dtype=float)
        lam = np.asarray(data[names["wavelenstar"]][0], dtype=float)
        var = np.asarray(data[names["starvar"]][0], dtype=float) if "starvar" in names else None
        if var is not None and not np.any(var):
            var = None
        # the Star column is an observed spectrum or a co-add of them: samples already pixel means
        meta = {"header": hdul[0].header.copy(), "source": str(path), "pixel_integrated": True}
        for key in ("thar", "wavelenlab"):
            if key in names:
                meta[names[key]] = np.asarray(data[names[key]][0], dtype=float)
        medium = str(hdul[0].header.get("WAVMED", wavelength_medium))
    return Template(lam * u.nm, star, var, medium, "barycentric", None, meta)
