"""Box and optimal extraction of every lit (fiber, order) into an :class:`~nres.spectrum.EchelleSpectrum`.

``method="optimal"`` is Horne (1986) with the *model* variance
``V = read_noise^2 + dark + background + f P`` (iterated ``n_iter`` times from the box estimate; the
data-derived variance is biased low at low flux) and iterative rejection of the worst pixel beyond
``kappa`` sigma (cosmic rays), at most ``max_reject`` per column. The profile P must be normalised
over its full wings (:func:`~nres.extract.measure_profiles`), so the result is the column's total flux.

``method="box"`` is the plain sum over the aperture ``[c - h/2, c + h/2]`` (h = ``traces.box_height``);
edge pixels count with the fraction of their height inside the aperture. Aperture losses are the
same in a target and its flat, so box ratios are unbiased.

``method="idl"`` is the original's profile + derivative fit with its cross-dispersion shift loop
(:func:`nres.extract.idl_extract.extract_idl`; its quirks are legacy options, ``legacy=True`` for all).
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import VarianceUncertainty
from astropy.table import QTable

from ..errors import InvalidParameterError
from ..flags import FLAG_DTYPE, Flag
from ..provenance import record_provenance
from ..spectrum import EchelleSpectrum
from . import _extract_kernels as _k
from .identify import lit_fibers
from .profiles import Profiles, _frame_arrays, _window_centers

__all__ = ["extract", "trace_model", "METHODS"]

#: Extraction methods.
METHODS = ("optimal", "box", "idl")

#: keywords passed on to extract_idl with method="idl"
_IDL_KEYWORDS = ("brightness", "shift", "shift_tolerance", "max_shift_iterations", "legacy")


def _read_noise(frame, read_noise):
    if read_noise is not None:
        return float(read_noise)
    meta = getattr(frame, "meta", None) or {}
    if "RDNOISE" in meta:
        return float(meta["RDNOISE"])
    msg = "extract: read_noise not given and the frame's meta has no RDNOISE (electrons)"
    raise InvalidParameterError(msg)


def _select(traces, frame, fibers):
    if fibers is None:
        meta = getattr(frame, "meta", None)
        fibers = lit_fibers(meta) if meta is not None and "OBJECTS" in meta else np.unique(traces.fibers)
    sel = traces.select(fibers=list(np.atleast_1d(fibers)))
    if len(sel) == 0:
        msg = f"extract: traces has no trace of fibers {list(np.atleast_1d(fibers))}"
        raise InvalidParameterError(msg)
    return sel


def _frame_traces(frame, traces, fibers, name, *, nuisance=True):
    """What every extraction method starts from: the selected traces (:func:`_select`; without the
    nuisance traces if ``nuisance`` is False), the frame's data, variance and good pixels ((ny, nx)
    float64/bool), its meta, and the traces' centres in window rows (n, nx; NaN outside x_valid)
    with the full-detector x of the columns."""
    sel = _select(traces, frame, fibers)
    if not nuisance:
        sel = sel[np.flatnonzero(~sel.nuisance)]
        if len(sel) == 0:
            msg = f"{name}: traces has only nuisance traces of the fibers to extract"
            raise InvalidParameterError(msg)
    data, var, good = _frame_arrays(frame, f"{name}: frame")
    meta = getattr(frame, "meta", None)
    cen, xfull = _window_centers(sel, data.shape, meta)
    return sel, data, var, good, meta, cen, xfull


def _grid(profile):
    dy = profile.dy
    if dy.size < 2:
        msg = "extract: profile must have at least two dy samples"
        raise InvalidParameterError(msg)
    step = float(dy[1] - dy[0])
    if not np.allclose(np.diff(dy), step, rtol=1e-9, atol=1e-12):
        msg = "extract: profile.dy must be uniformly spaced"
        raise InvalidParameterError(msg)
    return float(dy[0]), step


def _variance_floor(rn, dark, background, shape, name):
    """Model variance floor ``rn^2 + dark + max(background, 0)`` (e-^2): (1, 1) when it is one value
    for all pixels, else ``shape``; and the background as float64 (None if not given)."""
    dark = np.asarray(dark, dtype=np.float64)
    if background is None and dark.ndim == 0:
        return np.full((1, 1), rn * rn + float(dark)), None
    var0 = np.broadcast_to(rn * rn + dark, shape)
    bkg = None
    if background is not None:
        bkg = np.asarray(background, dtype=np.float64)
        if bkg.shape != shape:
            msg = f"{name}: background must have the frame's shape {shape}, got {bkg.shape}"
            raise InvalidParameterError(msg)
        var0 = var0 + np.maximum(bkg, 0.0)
    return np.ascontiguousarray(var0), bkg


def _trace_geometry(sel, profile, cen, xfull, half):
    """The arguments the extraction kernels share, in their order: ``(centers, prof, blk_k, blk_f,
    grid0, gstep, half)``; without a profile a zero one of one block (the box sums ignore it)."""
    if profile is not None:
        prof = np.ascontiguousarray(profile.for_traces(sel))
        grid0, gstep = _grid(profile)
        blk_k, blk_f = profile.block_weights(xfull)
    else:
        nx = cen.shape[1]
        prof, grid0, gstep = np.zeros((len(sel), 1, 2)), 0.0, 1.0
        blk_k, blk_f = np.zeros(nx, dtype=np.int64), np.zeros(nx)
    blk_k = np.ascontiguousarray(blk_k, dtype=np.int64)
    blk_f = np.ascontiguousarray(blk_f, dtype=np.float64)
    return cen, prof, blk_k, blk_f, grid0, gstep, float(half)


def _planes(sel, nx):
    """Fiber ids, order ids and ``plane(values, fill=nan, dtype=float64)``, which puts per-trace rows
    (len(sel), nx) into a (n_fiber, n_order, nx) array holding ``fill`` where there is no trace."""
    fib_ids, ord_ids = np.unique(sel.fibers), np.unique(sel.orders)
    fi, oi = np.searchsorted(fib_ids, sel.fibers), np.searchsorted(ord_ids, sel.orders)

    def plane(values, fill=np.nan, dtype=np.float64):
        out = np.full((fib_ids.size, ord_ids.size, nx), fill, dtype=dtype)
        out[fi, oi] = values
        return out

    return fib_ids, ord_ids, plane


def _spectrum(sel, xfull, values, variance, flags, meta):
    """EchelleSpectrum of per-trace rows (len(sel), nx): (fiber, order) pairs without a trace are NaN
    and OFF_DETECTOR; a NaN variance is stored as 0."""
    fib_ids, ord_ids, plane = _planes(sel, xfull.size)
    return EchelleSpectrum(
        plane(values),
        uncertainty=VarianceUncertainty(np.nan_to_num(plane(variance), nan=0.0)),
        flags=plane(flags, fill=int(Flag.OFF_DETECTOR), dtype=FLAG_DTYPE),
        orders=ord_ids,
        fibers=fib_ids,
        pixel=xfull,
        meta=meta,
    )


def _row_medians(values, use):
    """Median of each row of ``values`` (n, nx) over its ``use`` columns; NaN for a row with none."""
    with np.errstate(all="ignore"):
        return np.array(
            [np.median(values[t, use[t]]) if use[t].any() else np.nan for t in range(len(values))]
        )


def _unmodelled_light(cen, half, ny, extent):
    """(n, nx) bool: columns where another trace's aperture is wholly off the frame (no flux can be
    fitted, so its light is not modelled) while its profile (``extent`` px) reaches the trace's
    aperture: at a window's edge, the light of an order just beyond it (a ThAr fiber's wing in the
    star's aperture shifted the star's lines by up to 1.7 millipixel in a simulated window)."""
    off = np.isfinite(cen) & ((cen + half < -0.5) | (cen - half > ny - 0.5))
    out = np.zeros(cen.shape, dtype=bool)
    for u in np.flatnonzero(off.any(axis=1)):
        with np.errstate(invalid="ignore"):
            near = np.abs(cen - cen[u]) < extent + half + 0.5
        near[u] = False
        out |= near & off[u]
    return out


def _bleed_columns(frame_flags, cen, half, thar_rows, margin):
    """Columns (per ThAr trace) whose aperture holds a SATURATED or BLEED pixel, dilated by margin."""
    nx = cen.shape[1]
    out = np.zeros((len(thar_rows), nx), dtype=bool)
    if frame_flags is None or len(thar_rows) == 0:
        return out
    bad_bits = np.uint16(int(Flag.SATURATED | Flag.BLEED))
    yy, xx = np.nonzero((np.asarray(frame_flags) & bad_bits) != 0)
    if yy.size == 0:
        return out
    for r, t in enumerate(thar_rows):
        c = cen[t, xx]
        inside = np.isfinite(c) & (yy >= np.floor(c - half + 0.5)) & (yy <= np.ceil(c + half - 0.5))
        cols = np.zeros(nx, dtype=bool)
        cols[xx[inside]] = True
        if margin > 0 and cols.any():
            cols = np.convolve(cols.astype(float), np.ones(2 * margin + 1), mode="same") > 0
        out[r] = cols
    return out


def extract(
    frame,
    traces,
    *,
    profile=None,
    method="optimal",
    fibers=None,
    read_noise=None,
    dark=0.0,
    background=None,
    n_iter=3,
    kappa=5.0,
    max_reject=4,
    reject=True,
    thar_fiber=1,
    bleed_margin=3,
    max_rejected_weight=0.3,
    return_rejected=False,
    joint=True,
    **idl_options,
):
    """Extract every lit (fiber, order) of a frame.

    Parameters
    ----------
    frame : CCDData
        Image in electrons (scattered light already subtracted, see
        :func:`~nres.extract.subtract_scattered_light`), shape (ny, nx), possibly a window
        (origin in ``meta``). Its mask and flags exclude pixels; its variance gives the box errors.
    traces : Traces
        Traces in full-detector coordinates; the aperture height is ``traces.box_height``.
    profile : Profiles or None
        Normalised profiles (:func:`measure_profiles`); required by "optimal" and "idl".
    method : {"optimal", "box", "idl"}
    fibers : sequence of int or None
        Fibers to extract; default the lit fibers of ``meta["OBJECTS"]`` (else every fiber of traces).
    read_noise : float or None
        Read noise (e-); default ``meta["RDNOISE"]``.
    dark : float or ndarray (ny, nx)
        Dark electrons per pixel of this exposure (model variance only).
    background : ndarray (ny, nx) or None
        The scattered light that was subtracted (e-; model variance only, negative values count 0).
    n_iter : int
        Model-variance iterations per fit (>= 1; 3 by default).
    kappa : float
        Rejection threshold in sigma of the model variance.
    max_reject : int
        Most pixels rejected per column; ``reject=False`` sets it to 0.
    thar_fiber : int
        Fiber whose saturated/bleeding lines flag the other fibers of the same order (Flag.BLEED),
        over the columns of the hit dilated by ``bleed_margin``.
    max_rejected_weight : float
        A column whose rejected pixels carry more than this fraction of the aperture's profile weight
        is flagged COSMIC_RAY (positive outliers) or OUTLIER (negative ones).
    return_rejected : bool
        Also return the boolean (ny, nx) map of rejected pixels.
    joint : bool
        With a profile: fit the fluxes of all extracted traces together in each column, so light
        in a trace's pixels from its neighbours' profile wings is modelled, not absorbed (default).
        "optimal" then returns each trace's own flux; "box" subtracts the neighbours' modelled
        light from the aperture sum. Traces whose profiles do not reach each other give exactly
        the single-trace results. ``joint=False``: the single-trace Horne fit and the plain box.
    **idl_options
        With ``method="idl"`` only: ``brightness, shift, shift_tolerance, max_shift_iterations,
        legacy`` and the legacy options ``idl_weights, idl_errors, idl_shift_fiber,
        idl_shift_reference, idl_box_edges, idl_profile_anchor`` of
        :func:`~nres.extract.idl_extract.extract_idl` (which also returns the original's diagnostics).

    Returns
    -------
    EchelleSpectrum
        data (n_fiber, n_order, nx) in electrons, variance, flags; ``pixel`` the full-detector columns;
        nuisance traces (``traces.nuisance``) take part in the fits but are not in it. With a joint
        fit, ORDER_EDGE also flags columns where another trace's aperture is wholly off the frame
        (no flux can be fitted for it) while its profile reaches this aperture.
        ``meta["EXTRACTION"]`` a QTable per (fiber, order): ``fiber, order, n_columns, dy`` (median
        light centroid minus the profile's, px; NaN for box), ``width`` (median rms width, px),
        ``n_rejected`` (pixels), ``n_flagged`` (columns flagged COSMIC_RAY/OUTLIER), ``n_bleed``.
    rejected : ndarray of bool, shape (ny, nx)
        Only with ``return_rejected=True``.
    """
    if method not in METHODS:
        msg = f"extract: method must be one of {METHODS}, got {method!r}"
        raise InvalidParameterError(msg)
    from .idl_extract import LEGACY_OPTIONS, extract_idl

    allowed = (*_IDL_KEYWORDS, *LEGACY_OPTIONS) if method == "idl" else ()
    unknown = sorted(set(idl_options) - set(allowed))
    if unknown:
        msg = f"extract: unknown option(s) {unknown} for method={method!r}"
        raise InvalidParameterError(msg)
    if method == "idl":
        return extract_idl(frame, traces, profile=profile, fibers=fibers, **idl_options).spectrum
    optimal = method == "optimal"
    if optimal and not isinstance(profile, Profiles):
        msg = "extract: method='optimal' needs profile=Profiles (see nres.extract.measure_profiles)"
        raise InvalidParameterError(msg)
    if profile is not None and not isinstance(profile, Profiles):
        msg = f"extract: profile must be a Profiles or None, got {type(profile).__name__}"
        raise InvalidParameterError(msg)
    if int(n_iter) < 1 or not kappa > 0 or int(max_reject) < 0:
        msg = f"extract: need n_iter >= 1, kappa > 0, max_reject >= 0; got {n_iter}, {kappa}, {max_reject}"
        raise InvalidParameterError(msg)
    # the joint fit runs for optimal extraction, and for box extraction given a profile (to remove
    # the neighbours' light from the aperture)
    fit_joint = bool(joint) and profile is not None
    sel, dataT, varT, goodT, meta, cen, xfull = _frame_traces(frame, traces, fibers, "extract")
    ny, nx = dataT.shape
    half = 0.5 * sel.box_height
    rn = _read_noise(frame, read_noise) if (optimal or fit_joint) else 0.0
    var0T, _ = _variance_floor(rn, dark, background, (ny, nx), "extract")
    geom = _trace_geometry(sel, profile, cen, xfull, half)
    prof = geom[1]
    rejT = np.zeros((ny, nx), dtype=np.bool_)
    nmax = int(max_reject) if reject else 0
    single_optimal = optimal and not fit_joint
    flux, fvar, box, bvar, m1, m2, pcov, nrej, status = _k._extract(
        dataT, varT, var0T, goodT, *geom, single_optimal, int(n_iter), float(kappa), nmax, rejT
    )
    contam = own = None
    if fit_joint:
        # traces off the frame or outside x_valid (box status) keep their place in the fit but report NaN
        flux, fvar, pcov, contam, own, nrej, jstatus = _k._joint_extract(
            dataT, var0T, goodT, *geom, int(n_iter), float(kappa), nmax, rejT
        )
        edge = (status & (_k.ST_EDGE | _k.ST_NO_WEIGHT)) != 0
        status |= jstatus if optimal else 0
        for arr in (flux, fvar, contam, own):
            arr[edge] = np.nan
        if not optimal:
            # box sum minus the other traces' model light in the aperture
            box = box - contam
    val, var = (flux, fvar) if optimal else (box, bvar)

    flags = np.zeros((len(sel), nx), dtype=FLAG_DTYPE)
    flags[(status & _k.ST_EDGE) != 0] |= FLAG_DTYPE(Flag.ORDER_EDGE)
    flags[(status & _k.ST_NO_WEIGHT) != 0] |= FLAG_DTYPE(Flag.NO_WEIGHT)
    if not optimal:
        flags[(status & _k.ST_MASKED) != 0] |= FLAG_DTYPE(Flag.BAD_PIXEL)
    else:
        lost = 1.0 - pcov
        flags[(nrej % 1000 > 0) & (lost > max_rejected_weight)] |= FLAG_DTYPE(Flag.COSMIC_RAY)
        flags[(nrej >= 1000) & (lost > max_rejected_weight)] |= FLAG_DTYPE(Flag.OUTLIER)
        flags[(pcov > 0) & (pcov < 1.0 - max_rejected_weight) & (nrej == 0)] |= FLAG_DTYPE(Flag.BAD_PIXEL)
    if fit_joint:
        unmodelled = _unmodelled_light(cen, half, ny, float(np.max(np.abs(profile.dy))))
        flags[unmodelled] |= FLAG_DTYPE(Flag.ORDER_EDGE)

    # star-fiber columns next to saturated/bleeding ThAr lines of the same order
    frame_flags = getattr(frame, "flags", None)
    thar_rows = np.flatnonzero(sel.fibers == thar_fiber)
    bleed = _bleed_columns(frame_flags, cen, half, thar_rows, int(bleed_margin))
    n_bleed = np.zeros(len(sel), dtype=np.int64)
    for r, t in enumerate(thar_rows):
        others = np.flatnonzero((sel.orders == sel.orders[t]) & (sel.fibers != thar_fiber))
        for o in others:
            flags[o, bleed[r]] |= FLAG_DTYPE(Flag.BLEED)
            n_bleed[o] = int(bleed[r].sum())

    # nuisance traces (orders beyond a window's edge) took part in the fits: their light is modelled,
    # but they are not extracted
    if sel.nuisance.any():
        rows = np.flatnonzero(~sel.nuisance)
        if rows.size == 0:
            msg = "extract: traces has only nuisance traces of the fibers to extract"
            raise InvalidParameterError(msg)
        sel, prof, val, var, flags, m1, m2, nrej, n_bleed = (
            a[rows] for a in (sel, prof, val, var, flags, m1, m2, nrej, n_bleed)
        )
        contam, own = (None, None) if contam is None else (contam[rows], own[rows])
    # per-trace diagnostics; the profile's own centroid is subtracted from the light's
    pc = np.zeros(len(sel))
    if optimal:
        dy = profile.dy
        w = prof.mean(axis=1)
        inside = np.abs(dy) <= half
        num = (w[:, inside] * dy[inside]).sum(axis=1)
        den = w[:, inside].sum(axis=1)
        pc = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    good_col = np.isfinite(m1)
    dy_med = _row_medians(m1, good_col)
    wid_med = _row_medians(m2, good_col)
    table = QTable()
    table["fiber"] = sel.fibers
    table["order"] = sel.orders
    table["n_columns"] = np.isfinite(val).sum(axis=1)
    table["dy"] = dy_med - pc if optimal else np.full(len(sel), np.nan)
    table["centroid"] = dy_med
    table["width"] = wid_med
    table["n_rejected"] = (nrej % 1000).sum(axis=1) + (nrej // 1000).sum(axis=1)
    table["n_flagged"] = ((flags & FLAG_DTYPE(Flag.COSMIC_RAY | Flag.OUTLIER)) != 0).sum(axis=1)
    table["n_bleed"] = n_bleed
    # light of the neighbouring traces' profiles inside each aperture relative to the trace's own
    # light there (NaN without a joint fit): flux-weighted over the order, and the largest over the
    # columns with at least 10 % of the order's peak own light; the plain box carries it in full
    if contam is not None:
        ok = np.isfinite(contam) & np.isfinite(own)
        c_sum = np.where(ok, contam, 0.0).sum(axis=1)
        o_sum = np.where(ok, own, 0.0).sum(axis=1)
        table["contamination"] = np.divide(c_sum, o_sum, out=np.full(len(sel), np.nan), where=o_sum > 0)
        cmax = np.full(len(sel), np.nan)
        for t in range(len(sel)):
            if ok[t].any():
                bright = ok[t] & (own[t] >= 0.1 * np.max(own[t, ok[t]])) & (own[t] > 0)
                if bright.any():
                    cmax[t] = np.max(np.abs(contam[t, bright]) / own[t, bright])
        table["contamination_max"] = cmax
        table["overlap"] = np.array([bool(np.any(contam[t, ok[t]] != 0.0)) for t in range(len(sel))])
    else:
        table["contamination"] = np.full(len(sel), np.nan)
        table["contamination_max"] = np.full(len(sel), np.nan)
        table["overlap"] = np.zeros(len(sel), dtype=bool)

    out_meta = dict(meta) if meta is not None else {}
    record_provenance(
        out_meta,
        "nres.extract.extract",
        method=method,
        n_iter=int(n_iter),
        kappa=float(kappa),
        max_reject=nmax,
        box_height=float(sel.box_height),
        read_noise=rn,
        joint=fit_joint,
    )
    out_meta["EXTRACTION"] = table
    # an infinite variance is stored as 0 like a NaN one
    spec = _spectrum(sel, xfull, val, np.where(np.isfinite(var), var, np.nan), flags, out_meta)
    if return_rejected:
        return spec, rejT
    return spec


def trace_model(
    frame, traces, *, profile, fibers=None, background=None, read_noise=None, n_iter=3, kappa=5.0
):
    """Model image of the lit traces: each one's joint optimal flux times its profile.

    Parameters
    ----------
    frame : CCDData
        Image in electrons (ny, nx), possibly a window; the fluxes are fitted to
        ``frame - background``.
    traces : Traces
        Traces (full-detector coordinates); those of ``fibers`` are modelled.
    profile : Profiles
        Normalised profiles; the model reaches as far as their ``dy`` grid.
    fibers : sequence of int or None
        Default the lit fibers of ``meta["OBJECTS"]``.
    background : ndarray (ny, nx) or None
        Scattered light to remove before the fit (and counted in the model variance).
    read_noise : float or None
        Read noise (e-); default ``meta["RDNOISE"]``.
    n_iter, kappa : int, float
        As :func:`extract` (up to 4 outliers per trace and column are rejected).

    Returns
    -------
    ndarray, shape (ny, nx)
        Electrons from the traces' profiles (wings included) at every pixel; columns where a trace
        has no flux (off the frame, no weight) contribute nothing for that trace.
    """
    if not isinstance(profile, Profiles):
        msg = "trace_model: profile must be a Profiles (see nres.extract.measure_profiles)"
        raise InvalidParameterError(msg)
    sel, dataT, _, goodT, _, cen, xfull = _frame_traces(frame, traces, fibers, "trace_model")
    ny, nx = dataT.shape
    rn = _read_noise(frame, read_noise)
    var0T, bkg = _variance_floor(rn, 0.0, background, (ny, nx), "trace_model")
    if bkg is not None:
        dataT = np.ascontiguousarray(dataT - bkg)
    geom = _trace_geometry(sel, profile, cen, xfull, 0.5 * sel.box_height)
    rej = np.zeros((ny, nx), dtype=np.bool_)
    flux = _k._joint_extract(dataT, var0T, goodT, *geom, int(n_iter), float(kappa), 4, rej)[0]
    return _k._render_model(ny, cen, flux, *geom[1:6])
