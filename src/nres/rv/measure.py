"""Radial velocities of an extracted spectrum: template least-squares fit and binary-mask CCF.

Redshifts are exact: a template or mask line at rest wavelength ``lambda_0`` is observed at
``lambda_0 (1 + z)``; the fit works in ``s = ln(1 + z)`` (a shift in ln lambda) and reports
``z = exp(s) - 1`` and ``rv = c z`` (:mod:`nres.doppler`). The template/mask is converted to the
spectrum's medium, and a topocentric template to the barycentric frame, explicitly; every
conversion is recorded in ``RVResult.meta["conversions"]``.
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import Distance, SkyCoord
from astropy.table import QTable
from astropy.time import Time
from scipy.optimize import OptimizeWarning, curve_fit

from .. import legacy as _legacy
from ..doppler import C_M_S, barycentric_z, observed_z
from ..errors import FitError, InvalidParameterError
from ..flags import FLAG_DTYPE, Flag, flags_to_mask
from . import _kernels
from .barycentric import barycentric_correction
from .masks import LineMask
from .result import RVResult
from .template import Template

__all__ = ["measure", "HEADER_KEYWORDS", "PIXEL_CLIP"]

#: Header keywords read when target/obstime/location are not given (NRES e91 / raw conventions).
HEADER_KEYWORDS = {
    "RA": "right ascension (deg, or sexagesimal hours 'hh:mm:ss')",
    "DEC": "declination (deg, or sexagesimal 'dd:mm:ss')",
    "PMRA": "proper motion in RA * cos(Dec), mas/yr (optional, 0)",
    "PMDEC": "proper motion in Dec, mas/yr (optional, 0)",
    "PARALLAX": "parallax, mas (optional; with PM and RADVEL the space motion is applied)",
    "RADVEL": "catalogue radial velocity, km/s (optional, 0)",
    "EPOCH": "catalogue epoch, Julian year (optional, 2000.0)",
    "MJD-OBS": "exposure start (MJD UTC); or DATE-OBS (ISO UTC)",
    "EXPTIME": "exposure time, s: the RV time is start + EXPTIME / 2",
    "SITEID": "NRES site code (lsc, elp, cpt, tlv, bpl)",
}

_METHODS = ("template", "mask", "ccf", "blocks")
_LEGACY = (
    (
        "ccf_engine",
        ("nres", "mgbcc"),
        "mgbcc",
        "8",
        "mgbcc: one order, smoothed star, 4-point least-squares resampling, no continuum normalisation",
    ),
    ("ccf_orders", ("all", "mgb"), "mgb", "0, 8", "the cross-correlation used the Mg b order (m = 90) only"),
    (
        "ccf_redshift",
        ("exact", "dlnlambda"),
        "dlnlambda",
        "8",
        "the ln(lambda) lag rcc was used as the redshift (error ~rcc^2/2: 17 m/s at 100 km/s)",
    ),
    (
        "block_engine",
        ("nres", "idl"),
        "idl",
        "9",
        "blockfit2/lsqblkfit2 chain: mgbcc pre-shift, smoothed data, approximate Jacobian, quartile clip",
    ),
    (
        "block_sign",
        ("fixed", "idl"),
        "idl",
        "0 (1), 9.3",
        "the block redshift rr satisfies data(lam) = Z(lam (1 + rr)), i.e. rr = -z, reported as +z",
    ),
    (
        "block_error",
        ("shift", "offset"),
        "offset",
        "0 (2), 9.5",
        "the block redshift error was sqrt(cov[0,0]) of the unscaled normal matrix (the offset's)",
    ),
)
for _opt, _choices, _legacy_value, _ref, _summary in _LEGACY:
    _legacy.register(
        "nres.rv.measure",
        _opt,
        choices=_choices,
        default=_choices[0],
        legacy=_legacy_value,
        reference=f"idl-rv-ops.md {_ref}",
        summary=_summary,
    )
_GAUSS_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: Template method: pixels are fitted only where the template covers them shifted by up to this much
#: from the starting CCF's s0 (m/s), and a fit whose shift leaves that range fails. s0 (100 m/s grid,
#: parabola) is within ~0.1 km/s of every order's optimum, so 5 km/s only costs ~3 pixels at each end
#: of the template, where a wider margin would throw away lines the photon limit counts.
FIT_MARGIN_M_S = 5000.0
#: Points of the diagnostic CCF of the template and blocks methods (+-3 FWHM around the start).
DIAGNOSTIC_CCF_POINTS = 121
#: Default per-pixel rejection threshold of the template fit (sigma of the normalised residuals). With
#: Gaussian noise alone 5.7e-7 of the pixels lie beyond 5 sigma: ~0.2 of a full 67 x 4096 spectrum, so
#: clean data keep every pixel (a lower limit would start clipping the noise's own tails: 4 sigma, ~17
#: pixels), while a spike that moves an order's RV by a fraction of its photon error is far beyond it.
PIXEL_CLIP = 5.0


# ----- inputs ---------------------------------------------------------------------------------------
def _pick_fiber(spec, fiber) -> int:
    fibers = np.asarray(spec.fibers)
    if fiber is None:
        science = [k for k, f in enumerate(fibers) if f != 1]
        if len(fibers) == 1:
            return 0
        if len(science) == 1:
            return science[0]
        msg = f"fiber: the spectrum has fibers {fibers.tolist()}; say which one (fiber=...)"
        raise InvalidParameterError(msg)
    hits = np.flatnonzero(fibers == int(fiber))
    if hits.size != 1:
        msg = f"fiber: {fiber} is not among the spectrum's fibers {fibers.tolist()}"
        raise InvalidParameterError(msg)
    return int(hits[0])


def _header_target(meta) -> SkyCoord:
    try:
        ra, dec = meta["RA"], meta["DEC"]
    except KeyError:
        msg = "target: not given and the spectrum's header has no RA/DEC"
        raise InvalidParameterError(msg) from None
    ra_unit = u.hourangle if isinstance(ra, str) and ":" in ra else u.deg
    kwargs = {}
    if "PARALLAX" in meta and float(meta["PARALLAX"]) > 0:
        kwargs = {
            "pm_ra_cosdec": float(meta.get("PMRA", 0.0)) * u.mas / u.yr,
            "pm_dec": float(meta.get("PMDEC", 0.0)) * u.mas / u.yr,
            "distance": Distance(parallax=float(meta["PARALLAX"]) * u.mas),
            "radial_velocity": float(meta.get("RADVEL", 0.0)) * u.km / u.s,
            "obstime": Time(float(meta.get("EPOCH", 2000.0)), format="jyear", scale="tdb"),
        }
    return SkyCoord(ra, dec, unit=(ra_unit, u.deg), **kwargs)


def _header_obstime(meta) -> Time:
    if "MJD-OBS" in meta:
        start = Time(float(meta["MJD-OBS"]), format="mjd", scale="utc")
    elif "DATE-OBS" in meta:
        start = Time(meta["DATE-OBS"], scale="utc")
    else:
        msg = "obstime: not given and the spectrum's header has no MJD-OBS or DATE-OBS"
        raise InvalidParameterError(msg)
    return start + 0.5 * float(meta.get("EXPTIME", 0.0)) * u.s


def _barycentric(spec, barycentric, z_b, location, target, obstime):
    """(z_B or NaN, BJD_TDB or None, note)."""
    if z_b is not None:
        return float(z_b), None, "z_b given"
    if not barycentric or spec.wavelength_frame == "barycentric":
        return np.nan, None, "not applied"
    meta = spec.meta if spec.meta is not None else {}
    target = _header_target(meta) if target is None else target
    obstime = _header_obstime(meta) if obstime is None else obstime
    if location is None:
        if "SITEID" not in meta:
            msg = "location: not given and the spectrum's header has no SITEID"
            raise InvalidParameterError(msg)
        location = str(meta["SITEID"])
    bc = barycentric_correction(target, obstime, location)
    return float(bc.z), bc.bjd_tdb, "astropy"


def _order_arrays(spec, fi, orders):
    if spec.wavelength is None:
        msg = "spec: the spectrum has no wavelength solution"
        raise InvalidParameterError(msg)
    if spec.variance is None:
        msg = "spec: the spectrum has no variance (VarianceUncertainty); the RV error needs it"
        raise InvalidParameterError(msg)
    all_orders = np.asarray(spec.orders)
    if orders is None:
        oi = np.arange(all_orders.size)
    else:
        oi = np.array([int(np.flatnonzero(all_orders == m)[0]) if m in all_orders else -1 for m in orders])
        if np.any(oi < 0):
            msg = f"orders: {list(orders)} not all among the spectrum's orders"
            raise InvalidParameterError(msg)
    lam = np.asarray(spec.wavelength.to_value(u.nm)[fi][oi], dtype=float)
    data = np.asarray(spec.data[fi][oi], dtype=float)
    var = np.asarray(spec.variance[fi][oi], dtype=float)
    bad = np.asarray(spec.mask[fi][oi], dtype=bool) | ~np.isfinite(data) | ~np.isfinite(var) | (var <= 0)
    bad |= ~np.isfinite(lam) | (lam <= 0)
    blaze = None if spec.blaze is None else np.asarray(spec.blaze[fi][oi], dtype=float)
    if blaze is not None:
        bad |= ~np.isfinite(blaze) | (blaze <= 0)
    return all_orders[oi], lam, data, var, ~bad, blaze


def _continuum(y, good, degree, iterations=4, stride=1):
    """Upper envelope-ish smooth continuum: Legendre fit refit to points at or above the fit.

    ``stride`` > 1 fits every stride-th point only (a cheap continuum for the starting CCF); the fit
    is evaluated at every point."""
    n = y.size
    t = np.linspace(-1.0, 1.0, n)
    ts, ys, good_s = t[::stride], y[::stride], good[::stride]
    keep = good_s.copy()
    coef = None
    for _ in range(iterations):
        if keep.sum() <= degree + 2:
            break
        coef = np.polynomial.legendre.legfit(ts[keep], ys[keep], degree)
        resid = ys - np.polynomial.legendre.legval(ts, coef)
        scale = np.std(resid[keep])
        keep = good_s & (resid > -0.5 * scale)
    if coef is None:
        return np.full(n, np.nanmedian(y[good]) if good.any() else 1.0)
    return np.polynomial.legendre.legval(t, coef)


# ----- robust combination -------------------------------------------------------------------------------
def _combine(s, sig, clip):
    """Inverse-variance mean of s with iterative rejection; returns (mean, err, chi2, used mask)."""
    used = np.isfinite(s) & np.isfinite(sig) & (sig > 0)
    if not used.any():
        msg = "measure: no order gave a velocity"
        raise FitError(msg)
    centre = np.median(s[used])
    for _ in range(used.sum()):
        r = (s - centre) / sig
        scale = max(1.0, 1.4826 * np.median(np.abs(r[used])))
        worst = np.where(used, np.abs(r), -np.inf)
        k = int(np.argmax(worst))
        if worst[k] <= clip * scale or used.sum() <= 2:
            break
        used[k] = False
        # the centre stays the median while rejecting: a weighted mean would carry the remaining
        # outliers (two edge orders 700 m/s off on either side inflated the scale past the clip)
        centre = np.median(s[used])
    w = 1.0 / sig[used] ** 2
    mean = np.sum(w * s[used]) / np.sum(w)
    err = 1.0 / np.sqrt(np.sum(w))
    chi2 = float(np.sum(w * (s[used] - mean) ** 2))
    return mean, err, chi2, used


# ----- CCF shape --------------------------------------------------------------------------------------
def _gauss(v, c0, a, v0, sigma):
    return c0 + a * np.exp(-0.5 * ((v - v0) / sigma) ** 2)


def _fit_gaussian(v, c, guess_v0, guess_sigma):
    """Gaussian + constant fit to a CCF (dip or peak); returns (c0, a, v0, sigma)."""
    c0 = np.median(np.concatenate([c[:3], c[-3:]]))
    a = c[np.argmin(np.abs(v - guess_v0))] - c0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            p, _ = curve_fit(_gauss, v, c, p0=[c0, a, guess_v0, guess_sigma], maxfev=4000)
        except RuntimeError as err:
            msg = f"measure: Gaussian fit to the CCF failed ({err})"
            raise FitError(msg) from None
    p[3] = abs(p[3])
    return p


def _bisector_span(v, c, params):
    """Queloz et al. (2001) bisector span: mean bisector at 10-40 % minus 55-90 % of the depth."""
    c0, a, v0, _ = params
    depth = (c - c0) / a  # 1 at the centre, 0 in the wings
    k = int(np.argmax(depth))
    left_v, left_d = v[: k + 1][::-1], depth[: k + 1][::-1]
    right_v, right_d = v[k:], depth[k:]

    def side(vv, dd, level):
        j = np.flatnonzero(dd < level)
        if j.size == 0:
            return np.nan
        j = j[0]
        return np.interp(level, [dd[j], dd[j - 1]], [vv[j], vv[j - 1]])

    def mean_bisector(lo, hi):
        levels = np.linspace(lo, hi, 16)
        return np.mean([0.5 * (side(left_v, left_d, q) + side(right_v, right_d, q)) for q in levels])

    # depth fraction 1 = bottom of the line; "top" of the CCF = small depth
    return mean_bisector(0.10, 0.40) - mean_bisector(0.55, 0.90)


def _ccf_table(v, c, params):
    c0, a, v0, sigma = params
    tab = QTable()
    tab["velocity"] = [v] * u.m / u.s
    tab["ccf"] = [c]
    tab["center"] = [v0] * u.m / u.s
    tab["fwhm"] = [_GAUSS_FWHM * sigma] * u.m / u.s
    tab["contrast"] = [-a / c0 if c0 != 0 else a]
    tab["bisector_span"] = [_bisector_span(v, c, params)] * u.m / u.s
    return tab


# ----- template method ----------------------------------------------------------------------------------
def _pack(arrays):
    start = np.zeros(len(arrays) + 1, dtype=np.int64)
    start[1:] = np.cumsum([a.size for a in arrays])
    flat = np.ascontiguousarray(np.concatenate(arrays) if arrays else np.zeros(0), dtype=np.float64)
    return flat, start


#: Residuals of the starting CCF are capped at this many robust sigmas (see _template_start).
_RESIDUAL_CAP = 10.0
#: An order agrees with the consensus peak of the starting CCF when its own peak is within this many
#: 2 km/s grid steps (6 km/s: a few line widths, more than an order's peak scatters at S/N ~ 10).
_AGREE_STEPS = 3


def _robust_scale(values):
    """1.4826 x the median absolute deviation (a Gaussian sigma robust to lines and spikes); 1 if 0."""
    if values.size == 0:
        return 1.0
    mad = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    return mad if mad > 0 else max(float(np.max(np.abs(values))), 1.0)


def _consensus(per_order, *, max_offset):
    """Robust combination of per-order CCFs on one shift grid, shape (n_orders, n_shifts).

    Each order's CCF is normalised (minus its median, over its robust scale) and each order votes
    for its own peak; the peak is the maximum of the summed normalised CCFs within ``max_offset``
    grid steps of the peak most orders agree on (ties: the larger sum). So no single order -- a
    bright one at a wrong velocity, or one whose continuum misfits -- decides the start, however
    high its S/N. Returns (the summed normalised CCF, a boolean per order: its own peak is within
    ``max_offset`` steps of the chosen peak; all True if none is) and the index of the peak.
    """
    per_order = np.asarray(per_order, dtype=np.float64)
    med = np.median(per_order, axis=1, keepdims=True)
    scale = np.array([_robust_scale(row) for row in per_order])[:, None]
    normed = (per_order - med) / scale
    total = normed.sum(axis=0)
    peaks = np.argmax(normed, axis=1)
    votes = (np.abs(peaks[:, None] - peaks[None, :]) <= max_offset).sum(axis=1)
    best = votes == votes.max()
    winner = peaks[best][int(np.argmax(total[peaks[best]]))]
    lo, hi = max(winner - max_offset, 0), min(winner + max_offset + 1, total.size)
    peak = lo + int(np.argmax(total[lo:hi]))
    agree = np.abs(peaks - peak) <= max_offset
    if not agree.any():
        agree[:] = True
    return total, agree, peak


def _template_start(template, segs, x, data, var, good, degree, v_range, coarse_orders=12):
    """Global starting shift s0 from a template CCF over v_range on up to ``coarse_orders`` orders;
    returns (s0, diagnostic shift grid of +-3 FWHM around s0, the CCF on it)."""
    usable = [k for k in range(len(segs)) if segs[k] >= 0 and good[k].sum() > 4 * (degree + 2)]
    if not usable:
        msg = "measure: the template covers none of the spectrum's orders"
        raise FitError(msg)
    pick = [usable[int(j)] for j in np.unique(np.linspace(0, len(usable) - 1, coarse_orders).round())]
    steps = [np.median(np.abs(np.diff(x[k]))) for k in pick]
    h = 0.5 * float(np.min(steps))
    xs, ys, ycs, tvals, tcaps, tu0 = [], [], [], [], [], []
    # smooth (degree-3) continua for a starting guess: every 4th data / 8th template point suffices
    for k in pick:
        cont = _continuum(data[k], good[k], degree, stride=4)
        y = np.where(good[k], (data[k] / cont - 1.0) * cont**2 / var[k], 0.0)
        # the coarse and fine searches cap the S/N-weighted residuals at 10 robust sigmas: a continuum
        # that misfits a blaze edge where the variance is tiny (or a hot pixel) otherwise outweighs
        # every line of the order; the diagnostic CCF keeps the line shapes (bisector) intact
        cap = _RESIDUAL_CAP * _robust_scale(y[good[k]])
        ycs.append(np.clip(y, -cap, cap))
        xs.append(x[k])
        ys.append(y)
        u0, tv = template.uniform(segs[k], h)
        tgood = np.isfinite(tv)
        tcont = _continuum(tv, tgood, degree, stride=8)
        tv = tv / tcont - 1.0
        tvals.append(tv)
        # and the template's upward spikes likewise (absorption lines point down): a cosmic ray kept
        # in a one-epoch ZERO meets the same detector artefact in the data and outweighs every line
        tcaps.append(np.minimum(tv, _RESIDUAL_CAP * _robust_scale(tv[tgood])))
        tu0.append(u0)
    xf, start = _pack(xs)
    yf, _ = _pack(ys)
    tf, tstart = _pack(tvals)
    tu0 = np.ascontiguousarray(tu0, dtype=np.float64)
    lo, hi = (np.log1p(v / C_M_S) for v in v_range)
    coarse_step = np.log1p(2000.0 / C_M_S)
    shifts = np.arange(lo, hi + coarse_step, coarse_step)
    # the wide 2 km/s grid only has to land within the +-4 km/s fine grid: every 3rd pixel is enough
    # (a sqrt(3) lower CCF S/N) at a third of the cost; the fine grid uses every pixel
    xc, cstart = _pack([xx[::3] for xx in xs])
    yc, _ = _pack([yy[::3] for yy in ycs])
    tc, _ = _pack(tcaps)
    per_order = _kernels.template_ccf(xc, yc, cstart, tc, tstart, tu0, h, shifts)
    ccf, agree, k_peak = _consensus(per_order, max_offset=_AGREE_STEPS)
    s_peak = shifts[k_peak]
    fine = s_peak + np.arange(-40, 41) * np.log1p(100.0 / C_M_S)
    # the fine grid and the diagnostic CCF sum (S/N-weighted) only the orders that agree on the peak
    use = np.flatnonzero(agree)
    xs, ys, tvals, tu0 = [xs[i] for i in use], [ys[i] for i in use], [tvals[i] for i in use], tu0[use]
    xf, start = _pack(xs)
    yf, _ = _pack(ys)
    tf, tstart = _pack(tvals)
    tu0 = np.ascontiguousarray(tu0)
    ycf, _ = _pack([ycs[i] for i in use])
    tcf, _ = _pack([tcaps[i] for i in use])
    ccf_fine = _kernels.template_ccf(xf, ycf, start, tcf, tstart, tu0, h, fine).sum(axis=0)
    j = int(np.clip(np.argmax(ccf_fine), 1, fine.size - 2))
    ym, y0, yp = ccf_fine[j - 1 : j + 2]
    denom = ym - 2 * y0 + yp
    # the parabola's vertex between the neighbours only: a maximum at the grid's end (a monotonic
    # CCF) has no vertex there, and an unbounded offset threw s0 tens of km/s off
    off = float(np.clip(0.5 * (ym - yp) / denom, -1.0, 1.0)) if denom < 0 else 0.0
    s0 = fine[j] + off * (fine[1] - fine[0])
    norm = np.sqrt(np.sum(yf**2) * np.sum(tf**2)) / max(len(use), 1)
    # the reported (diagnostic) CCF spans +-3 FWHM so its Gaussian fit and bisector span see the wings:
    # the FWHM from the half-height crossings of the wide CCF above its median (clamped to 3-100 km/s)
    base = float(np.median(ccf))
    k = k_peak
    above = ccf - base >= 0.5 * (ccf[k] - base)
    lo_k, hi_k = k, k
    while lo_k > 0 and above[lo_k - 1]:
        lo_k -= 1
    while hi_k < ccf.size - 1 and above[hi_k + 1]:
        hi_k += 1
    fwhm = np.clip((hi_k - lo_k + 1) * coarse_step, np.log1p(3e3 / C_M_S), np.log1p(1e5 / C_M_S))
    diag = s0 + np.linspace(-3.0 * fwhm, 3.0 * fwhm, DIAGNOSTIC_CCF_POINTS)
    ccf_diag = _kernels.template_ccf(xf, yf, start, tf, tstart, tu0, h, diag).sum(axis=0)
    return float(s0), diag, ccf_diag / norm


def _fit_orders(
    template,
    segs,
    x,
    data,
    var,
    good,
    blaze,
    s0,
    degree,
    margin,
    pixel_mean,
    pixel_clip,
    clip_iter,
    max_iter=30,
):
    """Gauss-Newton fits of (continuum polynomial, s) of every order in one jitted call (model,
    normal equations and solves per order, per-pixel rejection beyond ``pixel_clip``); returns
    (s, sigma_s, ok) per order and the (n_order, n_pixel) boolean map of rejected pixels."""
    n_o, n = x.shape
    segs = np.asarray(segs, dtype=np.int64)
    ranges = np.array([template.ln_range(k) if k >= 0 else (np.nan, np.nan) for k in segs]).reshape(-1, 2)
    with np.errstate(invalid="ignore"):
        use = good & (x - s0 - margin > ranges[:, :1]) & (x - s0 + margin < ranges[:, 1:])
    active = np.ascontiguousarray((segs >= 0) & (use.sum(axis=1) > 2 * (degree + 2)))
    use &= active[:, None]
    start = np.arange(n_o + 1, dtype=np.int64) * n
    flat = lambda arr: np.ascontiguousarray(arr, dtype=np.float64).ravel()  # noqa: E731
    s, sig, rejected = _kernels.fit_template_orders(
        flat(x),
        # pixel half-widths in ln(lambda) (unused with pixel_mean off: the kernel then takes point values)
        flat(0.5 * np.abs(np.gradient(x, axis=1))),
        flat(np.broadcast_to(np.linspace(-1.0, 1.0, n), x.shape)),
        flat(np.ones_like(x) if blaze is None else blaze),
        flat(np.where(use, data, 0.0)),
        flat(np.where(use, 1.0 / np.where(use, var, 1.0), 0.0)),
        start,
        segs,
        *template._pieces,
        active,
        float(s0),
        float(margin),
        bool(pixel_mean),
        int(degree),
        int(max_iter),
        1e-13,
        0.0 if pixel_clip is None else float(pixel_clip),
        int(clip_iter),
    )
    ok = np.isfinite(s) & np.isfinite(sig)
    return s, sig, ok, rejected.reshape(x.shape) & ok[:, None]


def _with_template_variance(template, segs, x, s0, data, var, good, blaze, tvar_fn):
    """Pixel variance plus the template's, scaled to the data: ``var + c^2 var_T`` with ``c`` the
    blaze times the ratio of the data's and the template's continua (the template's noise enters the
    fit like the data's). All orders at once (jitted template values and continua)."""
    from .ccf import _template_values
    from .continuum import continuum_rows

    tvar = tvar_fn(segs, x, s0)
    if tvar is None:
        return var
    segs = np.asarray(segs, dtype=np.int64)
    tv = _template_values(template, segs, x - s0)
    tok = np.isfinite(tv)
    b = np.ones_like(x) if blaze is None else blaze
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (
            b
            * continuum_rows(np.where(good, data / b, np.nan), good)
            / continuum_rows(np.where(tok, tv, np.nan), tok)
        )
    add = c**2 * np.nan_to_num(tvar, nan=0.0)
    return np.where((segs >= 0)[:, None], var + add, var)


def _template_variance_fn(template, enabled):
    """A function (segs, x, s) -> template variance at every pixel (linear interpolation of the
    template's variance samples at ln(lambda) - s; NaN outside), or None without variance."""
    if not enabled or template.variance is None:
        return lambda segs, x, s: None
    lnl = np.log(template.wavelength.to_value(u.nm))

    def fn(segs, x, s):
        out = np.full(x.shape, np.nan)
        for k, g in enumerate(segs):
            if g < 0:
                continue
            fin = np.isfinite(lnl[g]) & np.isfinite(template.variance[g])
            order = np.argsort(lnl[g][fin])
            xs, vs = lnl[g][fin][order], template.variance[g][fin][order]
            out[k] = np.interp(x[k] - s, xs, vs, left=np.nan, right=np.nan)
        return out

    return fn


def _measure_template(
    template, lam, data, var, good, blaze, *, degree, v_range, clip, pixel_mean, pixel_clip, clip_iter,
    tvar_fn=None,
):  # fmt: skip
    x = np.log(lam)
    segs = [template.segment_for(float(np.nanmin(xx)), float(np.nanmax(xx))) for xx in x]
    s0, fine, ccf_fine = _template_start(template, segs, x, data, var, good, degree, v_range)
    if tvar_fn is not None:
        var = _with_template_variance(template, segs, x, s0, data, var, good, blaze, tvar_fn)
    margin = np.log1p(FIT_MARGIN_M_S / C_M_S)
    s, sig, ok, rejected = _fit_orders(
        template, segs, x, data, var, good, blaze, s0, degree, margin, pixel_mean, pixel_clip, clip_iter
    )
    flags = np.zeros(lam.shape[0], dtype=np.uint16)
    flags[~ok] |= np.uint16(Flag.NO_WEIGHT)
    mean, err, chi2, used = _combine(s, sig, clip)
    flags[np.isfinite(s) & ~used] |= np.uint16(Flag.OUTLIER)
    v_grid = C_M_S * np.expm1(fine)
    return s, sig, flags, used, mean, err, chi2, v_grid, ccf_fine, rejected


# ----- mask method --------------------------------------------------------------------------------------
def _pixel_edges(lam):
    mid = 0.5 * (lam[1:] + lam[:-1])
    return np.concatenate([[lam[0] - (mid[0] - lam[0])], mid, [lam[-1] + (lam[-1] - mid[-1])]])


def _measure_mask(mask, lam, data, var, good, blaze, *, degree, v_range, clip, step, half_width, hole):
    n_o = lam.shape[0]
    flip = lam[:, -1] < lam[:, 0]
    edges, d, b, vv = [], [], [], []
    for k in range(n_o):
        sl = slice(None, None, -1) if flip[k] else slice(None)
        lk, dk, gk, vk = lam[k][sl], data[k][sl], good[k][sl], var[k][sl]
        bk = blaze[k][sl] if blaze is not None else _continuum(dk, gk, degree)
        edges.append(_pixel_edges(lk))
        d.append(np.where(gk, dk, 0.0))
        b.append(np.where(gk, bk, 0.0))
        vv.append(np.where(gk, vk, 0.0))
    ef, estart = _pack(edges)
    df, pstart = _pack(d)
    bf, _ = _pack(b)
    vf, _ = _pack(vv)
    lo_h, hi_h = mask.holes(hole)
    wl = np.ascontiguousarray(mask.weight, dtype=np.float64)
    lo_h = np.ascontiguousarray(lo_h)
    hi_h = np.ascontiguousarray(hi_h)

    # candidate lines per order (centres within the order widened by the search range)
    centre = mask.wavelength.to_value(u.nm)
    widen = 1.0 + max(abs(v_range[0]), abs(v_range[1]), half_width) / C_M_S + 1e-3
    lrange = np.ascontiguousarray(
        [[np.searchsorted(centre, e[0] / widen), np.searchsorted(centre, e[-1] * widen)] for e in edges],
        dtype=np.int64,
    ).reshape(-1, 2)

    def ccf(vel, fixed=True, lines=lrange):
        z = np.ascontiguousarray(vel / C_M_S)
        return _kernels.mask_ccf(ef, estart, df, bf, pstart, lo_h, hi_h, wl, lines, z, fixed)

    # the wide starting search on up to 12 orders spread over the spectrum (the others get no lines):
    # enough signal to find a 2 km/s-sampled peak, at a fifth of the cost on whole spectra
    coarse_lines = lrange.copy()
    skip = np.ones(n_o, dtype=bool)
    skip[np.unique(np.linspace(0, n_o - 1, 12).round().astype(int))] = False
    coarse_lines[skip, 1] = coarse_lines[skip, 0]
    coarse = np.arange(v_range[0], v_range[1] + 2000.0, 2000.0)
    num, den = ccf(coarse, fixed=False, lines=coarse_lines)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = num.sum(0) / den.sum(0)
        per_order = -(num / den)[~skip]  # a dip per order; normalised and combined as for the template
    if not np.any(np.isfinite(c)):
        msg = "measure: no mask line falls inside the spectrum's orders"
        raise FitError(msg)
    rows = np.isfinite(per_order).any(axis=1)
    if rows.any():
        per_order = per_order[rows]
        fill = np.nanmedian(per_order, axis=1, keepdims=True)
        _, _, k_peak = _consensus(np.where(np.isfinite(per_order), per_order, fill), max_offset=_AGREE_STEPS)
        v0 = coarse[k_peak]
    else:
        v0 = coarse[int(np.nanargmin(c))]
    sigma = 3000.0
    for _ in range(3):  # recentre the grid on the fit: a symmetric window removes the shape bias
        grid = v0 + step * np.arange(-int(half_width / step), int(half_width / step) + 1)
        num, den = ccf(grid)
        c = num.sum(0) / den.sum(0)
        params = _fit_gaussian(grid, c, v0, sigma)
        offset = params[2] - v0
        v0, sigma = params[2], params[3]
        # a window off-centre by d moves the fit by ~1e-5 d on simulated spectra (1 km/s -> 1 cm/s):
        # once the fit is within 1 m/s of the window centre another pass changes nothing that matters
        if abs(offset) < 1.0:
            break
    # per-order velocities: one linearised step of the global profile (free level and depth) and
    # the exact propagation of the pixel variance through that linear estimator
    g0 = np.exp(-0.5 * ((grid - v0) / sigma) ** 2)
    basis = np.stack([np.ones_like(grid), g0, g0 * (grid - v0) / sigma**2], axis=1)
    pinv = np.linalg.pinv(basis)  # (3, n_grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        co = num / den
        coefs = co @ pinv.T  # (n_o, 3)
        delta = coefs[:, 2] / coefs[:, 1]
        g = (pinv[2][None, :] - delta[:, None] * pinv[1][None, :]) / coefs[:, 1][:, None] / den
    g = np.ascontiguousarray(np.where(np.isfinite(g), g, 0.0))
    zg = np.ascontiguousarray(grid / C_M_S)
    var_o = _kernels.mask_ccf_variance(ef, estart, bf, vf, pstart, lo_h, hi_h, wl, lrange, zg, g)
    v_o = v0 + delta
    sig_o = np.sqrt(var_o)
    flags = np.zeros(n_o, dtype=np.uint16)
    bad = ~np.isfinite(v_o) | ~(sig_o > 0) | (den.sum(1) <= 0)
    flags[bad] |= np.uint16(Flag.NO_WEIGHT)
    v_o[bad] = np.nan
    s = np.log1p(v_o / C_M_S)
    sig = sig_o / C_M_S
    _, _, chi2, used = _combine(s, sig, clip)
    flags[np.isfinite(s) & ~used] |= np.uint16(Flag.OUTLIER)
    err = 1.0 / np.sqrt(np.sum(1.0 / sig[used] ** 2))
    mean = np.log1p(v0 / C_M_S)  # the HARPS-style RV is the centre of the summed CCF
    return s, sig, flags, used, mean, err, chi2, grid, c, params


# ----- public -------------------------------------------------------------------------------------------
def measure(
    spec,
    template,
    *,
    method="template",
    fiber=None,
    barycentric=True,
    location=None,
    target=None,
    obstime=None,
    z_b=None,
    orders=None,
    velocity_range=(-400.0, 400.0) * u.km / u.s,
    continuum_degree=3,
    clip=5.0,
    pixel_clip=PIXEL_CLIP,
    pixel_clip_iterations=3,
    ccf_step=250.0 * u.m / u.s,
    ccf_half_width=20.0 * u.km / u.s,
    mask_width=1.0 * u.km / u.s,
    airvac_formula="edlen1966",
    pixel_mean=None,
    rv_mask=None,
    template_variance=True,
    nblock=12,
    ccf_oversample=2,
    legacy=False,
    ccf_engine=None,
    ccf_orders=None,
    ccf_redshift=None,
    block_engine=None,
    block_sign=None,
    block_error=None,
) -> RVResult:
    """Radial velocity of one fiber of an extracted spectrum.

    Parameters
    ----------
    spec : `~nres.spectrum.EchelleSpectrum`
        Data (fiber, order, pixel) in electrons with variance and wavelengths.
    template : `~nres.rv.Template` or `~nres.rv.LineMask`
        Template (``method="template"``) or mask (``method="mask"``). Converted to the spectrum's
        medium; a topocentric template is moved to the barycentric frame with its ``z_b``.
    method : {"template", "mask", "ccf", "blocks"}
        "template": per-order least-squares fit of ``s = ln(1 + z)`` with a Legendre
        multiplicative continuum (times the blaze when the spectrum has one), the template
        spline-evaluated at the data's wavelengths, errors from the data variance, orders combined
        by inverse variance with iterative rejection at ``clip`` sigma. "mask": binary-mask CCF
        (boxes of ``mask_width`` or the file's widths), blaze-normalised, summed over orders and
        fitted with a Gaussian; per-order RVs and errors from a linearised fit of that profile.
        "ccf": the original's Stage A cross-correlation generalised to all orders
        (:mod:`nres.rv.ccf`). "blocks": per-order, per-block fits of level, scale and shift
        (:mod:`nres.rv.blocks`). Both take a Template.
    fiber : int, optional
        Fiber id; default the spectrum's only fiber or its only non-ThAr fiber.
    barycentric : bool
        Apply the barycentric correction (topocentric spectra only).
    location, target, obstime :
        Site (EarthLocation or NRES code), SkyCoord and Time (mid-exposure). Default from the header
        (:data:`HEADER_KEYWORDS`).
    z_b : float, optional
        Barycentric redshift to use instead of computing it (e.g. flux-weighted).
    orders : sequence of int, optional
        Physical orders to use (default all).
    velocity_range : Quantity (2,)
        Search range of the starting CCF.
    continuum_degree : int
        Degree of the multiplicative Legendre continuum per order.
    clip : float
        Rejection threshold (in units of the per-order error, inflated by the robust scatter).
    pixel_clip : float or None
        Template method: per-pixel outlier rejection. After each order's fit, pixels whose residual
        against the fitted model exceeds ``pixel_clip`` times its standard deviation (the pixel's
        sigma times max(1, the order's robust scatter of the normalised residuals)) are left out and
        the order is fitted again, up to ``pixel_clip_iterations`` rounds (a pixel comes back if the
        new fit brings it within the limit). Default :data:`PIXEL_CLIP` (5: Gaussian noise alone
        crosses it at 5.7e-7 of the pixels, ~0.2 of a 67 x 4096 spectrum); None or 0 turns it off.
        The rejected pixels are counted per order in ``orders["n_rejected"]`` and mapped in
        ``meta["pixel_rejected"]`` (bool, (n_order, n_pixel)).
    pixel_clip_iterations : int
        Most rejection rounds per order.
    ccf_step, ccf_half_width : Quantity
        Mask CCF sampling and half window (mask method).
    mask_width : Quantity
        Velocity width of mask holes for masks without widths.
    airvac_formula : {"edlen1966", "ciddor1996"}
    pixel_mean : bool or None
        Template and blocks methods: compare each pixel with the template's exact mean over the pixel
        (from the spline's antiderivative; extracted pixels record a mean) rather than its value at the
        pixel centre. None (default): True, except for templates whose samples are already pixel
        means at the spectrograph's sampling (``template.meta["pixel_integrated"]``: ZEROs built by
        ``Template.from_spectra`` or read by ``read_zero``), which are compared point by point.
    rv_mask : None, True or ndarray of uint16 (n_order, n_pixel)
        Extra pixel flags for this fiber: True computes :func:`nres.rv.rv_mask` with its defaults
        (tellurics, badlams, order edges, blue hook, bleed); an array is used as given (all orders).
    template_variance : bool
        Add the template's variance (when it has one, e.g. a ZERO) to the pixel variance in the fit
        weights and errors (template, ccf, blocks).
    nblock : int
        Blocks per order (method "blocks").
    ccf_oversample : int
        The ccf method's ln(lambda) grid step is the finest pixel step divided by this.
    legacy : bool
        All the original's quirks of the ccf/blocks methods (the options below left at None).
    ccf_engine, ccf_orders, ccf_redshift, block_engine, block_sign, block_error : str or None
        Legacy options (docs/legacy.md); None = the corrected default unless ``legacy``.

    Returns
    -------
    RVResult

    Raises
    ------
    InvalidParameterError
        Bad arguments, a spectrum without wavelengths or variance, a missing header keyword.
    FitError
        No order could be measured.
    """
    if method not in _METHODS:
        msg = f"method: expected one of {_METHODS}, got {method!r}"
        raise InvalidParameterError(msg)
    if pixel_clip is not None and not float(pixel_clip) >= 0:
        msg = f"pixel_clip: expected None or a threshold >= 0 (sigma), got {pixel_clip!r}"
        raise InvalidParameterError(msg)
    if int(pixel_clip_iterations) < 0:
        msg = f"pixel_clip_iterations: expected an integer >= 0, got {pixel_clip_iterations!r}"
        raise InvalidParameterError(msg)
    if method in ("template", "ccf", "blocks") and not isinstance(template, Template):
        msg = f"template: method={method!r} needs a Template, got {type(template).__name__}"
        raise InvalidParameterError(msg)
    opts = _legacy.resolve(
        "nres.rv.measure",
        legacy,
        ccf_engine=ccf_engine,
        ccf_orders=ccf_orders,
        ccf_redshift=ccf_redshift,
        block_engine=block_engine,
        block_sign=block_sign,
        block_error=block_error,
    )
    if method == "mask" and not isinstance(template, LineMask):
        msg = f"template: method='mask' needs a LineMask, got {type(template).__name__}"
        raise InvalidParameterError(msg)
    fi = _pick_fiber(spec, fiber)
    conversions = []
    ref = template
    if ref.wavelength_medium != spec.wavelength_medium:
        ref = ref.to_medium(spec.wavelength_medium, formula=airvac_formula)
        conversions.append(f"{method} medium {template.wavelength_medium}->{spec.wavelength_medium}")
    if ref.wavelength_frame == "topocentric":
        if method == "mask":
            msg = "template: a topocentric line mask is not supported (masks are rest-frame lists)"
            raise InvalidParameterError(msg)
        ref = ref.to_barycentric()
        conversions.append("template frame topocentric->barycentric")
    z_bary, bjd, bary_note = _barycentric(spec, barycentric, z_b, location, target, obstime)
    m, lam, data, var, good, blaze = _order_arrays(spec, fi, orders)
    if rv_mask is not None:
        from .rvmasks import rv_mask as _rv_mask

        extra_flags = _rv_mask(spec, fiber=fiber) if rv_mask is True else np.asarray(rv_mask, FLAG_DTYPE)
        all_orders = np.asarray(spec.orders)
        shape = (all_orders.size, np.shape(spec.data)[-1])
        if extra_flags.shape != shape:
            msg = f"rv_mask: expected shape {shape}, got {extra_flags.shape}"
            raise InvalidParameterError(msg)
        rows = [int(np.flatnonzero(all_orders == mm)[0]) for mm in m]
        good = good & ~flags_to_mask(extra_flags[rows])
    v_range = tuple(velocity_range.to_value(u.m / u.s))
    pm = bool(pixel_mean) if pixel_mean is not None else not getattr(ref, "meta", {}).get("pixel_integrated")
    tvar_fn = _template_variance_fn(ref, template_variance) if isinstance(ref, Template) else None
    extra = {}
    rejected = None
    if method in ("ccf", "blocks"):
        if method == "ccf":
            from .ccf import measure_ccf as run

            kw = {"oversample": int(ccf_oversample)}
        else:
            from .blocks import measure_blocks as run

            kw = {"nblock": int(nblock), "degree": int(continuum_degree), "pixel_mean": pm}
        s, sig, flags, used, mean, err, chi2, v_grid, ccf_vals, extra = run(
            ref,
            m,
            lam,
            data,
            var,
            good,
            blaze,
            v_range=v_range,
            clip=float(clip),
            opts=opts,
            tvar_fn=tvar_fn,
            **kw,
        )
        params = _fit_gaussian(v_grid, ccf_vals, C_M_S * np.expm1(mean), 3000.0)
    elif method == "template":
        s, sig, flags, used, mean, err, chi2, v_grid, ccf_vals, rejected = _measure_template(
            ref,
            lam,
            data,
            var,
            good,
            blaze,
            degree=int(continuum_degree),
            v_range=v_range,
            clip=float(clip),
            pixel_mean=pm,
            pixel_clip=pixel_clip,
            clip_iter=int(pixel_clip_iterations),
            tvar_fn=tvar_fn,
        )
        extra = {"pixel_rejected": rejected, "n_pixels_rejected": int(rejected.sum())}
        params = _fit_gaussian(v_grid, ccf_vals, C_M_S * np.expm1(mean), 3000.0)
    else:
        s, sig, flags, used, mean, err, chi2, v_grid, ccf_vals, params = _measure_mask(
            ref,
            lam,
            data,
            var,
            good,
            blaze,
            degree=int(continuum_degree),
            v_range=v_range,
            clip=float(clip),
            step=ccf_step.to_value(u.m / u.s),
            half_width=ccf_half_width.to_value(u.m / u.s),
            hole=mask_width.to_value(u.m / u.s),
        )
    z_fit = float(np.expm1(mean))
    dz = float(np.exp(mean) * err)
    n_used = int(used.sum())
    emp = dz * np.sqrt(chi2 / (n_used - 1)) if n_used >= 3 else np.nan
    if spec.wavelength_frame == "barycentric":
        z_star = z_fit
        z_obs = observed_z(z_fit, z_bary) if np.isfinite(z_bary) else np.nan
    else:
        z_obs = z_fit
        z_star = barycentric_z(z_fit, z_bary)
    table = QTable()
    table["order"] = m
    table["rv"] = C_M_S * np.expm1(s) * u.m / u.s
    table["rv_err"] = C_M_S * np.exp(s) * sig * u.m / u.s
    w = np.where(used, 1.0 / np.where(used, sig, 1.0) ** 2, 0.0)
    table["weight"] = w / w.sum()
    table["flags"] = flags
    if rejected is not None:
        table["n_rejected"] = rejected.sum(axis=1)
    ms = u.m / u.s
    return RVResult(
        rv=z_star * C_M_S * ms,
        rv_observed=z_obs * C_M_S * ms,
        rv_err_photon=dz * C_M_S * ms,
        rv_err_empirical=emp * C_M_S * ms,
        barycentric_correction=z_bary * C_M_S * ms,
        bjd_tdb=bjd,
        orders=table,
        ccf=_ccf_table(v_grid, ccf_vals, params),
        flags=int(np.bitwise_or.reduce(flags)) if flags.size else 0,
        meta={
            "method": method,
            "fiber": int(np.asarray(spec.fibers)[fi]),
            "conversions": conversions,
            "barycentric": bary_note,
            "z_fit": z_fit,
            "z_b": z_bary,
            "n_orders_used": n_used,
            **({"legacy_options": opts} if method in ("ccf", "blocks") else {}),
            **extra,
        },
    )
