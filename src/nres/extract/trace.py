"""Order tracing on lamp flats: blind detection (:func:`find_traces`) and refinement of a known
trace set (:func:`refine_traces`).

Centres are flux centroids measured in every column within a window centred on the current
*fitted* trace (not on an integer box), with exact sub-pixel window edges and a straight local
background removed, then fitted with a robust Legendre series per (fiber, order). Iterating this
converges to the flux centroid without the original's +-0.5 px rounding sawtooth
(idl-calib-trace-extract.md 14.3, bug 22).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
from astropy.nddata import NDData, VarianceUncertainty
from numpy.polynomial import legendre
from scipy.signal import find_peaks, peak_prominences

from ..errors import FitError, InvalidParameterError
from ..legacy import register, resolve
from ..traces import DEFAULT_X_DOMAIN, Traces
from ..window import DETECTOR_SHAPE, window_origin
from . import _kernels
from .identify import identify_traces, lit_fibers

__all__ = ["find_traces", "refine_traces"]

register(
    "nres.extract.refine_traces",
    "centroid_reference",
    choices=("trace", "integer_box"),
    default="trace",
    legacy="integer_box",
    reference="idl-calib-trace-extract.md 14.3, 16 (22)",
    summary="centroid offset from the integer 11-row box centre added to the trace (rounding sawtooth)",
)

_BIN = 16  # columns averaged per sample while detecting and following traces
_SYS_ERR = 0.003  # px added in quadrature to each column's photon error: no column dominates a fit


def _unpack(flat, name):
    """Data, variance, good-pixel map (float64/bool, frame coordinates) and window origin."""
    if not isinstance(flat, NDData):
        msg = f"{name}: expected a CCDData/NDData lamp flat, got {type(flat).__name__}"
        raise InvalidParameterError(msg)
    data = np.ascontiguousarray(flat.data, dtype=np.float64)
    if data.ndim != 2 or min(data.shape) < 16:
        msg = f"{name}: expected a 2-D frame of at least 16 x 16 pixels, got shape {data.shape}"
        raise InvalidParameterError(msg)
    if flat.uncertainty is None:
        msg = f"{name}: a variance (VarianceUncertainty) is required to weight the centroids"
        raise InvalidParameterError(msg)
    var = np.ascontiguousarray(flat.uncertainty.represent_as(VarianceUncertainty).array, dtype=np.float64)
    good = np.isfinite(data) & np.isfinite(var)
    if flat.mask is not None:
        good &= ~np.asarray(flat.mask, dtype=bool)
    y0, x0 = window_origin(flat.meta)
    return data, var, np.ascontiguousarray(good), y0, x0


#: Spike rejection before tracing (see _spikes): column offsets of the reference pixels, the limit in
#: sigma and the allowed fractional departure (a trace tilted by <= 0.03 px/column moves <= 0.2 px over
#: 6 columns: up to ~20 % on a profile flank of sigma 1.5 px, so 0.3 never clips the traces themselves).
_SPIKE_OFFSETS = (-6, -3, 3, 6)
_SPIKE_NSIGMA = 6.0
_SPIKE_FRAC = 0.3


def _spikes(data, var, good):
    """Pixels (bool, (ny, nx)) far from the median of their row neighbours 3 and 6 columns away.

    Cosmic-ray hits of a flat -- and the negative holes a single-frame master dark's hits leave after
    subtraction -- are a few pixels wide; traces are smooth along x. Such a pixel inside a column bin
    splits a trace's binned profile into two peaks, the followed pieces then overlap and identify
    as one order. The median of 4 values is (sum - max - min) / 2; masked neighbours count as the
    pixel itself (no evidence against it).
    """
    ny, nx = data.shape
    if nx <= 2 * max(_SPIKE_OFFSETS):
        return np.zeros_like(good)
    d = np.where(good, data, 0.0)
    v = np.where(good, var, 0.0)
    out = np.zeros_like(good)
    for r0 in range(0, ny, 256):  # row blocks: a few (256, nx) temporaries instead of full frames
        sl = slice(r0, min(r0 + 256, ny))
        db, vb, gb = d[sl], v[sl], good[sl]
        nbr, nbv = [], []
        for o in _SPIKE_OFFSETS:
            sh = np.clip(np.arange(nx) + o, 0, nx - 1)
            ok = gb[:, sh]
            nbr.append(np.where(ok, db[:, sh], db))
            nbv.append(np.where(ok, vb[:, sh], vb))
        a, vs = np.stack(nbr), np.stack(nbv)
        ref = 0.5 * (a.sum(0) - a.max(0) - a.min(0))
        rvar = 0.5 * (vs.sum(0) - vs.max(0) - vs.min(0))
        limit = _SPIKE_NSIGMA * np.sqrt(np.maximum(rvar, 0.0)) + _SPIKE_FRAC * np.abs(ref)
        out[sl] = gb & (np.abs(db - ref) > limit)
    return out


def _x_domain(nx, x0):
    if nx >= DETECTOR_SHAPE[1]:
        return DEFAULT_X_DOMAIN
    return (float(x0), float(x0 + nx - 1))


def _binned(data, var, good):
    """Column-binned mean image (ny, nb), its variance, good map, and the frame x of each bin centre."""
    bw = min(_BIN, data.shape[1])
    mean, mvar, ok = _kernels._bin_columns(data, var, good, bw)
    return mean, mvar, ok, np.arange(mean.shape[1]) * bw + (bw - 1) / 2.0


def _seed_peaks(prof, pvar, pgood, min_snr):
    """Rows of significant peaks in one binned column profile."""
    p = np.where(pgood, prof, 0.0)
    peaks, _ = find_peaks(p, distance=3)
    if peaks.size == 0:
        return peaks
    prom = peak_prominences(p, peaks, wlen=41)[0]
    sig = np.sqrt(pvar[peaks])
    return peaks[(prom > min_snr * sig) & (p[peaks] > min_snr * sig)]


def _detect(data, var, good, *, min_snr, min_length, n_seeds=7):
    """Blind detection: (samples (n, nb) frame rows, x of bins).

    Peaks of the binned profile at a few seed columns are followed along x; a seed peak within
    2 px of a trace already followed from an earlier seed is not followed again, so orders whose
    middle is off the frame (edge-clipped) are found from the outer seeds.
    """
    mean, mvar, ok, xb = _binned(data, var, good)
    nb = xb.size
    seeds = np.unique(np.round(np.linspace(0.5, 0.04, n_seeds // 2 + 1) * (nb - 1)).astype(int))
    seeds = np.unique(np.concatenate([seeds, (nb - 1) - seeds]))
    seeds = seeds[np.argsort(np.abs(seeds - (nb - 1) / 2.0))]  # middle first
    rows = []
    for k in seeds:
        peaks = _seed_peaks(mean[:, k], mvar[:, k], ok[:, k], min_snr).astype(np.float64)
        if rows:
            known = np.array(rows)[:, k]
            known = known[np.isfinite(known)]
            if known.size:
                peaks = peaks[np.min(np.abs(peaks[:, None] - known[None, :]), axis=1) > 2.0]
        if peaks.size:
            ys = _kernels._follow_traces(
                mean, mvar, ok, int(k), np.ascontiguousarray(peaks), min_snr * 0.5, 3.0, 1.5, 3
            )
            rows.extend(ys)
    if not rows:
        msg = f"find_traces: no order found above min_snr={min_snr}; is this a lamp flat?"
        raise FitError(msg)
    bw = xb[1] - xb[0] if nb > 1 else data.shape[1]
    kept = [r for r in rows if np.isfinite(r).sum() * bw >= min_length]
    if not kept:
        msg = f"find_traces: no trace is longer than min_length={min_length} columns"
        raise FitError(msg)
    ys = np.array(kept)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mid = np.nanmedian(ys, axis=1)
    return ys[np.argsort(mid)], xb


def _halfwidths(centers, max_halfwidth):
    """Centroid half-window per trace: a bit under half the distance to the nearest neighbour."""
    centers = centers[:, :: max(1, centers.shape[1] // 128)]  # ~128 columns are plenty
    n = centers.shape[0]
    sep = np.full(n, np.inf)
    for i in range(n):
        d = np.abs(centers - centers[i])
        d[i] = np.inf
        with np.errstate(invalid="ignore"):
            m = np.nanmin(np.where(np.isfinite(d), d, np.inf), axis=0)
        m = m[np.isfinite(m)]
        if m.size:
            sep[i] = np.percentile(m, 5)
    return np.clip(0.5 * sep - 1.0, 2.0, max_halfwidth)


def _check_degree(degree):
    """``degree`` as an int >= 2 (a short trace still gets a parabola, see :func:`_nterm`)."""
    if int(degree) != degree or int(degree) < 2:
        msg = f"degree: expected an integer >= 2 (Legendre degree of each trace), got {degree!r}"
        raise InvalidParameterError(msg)
    return int(degree)


def _nterm(valid, degree, per_term=100):
    """Legendre terms per trace: a short (edge-clipped) trace gets a low degree (one term per
    ``per_term`` columns of span, at least a parabola's 3) so its fit cannot run wild."""
    any_col = valid.any(axis=1)
    first = np.argmax(valid, axis=1)
    last = valid.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
    span = np.where(any_col, last - first, 0)
    return np.minimum(degree + 1, np.maximum(3, 1 + span // per_term)).astype(np.int64)


def _fit(t, y, w, degree, clip, n_clip, nterm=None):
    """Batched weighted Legendre fits with iterative sigma clipping.

    t (nx,), y and w (n, nx) with w = 0 where unusable. Returns coef (n, degree+1), used (n, nx),
    rms (n,) of the unclipped residuals.
    """
    v = np.ascontiguousarray(legendre.legvander(t, degree))  # (nx, p)
    w = np.where(np.isfinite(y) & np.isfinite(w), w, 0.0)
    y = np.where(w > 0, y, 0.0)
    if nterm is None:
        nterm = np.full(y.shape[0], degree + 1, dtype=np.int64)
    coef, used, rms = _kernels._fit_clipped(
        v,
        np.ascontiguousarray(y, dtype=np.float64),
        np.ascontiguousarray(w, dtype=np.float64),
        np.ascontiguousarray(nterm, dtype=np.int64),
        float(clip),
        int(n_clip),
    )
    # a trace with too few columns keeps zero coefficients and no used column
    used &= (used.sum(axis=1) >= nterm)[:, None]
    return coef, used, rms


def _box_samples(data, good, centers, width=11):
    """The original's trace_refine samples (legacy): the current y plus the flux centroid's offset
    from the centre of the integer box of ``width`` rows, bottom ROUND(y_idl - W/2) with the
    original's y_idl = y + 0.5 (idl-calib-trace-extract.md 14.3 step 5, bug 22); no background.
    Returns (samples, weights 0/1), both (n, nx)."""
    ny = data.shape[0]
    half = (width - 1) / 2.0
    b = np.floor(np.nan_to_num(centers, nan=-1e6) + 0.5 - width / 2.0 + 0.5).astype(np.int64)
    rows = b[..., None] + np.arange(width)  # (n, nx, W)
    inside = np.isfinite(centers) & (b >= 0) & (b + width - 1 <= ny - 1)
    rows = np.clip(rows, 0, ny - 1)
    cols = np.broadcast_to(np.arange(data.shape[1])[None, :, None], rows.shape)
    f = data[rows, cols]
    ok = inside & good[rows, cols].all(axis=-1)
    m0 = f.sum(axis=-1)
    m1 = (f * (np.arange(width) - half)).sum(axis=-1)
    ok &= m0 > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.clip(m1 / m0, -width / 2.0, width / 2.0)
    return np.where(ok, centers + off, np.nan), ok.astype(np.float64)


def _measure(
    data,
    var,
    good,
    init,
    valid,
    *,
    degree,
    n_iter,
    clip,
    max_halfwidth,
    max_err=0.05,
    halfwidth=None,
    centroid_reference="trace",
):
    """Iterate per-column centroids about the fitted trace and robust Legendre fits.

    init (n, nx) frame rows of the starting trace (NaN outside its columns); valid (n, nx) bool.
    Returns (coef in t of the frame's own columns, used (n, nx), rms (n,), halfwidth (n,)).
    """
    ny, nx = data.shape
    t = np.linspace(-1.0, 1.0, nx) if nx > 1 else np.zeros(1)
    h = _halfwidths(init, max_halfwidth) if halfwidth is None else np.asarray(halfwidth, np.float64)
    centers = np.where(valid, init, np.nan)
    sparse = np.zeros(nx, dtype=bool)
    sparse[::4] = True
    for it in range(n_iter):
        if it == 0 and n_iter > 1 and nx >= 256:
            # the first pass only steers the window: every 4th column is plenty
            centers = np.where(sparse, centers, np.nan)
        if centroid_reference == "integer_box":
            cen, w = _box_samples(data, good, centers)
            good_col = (w > 0) & valid
            w = np.where(good_col, 1.0, 0.0)
        else:
            cen, err, _ = _kernels._centroid_traces(data, var, good, np.ascontiguousarray(centers), h)
            # a column whose centroid error exceeds max_err carries no useful signal (order end, gap)
            good_col = np.isfinite(cen) & valid & (err < max_err)
            w = np.where(good_col, 1.0 / (np.where(good_col, err, 1.0) ** 2 + _SYS_ERR**2), 0.0)
        if not np.any(w.sum(axis=1) > 0):
            msg = "trace fit: no column gave a usable centroid"
            raise FitError(msg)
        coef, used, rms = _fit(
            t, np.where(good_col, cen, 0.0), w, degree, clip, 3, nterm=_nterm(valid, degree)
        )
        centers = np.where(valid, coef @ legendre.legvander(t, degree).T, np.nan)
    return coef, used, rms, h


def _to_traces(coef_frame, used, rms, nx, y0, x0, *, ny, degree, orders, fibers, box_height, meta, extend=64):
    """Convert frame-coordinate fits to full-detector Traces with x_valid from the measured columns."""
    x_domain = _x_domain(nx, x0)
    xf = np.arange(nx) + x0
    t_frame = np.linspace(-1.0, 1.0, nx) if nx > 1 else np.zeros(1)
    yfit = coef_frame @ legendre.legvander(t_frame, degree).T + y0
    a, b = x_domain
    t_full = 2.0 * (xf - a) / (b - a) - 1.0
    # the same polynomial in the full-detector Legendre variable (exact: both maps are linear)
    vf = legendre.legvander(t_full, degree)
    coef = np.linalg.solve(vf.T @ vf, vf.T @ yfit.T).T
    x_valid = np.empty((len(coef), 2))
    on_frame = (yfit >= y0 - 0.5) & (yfit <= y0 + ny - 0.5)
    for i in range(len(coef)):
        cols = np.flatnonzero(used[i])
        lo, hi = cols[0], cols[-1]
        # extend (<= extend columns) where the centre is still on the frame (its window was not)
        left = on_frame[i, max(lo - extend, 0) : lo][::-1]
        right = on_frame[i, hi + 1 : hi + 1 + extend]
        lo -= left.size if left.all() else int(np.argmin(left))
        hi += right.size if right.all() else int(np.argmin(right))
        x_valid[i] = (lo + x0, hi + x0)
    meta = dict(meta)
    meta["FITRMS"] = float(np.nanmedian(rms)) if np.isfinite(rms).any() else -1.0
    return Traces(coef, orders, fibers, x_domain=x_domain, x_valid=x_valid, box_height=box_height, meta=meta)


def _resolve_fibers(flat, fibers, name):
    if fibers is not None:
        fib = tuple(int(f) for f in np.atleast_1d(fibers))
        if not fib or any(f not in (0, 1, 2) for f in fib):
            msg = f"fibers: expected ids among 0, 1, 2, got {fibers!r}"
            raise InvalidParameterError(msg)
        return fib
    try:
        return lit_fibers(flat.meta)
    except InvalidParameterError as err:
        msg = f"{name}: {err}"
        raise InvalidParameterError(msg) from err


def find_traces(
    flat,
    *,
    site=None,
    fibers=None,
    reference=None,
    identify=True,
    degree=6,
    min_snr=20.0,
    n_iter=2,
    clip=4.0,
    max_halfwidth=8.0,
    min_length=200,
    max_shift=100.0,
    max_scale=0.005,
    box_height=10.5,
    complete=True,
) -> Traces:
    """Find, measure and identify every order of the lit fibers on a lamp flat.

    Parameters
    ----------
    flat : CCDData
        Processed (stacked) lamp flat (ny, nx) in electrons with a ``VarianceUncertainty`` and mask;
        a window of the detector (origin in ``meta``, see :mod:`nres.window`) or the full frame.
    site : str, optional
        Site code of the reference table; default ``SITEID`` from the header.
    fibers : sequence of int, optional
        Lit fiber ids; default from the header keyword ``OBJECTS``.
    reference : Traces, optional
        Reference table to identify against; default ``nres.instrument.reference_traces(site)``.
    identify : bool
        If False, skip identification: traces come out bottom to top with ``fibers`` = -1 and
        ``orders`` = 0, 1, ... (useful on frames of other instruments).
    degree : int
        Legendre degree of each trace.
    min_snr : float
        Detection threshold: a trace peak in a 16-column mean profile must have this signal-to-noise.
    n_iter : int
        Centroid/fit iterations (each centroids about the previous fit; the start from the followed
        samples is within ~0.05 px, and each pass shrinks the offset ~20-fold).
    clip : float
        Sigma-clipping threshold of the robust Legendre fits (robust scale from the MAD).
    max_halfwidth : float
        Largest half height (px) of the centroid window; each trace uses a bit under half the
        distance to its nearest neighbour.
    min_length : int
        Shortest trace kept (columns).
    max_shift, max_scale : float
        Search range of the identification (see :func:`nres.extract.identify_traces`).
    box_height : float
        Extraction box height stored in the result (the original's ORDWIDTH).
    complete : bool
        With ``identify``: predict the orders cut by the frame's top and bottom edges from the
        reference (:func:`~nres.extract.complete_traces`), so their light on the frame is modelled;
        those nowhere wholly on the frame become nuisance traces (modelled, not extracted).

    Returns
    -------
    Traces
        Full-detector traces sorted by (fiber, order); ``x_valid`` spans the columns where each
        trace is on the frame (for a completed cut order: where the reference puts it on the
        detector, within the frame's columns). ``meta`` has ``FITRMS`` (median rms of the centroids
        about the fits, px), the identification shift/scale and the completion's numbers.

    Raises
    ------
    InvalidParameterError
        Bad input (no variance, unknown fibers, no ``OBJECTS``/``SITEID`` when needed).
    FitError
        No trace found, or the order/fiber identification is ambiguous.

    Notes
    -----
    Improves on the original's trace0/trace_refine (idl-calib-trace-extract.md 14) and banzai-nres's
    blind tracer (banzai-nres-xwavecal.md 2.2): no seed file is needed, edge-clipped orders are kept
    over the columns where they are on the chip, and centroids are measured about the fitted trace
    with exact sub-pixel window edges, so there is no rounding sawtooth.
    """
    data, var, good, y0, x0 = _unpack(flat, "flat")
    good = np.ascontiguousarray(good & ~_spikes(data, var, good))  # cosmic rays and dark holes
    ny, nx = data.shape
    degree = _check_degree(degree)
    if identify:
        fib = _resolve_fibers(flat, fibers, "flat")
    samples, xb = _detect(data, var, good, min_snr=min_snr, min_length=min_length)
    # starting trace per column: low-degree fit of the followed samples, over their span
    cols = np.arange(nx)
    init = np.full((samples.shape[0], nx), np.nan)
    valid = np.zeros((samples.shape[0], nx), dtype=bool)
    for i, row in enumerate(samples):
        ok = np.isfinite(row)
        deg = int(min(4, ok.sum() - 1))
        p = np.polynomial.Polynomial.fit(xb[ok], row[ok], deg)
        span = (cols >= xb[ok][0] - _BIN) & (cols <= xb[ok][-1] + _BIN)
        valid[i] = span
        init[i, span] = p(cols[span])
    # the fit settings and the frame geometry of both passes (blind, then merged order ends)
    fit = {"degree": degree, "n_iter": n_iter, "clip": clip, "max_halfwidth": max_halfwidth}
    shape = {"ny": ny, "degree": degree, "box_height": box_height}
    coef, used, rms, _ = _measure(data, var, good, init, valid, **fit)
    keep = used.sum(axis=1) >= max(degree + 1, min(min_length, nx) // 2)
    n_kept = int(keep.sum())
    traces = _to_traces(
        coef[keep], used[keep], rms[keep], nx, y0, x0, **shape, orders=np.arange(n_kept),
        fibers=np.full(n_kept, -1), meta={"NRESSTEP": "find_traces"},
    )  # fmt: skip
    if identify:
        if reference is None:
            site = site if site is not None else (flat.meta or {}).get("SITEID")
            if site is None:
                msg = "site: not given and no SITEID in the flat's header; needed for the reference table"
                raise InvalidParameterError(msg)
            from ..instrument import reference_traces

            reference = reference_traces(str(site).strip().lower())
        traces = identify_traces(traces, reference, fibers=fib, max_shift=max_shift, max_scale=max_scale)
        if traces.meta.get("IDMERGED", 0):
            # the two ends of an order whose middle is off the frame were joined: fit them together
            xf = np.arange(nx) + x0
            init = traces.center(xf) - y0
            valid = traces.valid(xf) & (init >= 0) & (init <= ny - 1)
            coef, used, rms, _ = _measure(data, var, good, init, valid, **fit)
            traces = _to_traces(
                coef, used, rms, nx, y0, x0, **shape, orders=traces.orders, fibers=traces.fibers,
                meta=traces.meta,
            )  # fmt: skip
        if complete:
            from .neighbours import complete_traces

            traces = complete_traces(traces, flat, reference=reference)
    return traces


def refine_traces(
    flat,
    traces,
    *,
    flat2=None,
    fibers=None,
    fibers2=None,
    degree=None,
    n_iter=3,
    clip=4.0,
    max_halfwidth=8.0,
    centroid_reference=None,
    legacy=False,
    complete=True,
) -> Traces:
    """Re-measure a known trace set on one or two lamp flats.

    Parameters
    ----------
    flat : CCDData
        Lamp flat (electrons, variance, mask; window or full frame).
    traces : Traces
        Starting traces within ~2 px of the truth: a previous night's set, a reference table
        (``nres.instrument.reference_traces``) or a trace file of the original
        (:func:`nres.io.idl_trace_fits.read_idl_trace`). Must contain the lit fibers.
    flat2 : CCDData, optional
        A second flat lighting other fibers (the original's fibers 0+1 and 1+2 pair): a fiber lit
        in both flats is fitted to the centroids of both.
    fibers, fibers2 : sequence of int, optional
        Lit fibers of ``flat``/``flat2``; default from ``OBJECTS``.
    degree : int, optional
        Legendre degree; default that of ``traces``.
    n_iter, clip, max_halfwidth
        As in :func:`find_traces`.
    centroid_reference : {"trace", "integer_box"}, optional
        "trace" (default): centroids in a window centred on the fitted trace with sub-pixel edges
        and a local background. "integer_box" (legacy): the original's trace_refine, which adds
        the centroid's offset from the centre of an integer 11-row box to the trace, feeding the
        +-0.5 px rounding sawtooth into the fit (idl-calib-trace-extract.md 14.3, bug 22).
    legacy : bool
        Shorthand for all legacy options of this function.
    complete : bool
        Predict the orders cut by the frame's top and bottom edges from ``traces`` moved like the
        re-measured ones (:func:`~nres.extract.complete_traces`); nuisance traces of ``traces``
        are carried like unlit fibers.

    Returns
    -------
    Traces
        One trace per (fiber, order) of ``traces``: lit fibers re-measured over the columns where
        they are on the frame (cut orders predicted, see ``complete``); fibers lit in neither flat
        are kept from ``traces`` and moved by the median change of the same order's re-measured
        fibers.

    Raises
    ------
    InvalidParameterError
        Bad input, or ``traces`` lacks a lit fiber.
    FitError
        No usable centroid for a trace.
    """
    if not isinstance(traces, Traces):
        msg = f"traces: expected nres.traces.Traces, got {type(traces).__name__}"
        raise InvalidParameterError(msg)
    ref = resolve("nres.extract.refine_traces", legacy, centroid_reference=centroid_reference)
    centroid_reference = ref["centroid_reference"]
    degree = traces.degree if degree is None else _check_degree(degree)
    frames = [(flat, _resolve_fibers(flat, fibers, "flat"))]
    if flat2 is not None:
        frames.append((flat2, _resolve_fibers(flat2, fibers2, "flat2")))
    shape = None
    ys, ws = [], []
    measured = np.zeros(len(traces), dtype=bool)
    for k, (frame, fib) in enumerate(frames):
        data, var, good, y0, x0 = _unpack(frame, "flat" if k == 0 else "flat2")
        if shape is None:
            shape = (data.shape, y0, x0)
        elif shape != (data.shape, y0, x0):
            msg = "flat2: must cover the same window as flat"
            raise InvalidParameterError(msg)
        ny, nx = data.shape
        missing = [f for f in fib if f not in set(traces.fibers.tolist())]
        if missing:
            msg = f"traces: no trace of lit fiber(s) {missing}; pass a trace set with all lit fibers"
            raise InvalidParameterError(msg)
        # nuisance traces (orders beyond a window's edge) are not measured: carried like unlit ones
        lit = np.isin(traces.fibers, fib) & ~traces.nuisance
        xf = np.arange(nx) + x0
        init = traces.center(xf)[lit] - y0
        valid = traces.valid(xf)[lit] & (init >= -0.5) & (init <= ny - 0.5)
        t = np.linspace(-1.0, 1.0, nx) if nx > 1 else np.zeros(1)
        # iterate the centroids of this flat's lit traces (the fit only steers the window)
        h = _halfwidths(np.where(valid, init, np.nan), max_halfwidth)
        coef, used, _, _ = _measure(
            data,
            var,
            good,
            init,
            valid,
            degree=degree,
            n_iter=n_iter,
            clip=clip,
            max_halfwidth=max_halfwidth,
            halfwidth=h,
            centroid_reference=centroid_reference,
        )
        centers = np.ascontiguousarray(np.where(valid, coef @ legendre.legvander(t, degree).T, np.nan))
        if centroid_reference == "integer_box":
            cen, wbox = _box_samples(data, good, centers)
            err = np.where(wbox > 0, 1.0, np.nan)  # the original weights columns 0/1: uniform
        else:
            cen, err, _ = _kernels._centroid_traces(data, var, good, centers, h)
        y = np.full((len(traces), nx), np.nan)
        w = np.zeros((len(traces), nx))
        ok = used & np.isfinite(cen)
        y[lit] = np.where(ok, cen, np.nan)
        w[lit] = np.where(ok, 1.0 / (np.where(ok, err, 1.0) ** 2 + _SYS_ERR**2), 0.0)
        ys.append(y)
        ws.append(w)
        measured |= lit
    (ny, nx), y0, x0 = shape
    y = np.concatenate(ys, axis=1)
    w = np.concatenate(ws, axis=1)
    t1 = np.linspace(-1.0, 1.0, nx) if nx > 1 else np.zeros(1)
    t = np.concatenate([t1] * len(frames))
    sel = np.flatnonzero(measured)
    cols = (w[sel] > 0).reshape(sel.size, len(frames), nx).any(axis=1)
    coef, used, rms = _fit(t, np.nan_to_num(y[sel]), w[sel], degree, clip, 3, nterm=_nterm(cols, degree))
    # traces with no usable centroid (off the window) are carried over like unlit fibers
    fitted = used.sum(axis=1) >= 3
    if not fitted.any():
        msg = "refine_traces: no trace of the lit fibers has usable centroids on the flat(s)"
        raise FitError(msg)
    sel, coef, used, rms = sel[fitted], coef[fitted], used[fitted], rms[fitted]
    used_cols = np.zeros((sel.size, nx), dtype=bool)
    for k in range(len(frames)):
        used_cols |= used[:, k * nx : (k + 1) * nx]
    new = _to_traces(
        coef,
        used_cols,
        rms,
        nx,
        y0,
        x0,
        ny=ny,
        degree=degree,
        orders=traces.orders[sel],
        fibers=traces.fibers[sel],
        box_height=traces.box_height,
        meta=dict(traces.meta, NRESSTEP="refine_traces"),
    )
    out = _with_unlit(traces, new, sel)
    if complete:
        from .neighbours import complete_traces

        # the cut orders predicted from the input set moved like their re-measured neighbours
        out = complete_traces(out, flat, reference=traces)
    return out


def _with_unlit(old, new, sel):
    """Add the traces of fibers lit in no flat, moved like the re-measured traces of their order."""
    if sel.size == len(old):
        return new
    unlit = np.setdiff1d(np.arange(len(old)), sel)
    x_mid = new.x_valid.mean(axis=1)
    dy_new = new.center(x_mid).diagonal() - old[sel].center(x_mid).diagonal()
    coefs, xv = [], []
    for i in unlit:
        same = new.orders == old.orders[i]
        dy = float(np.median(dy_new[same])) if same.any() else float(np.median(dy_new))
        xf = np.linspace(*new.x_domain, 64)
        yy = old[[i]].center(xf)[0] + dy
        a, b = new.x_domain
        coefs.append(legendre.legfit(2.0 * (xf - a) / (b - a) - 1.0, yy, new.degree))
        xv.append(np.clip(old.x_valid[i], a, b))
    coef = np.vstack([new.coefficients, coefs])
    out = replace(
        new,
        coefficients=coef,
        orders=np.concatenate([new.orders, old.orders[unlit]]),
        fibers=np.concatenate([new.fibers, old.fibers[unlit]]),
        x_valid=np.vstack([new.x_valid, xv]),
        nuisance=np.concatenate([new.nuisance, old.nuisance[unlit]]),
    )
    return out[np.lexsort((out.orders, out.fibers))]
