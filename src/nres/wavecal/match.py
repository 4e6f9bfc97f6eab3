"""Start offset by pattern cross-correlation, and matching of found lines to a line list.

``find_offset`` compares the x positions of the found lines with those the starting model
predicts for the list lines, over every (fiber, order) and for an order relabelling of -1, 0, +1:
the histogram of all pair differences within ``+-max_shift`` px peaks at the model's offset. Each
order then gets its own offset from the pair differences near the global one, which absorbs
order-to-order errors of an old model.

``match_lines`` pairs each found line with the nearest list line in wavelength when it lies within
``tolerance`` pixels and the list line has no other list line within ``isolation`` pixels (so a
blend in the list cannot be mismatched); a list line claimed by two found lines of one order is
dropped.
"""

from __future__ import annotations

import numpy as np

__all__ = ["find_offset", "match_lines"]


def _predicted_x(grid_orders, grid, lam_list, bright, per_order):
    """Predicted pixels of the brightest list lines in each order of ``grid`` (order, 4096)."""
    out = []
    for row in grid:
        sel = np.flatnonzero((lam_list > row[0]) & (lam_list < row[-1]))
        if sel.size > per_order:
            sel = sel[np.argsort(bright[sel])[::-1][:per_order]]
        out.append(np.interp(lam_list[sel], row, np.arange(row.size, dtype=float)))
    return out


def find_offset(
    found, lam_list, bright, grid_of, *, max_shift=20.0, order_shifts=(-1, 0, 1), per_order=60, bin_px=0.25
):
    """Global (order shift, x shift) and per-(fiber, order) x shifts of a starting model.

    Parameters
    ----------
    found : QTable
        Usable found lines (fiber, order, x, peak_snr).
    lam_list, bright : ndarray
        List wavelengths (nm, sorted) and intensities (NaN/0 -> all treated equal).
    grid_of : callable
        ``grid_of(fiber, order)`` -> model wavelengths (nm) at pixels 0..4095, or None if the
        order is outside the model.
    max_shift : float
        Largest |x shift| searched, px.

    Returns
    -------
    order_shift : int
        True order = spectrum label + order_shift.
    shift : float
        Global x shift (px): a line predicted at x lands at x + shift.
    per_order : dict
        (fiber, label order) -> x shift (px).
    score : ndarray
        Peak height of the pair histogram for each of ``order_shifts``.
    """
    bright = np.where(np.isfinite(bright) & (bright > 0), bright, 1.0)
    edges = np.arange(-max_shift - 2.0, max_shift + 2.0 + bin_px / 2, bin_px)
    centres = 0.5 * (edges[1:] + edges[:-1])
    keys = sorted({(int(f), int(m)) for f, m in zip(found["fiber"], found["order"], strict=True)})
    xs = {}
    for f, m in keys:
        sel = (found["fiber"] == f) & (found["order"] == m)
        x = np.asarray(found["x"][sel], dtype=float)
        snr = np.asarray(found["peak_snr"][sel], dtype=float)
        xs[(f, m)] = x[np.argsort(snr)[::-1][:per_order]]
    best = None
    scores = []
    diffs_by = {}
    for k in order_shifts:
        diffs = {}
        for f, m in keys:
            grid = grid_of(f, m + k)
            if grid is None:
                continue
            pred = _predicted_x(None, grid[None], lam_list, bright, per_order)[0]
            d = (xs[(f, m)][:, None] - pred[None, :]).ravel()
            diffs[(f, m)] = d[np.abs(d) <= max_shift + 2.0]
        alld = np.concatenate(list(diffs.values())) if diffs else np.zeros(0)
        hist, _ = np.histogram(alld, edges)
        # smooth by +-1 px: a model off by a fraction of a pixel spreads the peak over bins
        kern = np.ones(int(round(1.0 / bin_px)) * 2 + 1)
        hist = np.convolve(hist, kern, mode="same")
        inside = np.abs(centres) <= max_shift
        i = int(np.argmax(np.where(inside, hist, -1)))
        scores.append(hist[i])
        if best is None or hist[i] > best[0]:
            best = (hist[i], k, centres[i])
        diffs_by[k] = diffs
    _, k, shift = best
    # refine globally, then per order, on pair differences near the peak
    allk = np.concatenate(list(diffs_by[k].values()))
    near = allk[np.abs(allk - shift) < 1.0]
    shift = float(np.median(near)) if near.size else float(shift)
    per = {}
    for key, d in diffs_by[k].items():
        close = d[np.abs(d - shift) < 3.0]
        if close.size >= 3:
            h, e = np.histogram(close, np.arange(shift - 3.0, shift + 3.0 + 1e-9, bin_px))
            h = np.convolve(h, np.ones(5), mode="same")
            c = 0.5 * (e[1:] + e[:-1])[int(np.argmax(h))]
            sel = close[np.abs(close - c) < 0.75]
            per[key] = float(np.median(sel)) if sel.size >= 3 else shift
        else:
            per[key] = shift
    return int(k), shift, per, np.asarray(scores)


def match_lines(lam_pred, dispersion, group, lam_list, *, tolerance, isolation):
    """Index of the matched list line of each found line (-1 = unmatched).

    Parameters
    ----------
    lam_pred : ndarray (n,)
        Predicted wavelength of each found line, nm.
    dispersion : ndarray (n,)
        Local dispersion at each found line, nm/px (positive).
    group : ndarray of int (n,)
        Group id (one per fiber and order): a list line may be used once per group.
    lam_list : ndarray (k,)
        Sorted list wavelengths, nm.
    tolerance, isolation : float
        Acceptance radius and the list-line isolation radius, px.

    Returns
    -------
    ndarray of int64 (n,)
    """
    j = np.clip(np.searchsorted(lam_list, lam_pred), 1, lam_list.size - 1)
    left = lam_list[j - 1]
    right = lam_list[j]
    pick = np.where(np.abs(lam_pred - left) <= np.abs(right - lam_pred), j - 1, j)
    diff_px = np.abs(lam_pred - lam_list[pick]) / dispersion
    gap_lo = np.where(pick > 0, lam_list[pick] - lam_list[np.maximum(pick - 1, 0)], np.inf)
    gap_hi = np.where(
        pick < lam_list.size - 1, lam_list[np.minimum(pick + 1, lam_list.size - 1)] - lam_list[pick], np.inf
    )
    isolated = np.minimum(gap_lo, gap_hi) / dispersion > isolation
    idx = np.where((diff_px <= tolerance) & isolated, pick, -1)
    # one found line per list line and group
    key = group.astype(np.int64) * (lam_list.size + 1) + idx
    ok = idx >= 0
    uniq, counts = np.unique(key[ok], return_counts=True)
    dup = np.isin(key, uniq[counts > 1]) & ok
    idx[dup] = -1
    return idx
