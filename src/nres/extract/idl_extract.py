"""``method="idl"``: the original pipeline's extraction (extract.pro, extlstsq.pro, dymedian.pro).

Per (fiber, order, column) the W = ceil(box_height) pixels of an integer box whose bottom row is
``ROUND(c + 0.5 - W/2)`` (IDL ROUND: half away from zero; c + 0.5 is the original's trace
convention) are fitted by ``a S + b S' + c S''``: S is the block profile interpolated along x,
shifted within the box by the fractional trace offset with the original's 4-tap kernel, S' and S''
its IDL DERIV derivatives. ``a`` is the flux, ``b/a`` (``exdy``) and ``c/a`` (``exdy2``) the shape
terms. Before the fit a cross-dispersion shift per order (linear in the order index, from the
first moments of the brightest star fiber, dymedian.pro) moves the boxes until its median is below
0.1 px.

The original's quirks are legacy options (``legacy=True`` turns on all; docs/legacy.md):

``idl_weights``
    "variance" (default): least-squares weights 1/V, the maximum-likelihood fit; "profile2": the
    original's S^2 / max(V, 1) (flux estimator ~ sum S^3 E/V / sum S^4/V).
``idl_errors``
    "fit" (default): variance of ``a`` propagated through the weighted fit; "box": the original's
    ``sum V`` over the box (its ``specrms`` squared).
``idl_shift_fiber``
    "all" (default): the last residual shift is applied to every fiber's profile; "first": only to
    the shift-reference fiber's.
``idl_shift_reference``
    "star" (default): the brightest non-ThAr fiber measures the shift; "brightest": the brightest
    lit fiber, ThAr included (its total must still exceed the threshold and a star fiber be lit).
``idl_box_edges``
    "flag" (default): a column whose box leaves the frame is NaN and ORDER_EDGE; "clip": the
    original's test (bottom of the lowest-id fiber >= 0 and top of the highest-id fiber <= ny - 1,
    the wrong fibers) with rows off the frame read as the clipped flat index (pixel (0, 0) below,
    the last pixel above) and zeros (flagged ORDER_EDGE) elsewhere.
``idl_profile_anchor``
    "center" (default): block profiles describe their block's centre column; "idl": anchored at the
    block's left edge (IDL REBIN), the last block held beyond its anchor.

Not reproduced: the original indexed images as ``ny * row + x`` (correct only for square images;
this port indexes rows and columns, so windows of any shape work); its residual-outlier count
(``craybadpix``, ``diffrms``: dead code, nothing was rejected); the Sinistro (``fl..`` camera)
last-column copy; exiting the process after 100 shift iterations (here a FitError).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from astropy.table import QTable

from .. import legacy as _legacy
from ..errors import FitError, InvalidParameterError
from ..flags import FLAG_DTYPE, Flag
from ..provenance import record_provenance
from ..spectrum import EchelleSpectrum
from . import _extract_kernels as _k
from .profiles import Profiles

__all__ = ["IDLExtraction", "extract_idl", "dymedian", "idl_round", "idl_median", "LEGACY_OPTIONS"]

_REF = "idl-calib-trace-extract.md"
_OPTIONS = (
    (
        "idl_weights",
        ("variance", "profile2"),
        "profile2",
        "10.9, 16 bug 4",
        "least-squares weights S^2/max(V,1) (estimator sum S^3 E/V / sum S^4/V), not 1/V",
    ),
    (
        "idl_errors",
        ("fit", "box"),
        "box",
        "10.9, 16 bug 3",
        "error = sqrt(sum of the box variance), not the fit's formal error",
    ),
    (
        "idl_shift_fiber",
        ("all", "first"),
        "first",
        "10.7, 16 bug 6",
        "the residual shift dymed applied only to the shift-reference fiber's profile",
    ),
    (
        "idl_shift_reference",
        ("star", "brightest"),
        "brightest",
        "10.4, 16 bug 7",
        "shift-reference fiber = brightest lit fiber, ThAr included",
    ),
    (
        "idl_box_edges",
        ("flag", "clip"),
        "clip",
        "10.3, 16 bugs 8-9",
        "valid columns tested on the wrong fibers; rows off the image read via the clipped flat index",
    ),
    (
        "idl_profile_anchor",
        ("center", "idl"),
        "idl",
        "10.8, 16 bug 5",
        "block profiles anchored at the blocks' left edges (IDL REBIN), last block held",
    ),
)
for _name, _choices, _legacy_value, _sec, _summary in _OPTIONS:
    _legacy.register(
        "extract",
        _name,
        choices=_choices,
        default=_choices[0],
        legacy=_legacy_value,
        reference=f"{_REF} {_sec}",
        summary=_summary,
    )
#: The legacy options of ``extract(method="idl")``.
LEGACY_OPTIONS = tuple(o[0] for o in _OPTIONS)


# ----- IDL semantics ------------------------------------------------------------------------------
def idl_round(x):
    """IDL ROUND: half away from zero, as int64."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def idl_median(v):
    """IDL MEDIAN of a vector: the upper middle element for an even count (``sorted[n // 2]``)."""
    v = np.sort(np.asarray(v, dtype=np.float64).ravel())
    if v.size == 0:
        msg = "idl_median: empty input"
        raise InvalidParameterError(msg)
    return float(v[v.size // 2])


def _quartile_spread(f):
    """quartile.pro: upper minus lower quartile (medians of the halves split at the median)."""
    if f.size < 3:
        return 0.0
    med = idl_median(f)
    lo, hi = f[f < med], f[f >= med]
    q0 = idl_median(lo) if lo.size else float(f[0])
    q1 = idl_median(hi) if hi.size else float(f[-1])
    return q1 - q0


def _lstsq_line(y, xi, w):
    """Weighted straight-line fit (lstsqr.pro with 0/1 weights): (coef, residuals) or None if singular."""
    a = np.array([[np.sum(w), np.sum(w * xi)], [np.sum(w * xi), np.sum(w * xi * xi)]])
    if np.linalg.det(a) == 0.0:
        return None
    coef = np.linalg.solve(a, np.array([np.sum(w * y), np.sum(w * xi * y)]))
    return coef, y - coef[0] - coef[1] * xi


def dymedian(m0, m1, *, box_width=11, skip_low=0.15, skip_high=0.85, clip=5.0):
    """The original's order-dependent cross-dispersion offset from box moments (dymedian.pro).

    Parameters
    ----------
    m0, m1 : ndarray, shape (n_order, nx)
        Box sum and first moment (px from the box centre) of the reference fiber per order (in
        increasing order index) and column.
    box_width : int
        W; columns with ``|m1| > W/2`` are ignored.
    skip_low, skip_high : float
        Fractions of the orders skipped at the low and high ends (orders ``int(n 0.15 + 1)`` to
        ``int(n 0.85) - 1`` are used).
    clip : float
        Residuals beyond ``clip`` pseudo-sigma (interquartile range / 1.35) are dropped before the
        refit.

    Returns
    -------
    ndarray, shape (n_order,)
        ``alpha + beta (i - n_order / 2)``; zeros when five or fewer columns (or at most 100 before
        clipping) remain, as the original.
    """
    m0 = np.asarray(m0, dtype=np.float64)
    m1 = np.asarray(m1, dtype=np.float64)
    nord, nx = m0.shape
    jbot = int(nord * skip_low + 1)
    jtop = int(nord * skip_high)
    good = np.zeros((nord, nx), dtype=bool)
    for j in range(jbot, min(jtop, nord)):
        good[j] = (m0[j] >= 0.1 * idl_median(m0[j])) & (np.abs(m1[j]) <= box_width / 2.0)
    iord = np.arange(nord) - nord / 2.0
    xi = np.repeat(iord, nx)
    y = m1.ravel()
    w = good.ravel().astype(np.float64)
    n_good = int(w.sum())
    zeros = np.zeros(nord)
    if n_good <= 5:
        return zeros
    first = _lstsq_line(y, xi, w)
    if first is None:
        return zeros
    _, resid = first
    sig = _quartile_spread(resid[w > 0]) / 1.35
    w[(w == 0) | (np.abs(resid) >= clip * sig)] = 0.0
    second = _lstsq_line(y, xi, w)
    if second is None or n_good <= 100:
        return zeros
    coef, _ = second
    return coef[0] + coef[1] * iord


# ----- the extraction -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class IDLExtraction:
    """Everything ``extract_idl`` measures, in the original's terms.

    Attributes
    ----------
    spectrum : EchelleSpectrum
        Flux ``a`` (fiber, order, pixel), its variance (``idl_errors``), flags, ``meta["EXTRACTION"]``.
    exdy, exdy2 : ndarray, shape (n_fiber, n_order, nx)
        ``b/a`` and ``c/a`` where ``a > 0`` (else the raw ``b``, ``c``); exdy ~ minus the light's
        shift from the model profile (px).
    width : ndarray, shape (n_fiber, n_order, nx)
        sqrt of the second moment about the box centre (the original's ``specwid``).
    box_error : ndarray, shape (n_fiber, n_order, nx)
        sqrt of the summed box variance (the original's ``specrms``).
    order_shift : ndarray, shape (n_order,)
        Accumulated box shift per order (px, the original's ``dymed0``); ``tracdy`` its IDL median.
    residual_shift : ndarray, shape (n_order,)
        Last residual shift (``dymed``) applied to the profiles (see ``idl_shift_fiber``).
    reference_fiber : int or None
        Fiber that measured the shift (None: no shift estimation).
    n_shift_iterations : int
    """

    spectrum: EchelleSpectrum
    exdy: np.ndarray
    exdy2: np.ndarray
    width: np.ndarray
    box_error: np.ndarray
    order_shift: np.ndarray
    residual_shift: np.ndarray
    tracdy: float
    reference_fiber: int | None
    n_shift_iterations: int


def _object_words(meta, fibers):
    words = None
    if meta is not None and "OBJECTS" in meta:
        words = [w.strip().upper() for w in str(meta["OBJECTS"]).split("&")]
    if words is None or len(words) != 3:
        return {int(f): "STAR" for f in fibers}
    return {int(f): words[int(f)] for f in fibers}


def _box_profiles(profile, sel, w):
    """(ntr, nblock, W) box profiles (sum 1) centred on row (W - 1)/2, from any Profiles grid."""
    prof = profile.for_traces(sel)
    dy_box = np.arange(w) - (w - 1) / 2.0
    if profile.dy.size == w and np.allclose(profile.dy, dy_box, atol=1e-9):
        return np.ascontiguousarray(prof)
    # a fine-grid profile: pixel values at the box rows, renormalised over the box
    out = np.empty(prof.shape[:2] + (w,))
    for t in range(prof.shape[0]):
        for b in range(prof.shape[1]):
            out[t, b] = np.interp(dy_box, profile.dy, prof[t, b], left=0.0, right=0.0)
    tot = out.sum(axis=2, keepdims=True)
    return np.ascontiguousarray(np.divide(out, tot, out=np.zeros_like(out), where=tot > 0))


def _read_boxes(data, var, good, bottom, w, clip):
    """Box pixels (ntr, W, nx) and a per-(trace, column) in-frame flag."""
    ny, nx = data.shape
    rows = bottom[:, None, :] + np.arange(w)[None, :, None]
    cols = np.broadcast_to(np.arange(nx), rows.shape)
    inside = (rows >= 0) & (rows < ny)
    if clip:
        # the original's flat index ny * row + x, clipped to the image
        flat = np.clip(rows * nx + cols, 0, ny * nx - 1)
        e = data.ravel()[flat]
        v = var.ravel()[flat]
        return np.ascontiguousarray(e), np.ascontiguousarray(v), inside.all(axis=1)
    rr = np.clip(rows, 0, ny - 1)
    ok = inside & good[rr, cols]
    e = np.where(ok, data[rr, cols], 0.0)
    v = np.where(ok, var[rr, cols], 0.0)
    return np.ascontiguousarray(e), np.ascontiguousarray(v), ok.all(axis=1)


def _moments(e, w):
    """The original's box moments: sum, first moment and sqrt second moment about the box centre."""
    yy = (np.arange(w) - (w - 1) / 2.0)[None, :, None]
    m0 = e.sum(axis=1)
    s1 = (e * yy).sum(axis=1)
    s2 = (e * yy * yy).sum(axis=1)
    pos = m0 > 0
    safe = np.where(pos, m0, 1.0)
    m1 = np.where(pos, s1 / safe, s1)
    m2 = np.where(pos, np.sqrt(np.maximum(s2 / safe, 0.0)), s2)
    return m0, m1, m2


def extract_idl(
    frame,
    traces,
    *,
    profile,
    fibers=None,
    brightness=200.0,
    shift=True,
    shift_tolerance=0.1,
    max_shift_iterations=100,
    idl_weights=None,
    idl_errors=None,
    idl_shift_fiber=None,
    idl_shift_reference=None,
    idl_box_edges=None,
    idl_profile_anchor=None,
    legacy=False,
) -> IDLExtraction:
    """The original's optimal extraction (profile + derivative fit, shift loop), ported.

    Parameters
    ----------
    frame : CCDData
        Background-free image (ny, nx) with its variance (the original's ``varmap``), possibly a
        window (origin in ``meta``); ``meta["OBJECTS"]`` names ThAr fibers (``thar``) and stars.
    traces : Traces
        Full-detector traces; the box has ``W = ceil(box_height)`` rows.
    profile : Profiles
        Block profiles; either pixel profiles at ``dy = k - (W - 1)/2`` (as read by
        :func:`nres.io.idl_trace_fits.read_idl_trace`) or a fine grid (:func:`measure_profiles`),
        then sampled at the box rows and renormalised over the box.
    fibers : sequence of int or None
        Fibers to extract; default the lit fibers of OBJECTS (else all fibers of ``traces``).
    brightness : float
        Shift estimation runs when the reference fiber's total box flux exceeds
        ``brightness * nx * n_order`` (the original: 200 ADU per box column).
    shift : bool
        Allow the cross-dispersion shift loop at all.
    shift_tolerance, max_shift_iterations : float, int
        The loop stops when ``|median(dymed)| <= shift_tolerance`` px; more iterations raise FitError.
    idl_weights, idl_errors, idl_shift_fiber, idl_shift_reference, idl_box_edges, idl_profile_anchor
        Legacy options (module docstring; ``None`` = corrected default unless ``legacy``).
    legacy : bool
        All of the original's quirks (reproduces its archived output).

    Returns
    -------
    IDLExtraction
        ``spectrum`` (fiber, order, nx) plus the original's diagnostics.

    Raises
    ------
    InvalidParameterError
        Bad profile, fibers or options.
    FitError
        The shift loop did not converge.
    """
    opts = _legacy.resolve(
        "extract",
        legacy,
        idl_weights=idl_weights,
        idl_errors=idl_errors,
        idl_shift_fiber=idl_shift_fiber,
        idl_shift_reference=idl_shift_reference,
        idl_box_edges=idl_box_edges,
        idl_profile_anchor=idl_profile_anchor,
    )
    opts = {k: v for k, v in opts.items() if k in LEGACY_OPTIONS}
    if not isinstance(profile, Profiles):
        msg = "extract(method='idl'): needs profile=Profiles (from nres.io.idl_trace_fits.read_idl_trace "
        msg += "or measure_profiles)"
        raise InvalidParameterError(msg)
    # the lit-fiber rule and the spectrum's layout are shared with the other methods
    from .extraction import _frame_traces, _planes, _row_medians, _spectrum

    sel, data, var, good, meta, cen, xfull = _frame_traces(
        frame, traces, fibers, "extract(method='idl')", nuisance=False
    )
    ny, nx = data.shape
    w = int(np.ceil(sel.box_height))
    fib_ids, ord_ids, plane = _planes(sel, nx)
    oi = np.searchsorted(ord_ids, sel.orders)
    words = _object_words(meta, fib_ids)
    prof = _box_profiles(profile, sel, w)
    anchor = "linear" if opts["idl_profile_anchor"] == "center" else "idl_rebin"
    blk_k, blk_f = replace(profile, interpolation=anchor).block_weights(xfull)
    if profile.block_x.size == 1:
        prof = np.ascontiguousarray(np.repeat(prof, 2, axis=1))
    clip = opts["idl_box_edges"] == "clip"
    trace_ok = np.isfinite(cen)
    cen0 = np.where(trace_ok, cen, 0.0)

    def boxes(dy0):
        # the original's trace convention is c + 0.5; its box bottom ROUND(c + 0.5 + dy0 - W/2)
        bottom = idl_round(cen0 + 0.5 + dy0[oi][:, None] - w / 2.0)
        e, v, inside = _read_boxes(data, var, good, bottom, w, clip)
        if clip:
            # per order: bottom of the lowest-id fiber >= 0, top of the highest-id fiber <= ny - 1
            valid = np.zeros((len(sel), nx), dtype=bool)
            for o in range(ord_ids.size):
                rows = np.flatnonzero(oi == o)
                lo, hi = rows[np.argmin(sel.fibers[rows])], rows[np.argmax(sel.fibers[rows])]
                ok = (bottom[lo] >= 0) & (bottom[hi] + w - 1 <= ny - 1)
                valid[rows] = ok[None, :]
            e = np.where(valid[:, None, :], e, 0.0)
            v = np.where(valid[:, None, :], v, 0.0)
        else:
            valid = inside & trace_ok
        return bottom, np.ascontiguousarray(e), np.ascontiguousarray(v), valid

    # shift-reference fiber (10.4)
    dy0 = np.zeros(ord_ids.size)
    bottom, e, v, valid = boxes(dy0)
    stars = [f for f in fib_ids if words[int(f)] not in ("THAR", "NONE")]
    bright = {int(f): float(e[sel.fibers == f].sum()) for f in fib_ids}
    ref = None
    if shift and stars:
        cands = stars if opts["idl_shift_reference"] == "star" else list(fib_ids)
        best = max(cands, key=lambda f: bright[int(f)])
        if bright[int(best)] > brightness * nx * ord_ids.size:
            ref = int(best)
    dymed = np.zeros(ord_ids.size)
    n_iter = 0
    if ref is not None:
        rows = np.flatnonzero(sel.fibers == ref)
        while True:
            m0, m1, _ = _moments(e[rows], w)
            m0_o = np.zeros((ord_ids.size, nx))
            m1_o = np.zeros((ord_ids.size, nx))
            m0_o[oi[rows]] = m0
            m1_o[oi[rows]] = m1
            dymed = dymedian(m0_o, m1_o, box_width=w)
            if abs(idl_median(dymed)) <= shift_tolerance:
                break
            n_iter += 1
            if n_iter > max_shift_iterations:
                msg = (
                    f"extract(method='idl'): shift loop did not converge in {max_shift_iterations} iterations"
                )
                raise FitError(msg)
            dy0 = dy0 + dymed
            bottom, e, v, valid = boxes(dy0)
    tracdy = idl_median(dy0)
    # sub-pixel offset of the profile in its box (10.7)
    orddy = cen0 + 0.5 + dy0[oi][:, None] - bottom - w / 2.0
    applies = np.ones(len(sel), dtype=bool)
    if opts["idl_shift_fiber"] == "first":
        applies = sel.fibers == ref
    orddy = np.ascontiguousarray(orddy + np.where(applies, 1.0, 0.0)[:, None] * dymed[oi][:, None])
    _, _, m2 = _moments(e, w)
    a, b, c, var_fit, singular = _k._idl_fit(
        e,
        v,
        prof,
        np.ascontiguousarray(blk_k, dtype=np.int64),
        np.ascontiguousarray(blk_f, dtype=np.float64),
        orddy,
        np.ascontiguousarray(valid),
        opts["idl_weights"] == "profile2",
    )
    pos = a > 0
    safe = np.where(pos, a, 1.0)
    exdy = np.where(pos, b / safe, b)
    exdy2 = np.where(pos, c / safe, c)
    box_var = v.sum(axis=1)
    variance = box_var if opts["idl_errors"] == "box" else var_fit

    flags = np.zeros((len(sel), nx), dtype=FLAG_DTYPE)
    flags[~valid] |= FLAG_DTYPE(Flag.ORDER_EDGE)
    flags[singular & valid] |= FLAG_DTYPE(Flag.NO_WEIGHT)
    if not clip:
        a = np.where(valid & ~singular, a, np.nan)
        variance = np.where(valid & ~singular, variance, np.nan)

    table = QTable()
    table["fiber"] = sel.fibers
    table["order"] = sel.orders
    use = valid & ~singular
    table["n_columns"] = use.sum(axis=1)
    table["dy"] = -_row_medians(exdy, use)  # light offset from the model profile (exdy ~ -shift)
    table["width"] = _row_medians(m2, use)
    table["box_shift"] = dy0[oi]
    table["n_rejected"] = np.zeros(len(sel), dtype=np.int64)
    out_meta = dict(meta) if meta is not None else {}
    record_provenance(out_meta, "nres.extract.extract", method="idl", box_width=w, **opts)
    out_meta["TRACDY"] = tracdy
    out_meta["EXTRACTION"] = table
    spec = _spectrum(sel, xfull, a, variance, flags, out_meta)
    return IDLExtraction(
        spectrum=spec,
        exdy=plane(exdy),
        exdy2=plane(exdy2),
        width=plane(m2),
        box_error=plane(np.sqrt(np.maximum(box_var, 0.0))),
        order_shift=dy0,
        residual_shift=dymed,
        tracdy=tracdy,
        reference_fiber=ref,
        n_shift_iterations=n_iter,
    )
