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


def _predicted_x(grid, lam_list, bright, per_order):
    """Predicted pixels of the brightest list lines inside one order's model grid (4096,)."""
    sel = np.flatnonzero((lam_list > grid[0]) & (lam_list < grid[-1]))
    if sel.size > per_order:
        sel = sel[np.argsort(bright[sel])[::-1][:per_order]]
    return np.interp(lam_list[sel], grid, np.arange(grid.size, dtype=float))


def find_offset(
    found,
    lam_list,
    bright,
    grid_of,
    *,
    max_shift=20.0,
    max_stretch=16.0,
    order_shifts=(-1, 0, 1),
    per_order=60,
    bin_px=0.5,
):
    """Global (order relabel, x shift, x stretch) and per-order shifts of a starting model.

    A line the model predicts at x is found at ``x + shift + stretch t`` (t = (x - 2047.5) /
    2047.5). The search scores every (order relabel, stretch) by the peak of the histogram of
    found-minus-predicted pair differences; each order then gets its own shift near the global one.

    Parameters
    ----------
    found : QTable
        Usable found lines (fiber, order, x, peak_snr).
    lam_list, bright : ndarray
        List wavelengths (nm, sorted) and intensities (NaN/0 -> all treated equal).
    grid_of : callable
        ``grid_of(fiber, order)`` -> model wavelengths (nm) at pixels 0..4095, or None if the
        order is outside the model.
    max_shift, max_stretch : float
        Largest |shift| and |stretch| searched, px.

    Returns
    -------
    order_shift : int
        True order = spectrum label + order_shift.
    shift, stretch : float
        Global x shift and stretch (px).
    per_order : dict
        (fiber, label order) -> x shift (px) at the order centre (the stretch comes on top).
    score : ndarray
        Peak height of the best pair histogram for each of ``order_shifts``.
    """
    bright = np.where(np.isfinite(bright) & (bright > 0), bright, 1.0)
    reach = max_shift + max_stretch + 2.0
    nbin = int(np.ceil(2 * reach / bin_px)) + 1
    stretches = np.arange(-max_stretch, max_stretch + bin_px / 2, bin_px)
    keys = sorted({(int(f), int(m)) for f, m in zip(found["fiber"], found["order"], strict=True)})
    xs = {}
    for f, m in keys:
        sel = (found["fiber"] == f) & (found["order"] == m)
        x = np.asarray(found["x"][sel], dtype=float)
        snr = np.asarray(found["peak_snr"][sel], dtype=float)
        xs[(f, m)] = x[np.argsort(snr)[::-1][:per_order]]
    best = None
    scores = []
    pairs_by = {}
    for k in order_shifts:
        pairs = {}
        for f, m in keys:
            grid = grid_of(f, m + k)
            if grid is None:
                continue
            pred = _predicted_x(grid, lam_list, bright, per_order)
            d = (xs[(f, m)][:, None] - pred[None, :]).ravel()
            t = np.broadcast_to((pred[None, :] - 2047.5) / 2047.5, (xs[(f, m)].size, pred.size)).ravel()
            keep = np.abs(d) <= reach
            pairs[(f, m)] = (d[keep], t[keep])
        pairs_by[k] = pairs
        if not pairs:
            scores.append(0)
            continue
        d_all = np.concatenate([p[0] for p in pairs.values()])
        t_all = np.concatenate([p[1] for p in pairs.values()])
        top = (0, 0.0, 0.0)
        for b in stretches:
            r = d_all - b * t_all
            ok = np.abs(r) <= max_shift + 1.0
            h = np.bincount(np.round((r[ok] + reach) / bin_px).astype(np.int64), minlength=nbin)
            # a line spreads over neighbouring bins when the model is off by a fraction of a pixel
            h = h[:-2] + h[1:-1] + h[2:]
            i = int(np.argmax(h))
            if h[i] > top[0]:
                top = (int(h[i]), float(b), (i + 1) * bin_px - reach)
        scores.append(top[0])
        if best is None or top[0] > best[0]:
            best = (top[0], k, top[2], top[1])
    _, k, shift, stretch = best
    # refine the global shift, then each order's, on pair differences near the peak
    pairs = pairs_by[k]
    r_all = np.concatenate([p[0] - stretch * p[1] for p in pairs.values()])
    near = r_all[np.abs(r_all - shift) < 1.0]
    shift = float(np.median(near)) if near.size else float(shift)
    per = {}
    for key, (d, t) in pairs.items():
        r = d - stretch * t
        close = r[np.abs(r - shift) < 3.0]
        per[key] = shift
        if close.size >= 3:
            h, e = np.histogram(close, np.arange(shift - 3.0, shift + 3.0 + 1e-9, 0.25))
            h = np.convolve(h, np.ones(5), mode="same")
            c = 0.5 * (e[1:] + e[:-1])[int(np.argmax(h))]
            sel = close[np.abs(close - c) < 0.75]
            if sel.size >= 3:
                per[key] = float(np.median(sel))
    return int(k), shift, float(stretch), per, np.asarray(scores)


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
