"""Order and fiber identification: which physical order m and fiber id each found trace is.

Found traces are matched to a reference trace table (``nres.instrument.reference_traces``) by a
1-D cross-correlation of centre positions at a few columns: the reference centres of the lit
fibers, scaled about the detector middle and shifted in y, are scored against the found centres.
The best (shift, scale) must beat every solution that assigns the traces differently by a clear
margin, otherwise :class:`~nres.errors.FitError` is raised instead of guessing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.polynomial import legendre

from ..errors import FitError, InvalidParameterError
from ..traces import Traces

__all__ = ["lit_fibers", "identify_traces"]

_Y_MIDDLE = 2047.5  # scale about the detector middle so shift and scale decouple


def lit_fibers(header) -> tuple[int, ...]:
    """Fiber ids lit in a frame, from its ``OBJECTS`` keyword (``'tung&tung&none'`` -> (0, 1)).

    Parameters
    ----------
    header : dict-like
        Frame header (``meta``).

    Returns
    -------
    tuple of int
        Ids (0, 1, 2) of the fibers whose OBJECTS word is not ``none`` (case-insensitive).

    Raises
    ------
    InvalidParameterError
        OBJECTS is missing or does not have three '&'-separated words.
    """
    value = None if header is None else header.get("OBJECTS")
    if value is None:
        msg = "OBJECTS: header keyword missing; pass fibers=(...) explicitly"
        raise InvalidParameterError(msg)
    words = str(value).strip().split("&")
    if len(words) != 3:
        msg = f"OBJECTS: expected three '&'-separated words (fibers 0, 1, 2), got {value!r}"
        raise InvalidParameterError(msg)
    return tuple(i for i, w in enumerate(words) if w.strip().lower() not in ("none", ""))


def _score_grid(found, ref, shifts, scales, width):
    """Score[s, d] = sum over found of exp(-r^2 / 2 width^2), r = distance to the nearest
    transformed reference centre."""
    out = np.empty((scales.size, shifts.size))
    for i, s in enumerate(scales):
        t = np.sort(s * (ref - _Y_MIDDLE) + _Y_MIDDLE)
        q = found[None, :] - shifts[:, None]  # (nd, nf): reference position that would match
        k = np.clip(np.searchsorted(t, q), 1, t.size - 1)
        r = np.minimum(np.abs(q - t[k - 1]), np.abs(q - t[k]))
        out[i] = np.exp(-0.5 * (r / width) ** 2).sum(axis=1)
    return out


def _assign(found, ref, shift, scale, tolerance):
    """Index of the nearest transformed reference centre per found centre (-1 beyond tolerance)."""
    t = scale * (ref - _Y_MIDDLE) + _Y_MIDDLE + shift
    d = np.abs(found[:, None] - t[None, :])
    k = np.argmin(d, axis=1)
    k[d[np.arange(found.size), k] > tolerance] = -1
    return k


def _match_column(found, ref, *, max_shift, max_scale, tolerance, min_ratio, x):
    """Best (shift, scale) and the assignment at one column; raises FitError if ambiguous."""
    shifts = np.arange(-max_shift, max_shift + 1.0, 1.0)  # 1 px steps under a 1 px Gaussian score
    n_scale = max(1, int(np.ceil(max_scale / 5e-4)))  # 5e-4: 1 px at the detector edges
    scales = 1.0 + np.linspace(-max_scale, max_scale, 2 * n_scale + 1)
    score = _score_grid(found, ref, shifts, scales, 1.0)
    best = np.unravel_index(np.argmax(score), score.shape)
    s_best, d_best = scales[best[0]], shifts[best[1]]
    k_best = _assign(found, ref, d_best, s_best, tolerance)
    # refine shift and scale by least squares on the matched pairs, then reassign
    ok = k_best >= 0
    if ok.sum() >= 3:
        a = np.vstack([np.ones(ok.sum()), ref[k_best[ok]] - _Y_MIDDLE]).T
        sol = np.linalg.lstsq(a, found[ok] - _Y_MIDDLE, rcond=None)[0]
        d_best, s_best = sol[0], sol[1]
        k_best = _assign(found, ref, d_best, s_best, tolerance)
    n_best = int((k_best >= 0).sum())
    if n_best < max(1, int(np.ceil(0.8 * found.size))):
        msg = (
            f"identify_traces: at x={x:.0f} only {n_best} of {found.size} traces match the reference "
            f"table within {tolerance} px for any shift |dy| <= {max_shift} px and scale within "
            f"1 +- {max_scale}; is the site/camera/fibers right?"
        )
        raise FitError(msg)
    # the best competing solution that assigns the traces differently
    rival = 0.0
    flat = np.argsort(score, axis=None)[::-1]
    for idx in flat[:400]:
        i, j = np.unravel_index(idx, score.shape)
        k = _assign(found, ref, shifts[j], scales[i], tolerance)
        if np.any((k != k_best) & (k >= 0)):
            rival = score[i, j]
            break
    if rival > 0 and score[best] < min_ratio * rival:
        msg = (
            f"identify_traces: ambiguous order/fiber match at x={x:.0f}: best score "
            f"{score[best]:.1f}, a different assignment scores {rival:.1f} (need a ratio of "
            f"{min_ratio}); give a closer reference or check the lit fibers"
        )
        raise FitError(msg)
    return k_best, d_best, s_best


def _merge_pieces(traces, ids, max_overlap=16.0):
    """Join traces that took the same id and do not overlap in x: the two ends of an order whose
    middle is off the frame. One Legendre fit to both pieces' centres; x_valid becomes the hull
    (the centre itself tells where the order is off the frame). Overlapping duplicates raise."""
    keep = np.ones(len(traces), dtype=bool)
    coef = traces.coefficients.copy()
    x_valid = traces.x_valid.copy()
    n_merged = 0
    for k in np.unique(ids[ids >= 0]):
        rows = np.flatnonzero(ids == k)
        if rows.size == 1:
            continue
        rows = rows[np.argsort(x_valid[rows, 0])]
        if np.any(x_valid[rows[1:], 0] < x_valid[rows[:-1], 1] - max_overlap):
            msg = (
                f"identify_traces: {rows.size} found traces overlapping in x match the same reference "
                f"trace (rows {rows.tolist()})"
            )
            raise FitError(msg)
        xs, ys = [], []
        for r in rows:
            x = np.linspace(x_valid[r, 0], x_valid[r, 1], 64)
            xs.append(x)
            ys.append(traces[[r]].center(x)[0])
        x, y = np.concatenate(xs), np.concatenate(ys)
        coef[rows[0]] = legendre.legfit(traces.normalised_x(x), y, traces.degree)
        x_valid[rows[0]] = (x_valid[rows, 0].min(), x_valid[rows, 1].max())
        keep[rows[1:]] = False
        n_merged += rows.size - 1
    merged = replace(traces, coefficients=coef, x_valid=x_valid)
    idx = np.flatnonzero(keep)
    return merged[idx], ids[idx], n_merged


def identify_traces(
    traces, reference, *, fibers, columns=None, max_shift=100.0, max_scale=0.005, tolerance=2.0, min_ratio=1.2
) -> Traces:
    """Give found traces their physical order and fiber id by matching a reference table.

    Parameters
    ----------
    traces : Traces
        Found traces (their ``orders``/``fibers`` are ignored), full-detector coordinates.
    reference : Traces
        Reference table, e.g. ``nres.instrument.reference_traces(site)`` (any fibers, any orders).
    fibers : sequence of int
        Fiber ids lit in the flat (only these reference traces are candidates).
    columns : sequence of float, optional
        Full-detector x where the comb of centres is matched; default 3 columns spread over the
        found traces. A trace takes the id found at the column nearest its middle where it is valid;
        columns that disagree raise ``FitError``.
    max_shift : float
        Largest |y shift| (px) searched.
    max_scale : float
        Largest |scale - 1| searched (about the detector middle). Keep it below ~0.015: one order
        step of the NRES order spacing is close to a scale of 1.016.
    tolerance : float
        Largest distance (px) between a found centre and its matched reference centre after the fit.
    min_ratio : float
        The best match's score must exceed this factor times any differently-assigning rival's.

    Returns
    -------
    Traces
        The input traces with ``orders``/``fibers`` set, sorted by (fiber, order); ``meta`` gets
        ``IDSHIFT`` and ``IDSCALE`` (median over columns) and ``IDMERGED``: the number of pieces
        joined (the two ends of an order whose middle is off the frame take the same id and are
        joined into one trace, whose ``x_valid`` is the hull of the pieces).

    Raises
    ------
    InvalidParameterError
        ``traces``/``reference`` are not :class:`~nres.traces.Traces`, or the reference has no trace
        of the lit fibers.
    FitError
        Too few traces match, the match is ambiguous, columns disagree, or two traces overlapping
        in x take the same id.
    """
    for name, value in (("traces", traces), ("reference", reference)):
        if not isinstance(value, Traces):
            msg = f"{name}: expected nres.traces.Traces, got {type(value).__name__}"
            raise InvalidParameterError(msg)
    fibers = tuple(int(f) for f in fibers)
    ref = reference.select(fibers=fibers)
    if len(ref) == 0:
        msg = f"identify_traces: the reference has no traces of fibers {fibers}"
        raise InvalidParameterError(msg)
    if columns is None:
        lo = np.percentile(traces.x_valid[:, 0], 10)
        hi = np.percentile(traces.x_valid[:, 1], 90)
        columns = np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), 3)
    columns = np.atleast_1d(np.asarray(columns, dtype=np.float64))
    ids = np.full((len(traces), columns.size), -1)
    shifts, scales = [], []
    for c, x in enumerate(columns):
        on = traces.valid([x])[:, 0]
        ron = ref.valid([x])[:, 0]
        if on.sum() < 3 or ron.sum() < 3:
            continue
        found = traces.center([x])[on, 0]
        refy = ref.center([x])[ron, 0]
        k, d, s = _match_column(
            found,
            refy,
            max_shift=max_shift,
            max_scale=max_scale,
            tolerance=tolerance,
            min_ratio=min_ratio,
            x=x,
        )
        rows = np.flatnonzero(ron)
        ids[np.flatnonzero(on), c] = np.where(k >= 0, rows[np.maximum(k, 0)], -1)
        shifts.append(d)
        scales.append(s)
    if not shifts:
        msg = "identify_traces: no column has at least 3 found and 3 reference traces"
        raise FitError(msg)
    out = np.full(len(traces), -1)
    middle = traces.x_valid.mean(axis=1)
    for i in range(len(traces)):
        have = np.flatnonzero(ids[i] >= 0)
        if have.size == 0:
            continue
        if np.unique(ids[i, have]).size > 1:
            msg = (
                f"identify_traces: trace {i} (y={traces.center([middle[i]])[i, 0]:.1f} at "
                f"x={middle[i]:.0f}) gets different ids at different columns"
            )
            raise FitError(msg)
        out[i] = ids[i, have[0]]
    if not (out >= 0).any():
        msg = "identify_traces: no trace could be identified"
        raise FitError(msg)
    traces, out, n_merged = _merge_pieces(traces, out)
    keep = out >= 0
    sub = traces[np.flatnonzero(keep)]
    meta = dict(
        sub.meta, IDSHIFT=float(np.median(shifts)), IDSCALE=float(np.median(scales)), IDMERGED=n_merged
    )
    ident = replace(sub, orders=ref.orders[out[keep]], fibers=ref.fibers[out[keep]], meta=meta)
    order = np.lexsort((ident.orders, ident.fibers))
    return ident[order]
