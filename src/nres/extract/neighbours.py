"""Traces of the orders cut by a frame's edges: predicted from a reference table, so that their light
on the frame is modelled.

A window of the detector (:mod:`nres.window`) cuts the orders at its top and bottom: some are partly
on the frame, some only reach it with the edge of their aperture or their profile wings. Tracing
measures only what it can centroid, so their light would otherwise be taken for scattered light and
be missing from the joint extraction's neighbour model (3634 e- of "background" in the bottom row of
a simulated 8-order flat window whose truth is 100 e-, ringing +-300 e- through the whole window).
:func:`complete_traces` predicts these traces from a reference table and the measured traces: the
offset ``measured - reference`` of the nearest wholly measured orders of the same fiber, a function
of x, is extrapolated linearly in order number (accurate to ~0.02 px on NRES geometry, where the
reference alone is 1-3 px off and a polynomial in order of the measured traces 0.1-0.3 px).
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import legendre

from ..errors import InvalidParameterError
from ..traces import Traces
from ..window import window_origin

__all__ = ["complete_traces"]

#: columns between the samples fitted for a predicted trace (traces are smooth on 100-px scales)
_SAMPLE_STEP = 8
#: fewest columns where a cut trace is wholly on the frame for its measurement to set the offset
_MIN_MEASURED = 32


def _frame_geometry(frame):
    data = getattr(frame, "data", None)
    if data is None or np.ndim(data) != 2:
        msg = f"complete_traces: frame must be a 2-D CCDData/NDData, got {type(frame).__name__}"
        raise InvalidParameterError(msg)
    y0, x0 = window_origin(getattr(frame, "meta", None))
    return np.shape(data), y0, x0


def complete_traces(traces, frame, *, reference, reach=None, n_beyond=2) -> Traces:
    """Add (or re-predict) the traces of the orders cut by the frame's top and bottom edges.

    For each fiber of ``traces``, the *anchors* are its traces whose aperture is wholly on the frame
    at every column where the reference puts the order on the detector. Every other order of the
    fiber in ``reference``, up to ``n_beyond`` orders beyond the anchors, whose light reaches the frame
    (centre within ``reach`` px of it) is predicted as ``reference + offset``, the offset (a function
    of x) linearly extrapolated in order from the two nearest anchors. A measured cut trace (found
    partly on the frame) is replaced by its prediction moved by the median difference over the
    columns where it is wholly on the frame (its centroids elsewhere are cut by the edge). Orders
    wholly on the frame that ``traces`` lacks are not added: only the frame's edges are completed.

    Parameters
    ----------
    traces : Traces
        Identified traces measured on ``frame`` (full-detector coordinates).
    frame : CCDData
        The frame they were measured on (its shape and window origin are used).
    reference : Traces
        Reference table with the same fibers (e.g. ``nres.instrument.reference_traces(site)``).
    reach : float or None
        Distance (px) from the frame within which a trace's light counts; default ``2 *
        box_height``, the extent of the joint profiles (:func:`~nres.extract.measure_profiles`).
    n_beyond : int
        Most orders predicted beyond the outermost anchor of a fiber.

    Returns
    -------
    Traces
        ``traces`` with the cut orders predicted, sorted by (fiber, order). The added orders (not
        in ``traces``) are *nuisance* traces (``nuisance`` True): modelled, not extracted; so is a
        measured cut trace whose aperture is nowhere wholly on the frame. ``x_valid`` of a
        predicted trace is the reference's, within the frame's columns. ``meta``: ``NCOMPLET``
        traces predicted, ``NNUISANC`` nuisance traces, ``CMPLDEV`` the largest |measured -
        predicted| (px) of a cut trace where it was measured (-1 if none).
    """
    if not isinstance(traces, Traces) or not isinstance(reference, Traces):
        msg = "complete_traces: traces and reference must be nres.traces.Traces"
        raise InvalidParameterError(msg)
    (ny, nx), y0, x0 = _frame_geometry(frame)
    half = 0.5 * traces.box_height
    reach = 2.0 * traces.box_height if reach is None else float(reach)
    xf = np.arange(nx, dtype=np.float64) + x0
    xs = np.unique(np.r_[xf[::_SAMPLE_STEP], xf[-1]])
    found_c = traces.center(xs) - y0
    found_v = traces.valid(xs)
    ref_c = reference.center(xs) - y0
    ref_v = reference.valid(xs)

    def wholly(c):
        return (c - half >= -0.5) & (c + half <= ny - 0.5)

    keep = np.ones(len(traces), dtype=bool)
    added = []  # (fiber, order, y samples, valid samples, x_valid, nuisance)
    max_dev = -1.0
    for fib in np.unique(traces.fibers[traces.fibers >= 0]):
        ref_rows = {int(m): j for j, m in enumerate(reference.orders) if reference.fibers[j] == fib}
        mine = {int(traces.orders[i]): i for i in np.flatnonzero(traces.fibers == fib)}
        anchors = []
        for m, i in mine.items():
            j = ref_rows.get(m)
            if j is None or not ref_v[j].any():
                continue
            need = ref_v[j]
            if np.all(found_v[i][need] & wholly(found_c[i][need])):
                anchors.append(m)
        if not anchors:
            continue
        anchors = np.array(sorted(anchors))
        offset = {m: found_c[mine[m]] - ref_c[ref_rows[m]] for m in anchors}
        for m in range(int(anchors[0]) - int(n_beyond), int(anchors[-1]) + int(n_beyond) + 1):
            j = ref_rows.get(m)
            if j is None or m in offset or not ref_v[j].any():
                continue
            near = anchors[np.argsort(np.abs(anchors - m), kind="stable")[:2]]
            d = offset[int(near[0])]
            if near.size == 2:
                d = d + (m - near[0]) * (offset[int(near[1])] - d) / (near[1] - near[0])
            pred = ref_c[j] + d
            v = ref_v[j]
            if not np.any(v & (pred + reach >= -0.5) & (pred - reach <= ny - 0.5)):
                continue  # its light does not reach the frame
            if np.all(wholly(pred)[v]) and m not in mine:
                continue  # an order wholly on the frame that was not found: not the edges' business
            i = mine.get(m)
            if i is not None:
                # a measured cut trace: the prediction moved onto its centroids where they are whole
                good = found_v[i] & wholly(found_c[i]) & v
                if good.sum() >= _MIN_MEASURED // _SAMPLE_STEP:
                    diff = found_c[i][good] - pred[good]
                    pred = pred + np.median(diff)
                    max_dev = max(max_dev, float(np.max(np.abs(diff - np.median(diff)))))
                keep[i] = False
            lo, hi = reference.x_valid[j]
            x_valid = (max(lo, xf[0]), min(hi, xf[-1]))
            if x_valid[1] < x_valid[0]:
                continue
            # an order the tracing did not find is only modelled, even if a few columns of its
            # aperture are wholly on the frame: the frame's extracted orders stay those found
            added.append((int(fib), m, pred + y0, v, x_valid, i is None or not np.any(wholly(pred)[v])))
    if not added:
        meta = dict(traces.meta, NCOMPLET=0, NNUISANC=int(traces.nuisance.sum()), CMPLDEV=-1.0)
        return Traces(traces.coefficients, traces.orders, traces.fibers, x_domain=traces.x_domain,
                      x_valid=traces.x_valid, box_height=traces.box_height, meta=meta,
                      nuisance=traces.nuisance)  # fmt: skip
    t = traces.normalised_x(xs)
    coefs = []
    for _, _, y, v, _, _ in added:
        deg = min(traces.degree, int(v.sum()) - 1)
        c = np.zeros(traces.degree + 1)
        c[: deg + 1] = legendre.legfit(t[v], y[v], deg)
        coefs.append(c)
    kept = traces[np.flatnonzero(keep)]
    orders = np.r_[kept.orders, [a[1] for a in added]].astype(np.int64)
    fibers = np.r_[kept.fibers, [a[0] for a in added]].astype(np.int64)
    nuisance = np.r_[kept.nuisance, [a[5] for a in added]].astype(bool)
    meta = dict(traces.meta, NCOMPLET=len(added), NNUISANC=int(nuisance.sum()), CMPLDEV=max_dev)
    out = Traces(
        np.vstack([kept.coefficients, coefs]),
        orders,
        fibers,
        x_domain=traces.x_domain,
        x_valid=np.vstack([kept.x_valid, [a[4] for a in added]]),
        box_height=traces.box_height,
        meta=meta,
        nuisance=nuisance,
    )
    return out[np.lexsort((out.orders, out.fibers))]
