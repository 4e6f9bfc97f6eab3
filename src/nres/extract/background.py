"""Scattered light: a smooth inter-order background fitted between the traces and subtracted.

Pixels farther than ``box_height / 2 + margin`` from every trace are averaged in bins of ``x_bin``
columns; each bin is fitted along y by a least-squares cubic spline (knots every ``y_knot`` rows,
weights = pixel counts) and the result is smoothed along x by a second cubic spline (knots every
``x_knot`` columns). Nothing is clipped at zero: forcing the trace pixels non-negative (as the
original's crude median filter effectively did) biases the background.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData
from scipy.interpolate import BSpline, make_lsq_spline

from ..errors import FitError, InvalidParameterError
from ..provenance import record_provenance
from ._extract_kernels import _inter_order_mask, _spline_smooth
from .profiles import _frame_arrays, _window_centers

__all__ = ["fit_scattered_light", "subtract_scattered_light", "inter_order_mask"]


def inter_order_mask(shape, traces, meta=None, *, margin=2.0):
    """Pixels between the traces.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) of the (window) frame.
    traces : Traces
        Traces in full-detector coordinates.
    meta : dict-like, optional
        Frame header giving the window origin.
    margin : float
        Extra distance (px) beyond ``box_height / 2``.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        True where a pixel is farther than ``box_height / 2 + margin`` from every trace centre.
    """
    ny, _ = shape
    cen, _ = _window_centers(traces, shape, meta)
    h = 0.5 * float(traces.box_height) + float(margin)
    return _inter_order_mask(int(ny), np.ascontiguousarray(cen, dtype=np.float64), h)


def _modelled(shape, traces, meta, profile):
    """(ny, nx) bool: pixels whose trace light the trace model accounts for, i.e. not within the
    profiles' extent of a nuisance trace (its flux rests on the few rows of its aperture on the
    frame) nor of a trace whose aperture is off the frame in that column (no flux is fitted there,
    so its wings on the frame are not modelled)."""
    ny = shape[0]
    cen, _ = _window_centers(traces, shape, meta)
    half = 0.5 * float(traces.box_height)
    off = (cen + half < -0.5) | (cen - half > ny - 0.5) | traces.nuisance[:, None]
    extent = float(np.max(np.abs(profile.dy)))
    return _inter_order_mask(int(ny), np.ascontiguousarray(np.where(off, cen, np.nan)), extent)


def _spline_fit(x, y, w, spacing, x_eval):
    """Weighted cubic LSQ spline of y(x) (y may be 2-D, first axis along x), evaluated at x_eval."""
    return _lsq_spline(x, y, w, spacing, float(x_eval[0]), float(x_eval[-1]))(x_eval)


def _lsq_spline(x, y, w, spacing, lo, hi):
    """The :class:`~scipy.interpolate.BSpline` of :func:`_spline_fit` on [lo, hi]."""
    n_int = max(int(round((hi - lo) / spacing)), 1)
    while n_int >= 1:
        inner = np.linspace(lo, hi, n_int + 1)[1:-1]
        t = np.r_[[lo] * 4, inner, [hi] * 4]
        try:
            spl = make_lsq_spline(x, y, t, k=3, w=w)
        except (ValueError, np.linalg.LinAlgError):
            spl = None
        # scipy >= 1.15 (QR solve) returns NaN coefficients instead of raising when empty knot
        # intervals leave the problem rank-deficient
        if spl is not None and np.isfinite(spl.c).all():
            return spl
        n_int //= 2  # empty knot intervals: fewer knots
    msg = "fit_scattered_light: too few inter-order samples for a spline fit"
    raise FitError(msg)


def _fit_grid(data, use, x_bin, y_knot, x_knot):
    """The two-stage spline fit of ``data`` at the pixels ``use`` (see the module docstring).

    The per-bin fits along y share their knots, so they are solved together by the banded
    normal-equation kernel (one call for every bin instead of one scipy fit per bin); a bin whose
    knot intervals are not all sampled falls back to :func:`_spline_fit`, which drops knots.
    """
    ny, nx = data.shape
    nb = max(nx // int(x_bin), 1)
    edges = np.linspace(0, nx, nb + 1).round().astype(int)
    rows = np.arange(ny, dtype=float)
    n = np.add.reduceat(use, edges[:-1], axis=1, dtype=np.float64)  # (ny, nb) pixels per row and bin
    s = np.add.reduceat(np.where(use, data, 0.0), edges[:-1], axis=1)
    count = (n > 0).sum(axis=0)
    if np.any(count < 8):
        b = int(np.flatnonzero(count < 8)[0])
        msg = f"fit_scattered_light: columns {edges[b]}..{edges[b + 1] - 1} have too few inter-order pixels"
        raise FitError(msg)
    xc = 0.5 * (edges[:-1] + edges[1:] - 1)
    per_bin = _batched_rows_fit(rows, n.T, s.T, y_knot)
    if nb < 4:
        return np.repeat(per_bin.mean(axis=0)[:, None], nx, axis=1)
    cols = np.arange(nx, dtype=float)
    # along x: fit the bin values, evaluate at every column (end bins extrapolate half a bin)
    xs = np.r_[0.0, xc, nx - 1.0]
    vals = np.vstack([per_bin[:1], per_bin, per_bin[-1:]])
    w = np.r_[1e-3, np.ones(nb), 1e-3]
    spl = _lsq_spline(xs, vals, w, x_knot, 0.0, nx - 1.0)
    # evaluated as (ny, ncoef) @ (ncoef, nx): the (ny, nx) model comes out C-ordered (transposing
    # a (nx, ny) evaluation cost a 4096^2 strided copy, as long as the fits themselves)
    design = BSpline.design_matrix(cols, spl.t, 3).toarray()
    return np.ascontiguousarray(spl.c.T) @ design.T


def _batched_rows_fit(rows, n, s, spacing):
    """Weighted cubic LSQ splines of ``s / n`` along ``rows`` for every bin (row of ``n``, ``s``).

    Same knots and weights as :func:`_spline_fit` (``w = sqrt(n)`` there, i.e. ``n`` on the
    squared residuals here). Returns (nb, ny) evaluated at ``rows``.
    """
    lo, hi = float(rows[0]), float(rows[-1])
    n_int = max(int(round((hi - lo) / spacing)), 1)
    inner = np.linspace(lo, hi, n_int + 1)[1:-1]
    t = np.r_[[lo] * 4, inner, [hi] * 4]
    design = BSpline.design_matrix(rows, t, 3).tocsr()
    first = np.ascontiguousarray(design.indices[design.indptr[:-1]], dtype=np.int64)
    bvals = np.ascontiguousarray(design.data.reshape(rows.size, 4))
    values = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    out, ok = _spline_smooth(values, np.ascontiguousarray(n), first, bvals, int(design.shape[1]))
    # a knot interval without two samples can leave the normal matrix singular up to round-off
    # (a tiny positive pivot passes the LDL test): such bins take the knot-dropping scipy path
    cell = np.clip(np.searchsorted(t[4:-4], rows, side="right"), 0, n_int - 1)
    covered = np.stack([np.bincount(cell[n_b > 0], minlength=n_int) for n_b in n]) >= 2
    for b in np.flatnonzero(~(ok & covered.all(axis=1))):
        use = n[b] > 0
        out[b] = _spline_fit(rows[use], values[b, use], np.sqrt(n[b, use]), spacing, rows)
    return out


def fit_scattered_light(
    frame, traces, *, margin=2.0, x_bin=32, y_knot=96.0, x_knot=512.0, profile=None, n_iter=3, read_noise=None
):
    """Smooth scattered-light model of a frame from the pixels between the traces.

    Parameters
    ----------
    frame : CCDData
        Image in electrons (ny, nx), possibly a window.
    traces : Traces
        Every trace on the frame (lit or not), full-detector coordinates.
    margin : float
        Extra distance (px) beyond the aperture half height that counts as inside a trace.
    x_bin : int
        Columns averaged per bin before the fits.
    y_knot, x_knot : float
        Spline knot spacings (px) along y and x; the model is smooth on these scales.
    profile : Profiles or None
        With wing-aware profiles (:func:`~nres.extract.measure_profiles`), the light of the lit
        traces' profiles (:func:`~nres.extract.trace_model`, fitted to the frame minus the current
        background) is removed from the inter-order pixels before the fit, ``n_iter`` times.
        Without it, wings reaching between the orders count as scattered light. With it, pixels
        within the profiles' extent of a nuisance trace or of a trace whose aperture is off the
        frame in that column are not used (no fitted flux models their light).
    n_iter : int
        Background / trace-model iterations when ``profile`` is given.
    read_noise : float or None
        Read noise (e-) for the trace model's weights; default ``meta["RDNOISE"]``.

    Returns
    -------
    ndarray, shape (ny, nx)
        Scattered light (electrons) at every pixel.

    Raises
    ------
    FitError
        Too few inter-order pixels.
    """
    if int(x_bin) < 1 or not y_knot > 0 or not x_knot > 0:
        msg = "fit_scattered_light: need x_bin >= 1 and positive knot spacings, "
        msg += f"got {x_bin}, {y_knot}, {x_knot}"
        raise InvalidParameterError(msg)
    data, _, good = _frame_arrays(frame, "fit_scattered_light: frame")
    meta = getattr(frame, "meta", None)
    use = good & inter_order_mask(data.shape, traces, meta, margin=margin)
    model = _fit_grid(data, use, x_bin, y_knot, x_knot)
    if profile is None:
        return model
    if int(n_iter) < 1:
        msg = f"fit_scattered_light: n_iter must be >= 1, got {n_iter}"
        raise InvalidParameterError(msg)
    from .extraction import _select, trace_model

    # the lit traces' light is modelled out to their wings: every pixel away from a lit aperture
    # (unlit fibers' positions included) now samples the background
    lit = _select(traces, frame, None)
    use = good & inter_order_mask(data.shape, lit, meta, margin=margin)
    use &= _modelled(data.shape, lit, meta, profile)
    # the traces' profile wings reach between the orders: fit the background to what the joint
    # trace model (fitted to the frame minus the current background) leaves there
    for _ in range(int(n_iter)):
        traces_light = trace_model(frame, traces, profile=profile, background=model, read_noise=read_noise)
        model = _fit_grid(data - traces_light, use, x_bin, y_knot, x_knot)
    return model


def subtract_scattered_light(frame, traces, **options):
    """Subtract :func:`fit_scattered_light` (same options, e.g. ``profile=``) from a frame.

    Returns
    -------
    corrected : CCDData
        ``frame - model`` (variance, mask and flags unchanged: the data-derived variance already
        holds the background's Poisson noise), with provenance.
    model : ndarray, shape (ny, nx)
        The scattered light subtracted (pass it to :func:`extract` as ``background=``).
    """
    model = fit_scattered_light(frame, traces, **options)
    meta = dict(getattr(frame, "meta", {}) or {})
    record_provenance(meta, "nres.extract.subtract_scattered_light", **options)
    out = CCDData(
        np.asarray(frame.data, dtype=np.float64) - model,
        unit=getattr(frame, "unit", "electron"),
        uncertainty=frame.uncertainty,
        mask=frame.mask,
        meta=meta,
    )
    flags = getattr(frame, "flags", None)
    if flags is not None:
        out.flags = flags
    return out, model
