"""The original's ThAr line finder (``thar_catalog``, idl-wavecal.md 4), for the legacy path.

Ported from the specification, not the IDL source: twice boxcar-3 smoothing (ends unchanged),
peaks strictly falling for 2 px on both sides, a position-dependent noise from running medians,
background = lower quartile point within +-50 px, acceptance sig/noise > threshold, and the
3-point parabola centroid and width. IDL semantics kept: MEDIAN of an even count is the upper
middle element; boxcars leave the ends unchanged and an even boxcar width is made odd; running
medians truncate their window at the ends (as GDL, which made the reference outputs).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["thar_catalog"]

_HALF = 50  # background / noise half-window, px
_QHWID = 50  # running-median width


def _idl_median(a):
    """IDL MEDIAN of a 1-D array: the upper middle element for an even count."""
    s = np.sort(a)
    return s[s.size // 2]


def _quartile(a):
    """IDL ``quartile``: (q0, q1) = medians of the values below / at-or-above the median."""
    med = _idl_median(a)
    lo, hi = a[a < med], a[a >= med]
    q0 = _idl_median(lo) if lo.size else med
    q1 = _idl_median(hi) if hi.size else med
    return q0, q1


def _smooth(a, width):
    """IDL SMOOTH (boxcar) without edge keywords: an even width becomes odd, ends unchanged."""
    w = width + 1 if width % 2 == 0 else width
    h = w // 2
    out = a.copy()
    c = np.concatenate([[0.0], np.cumsum(a)])
    out[h : a.size - h] = (c[w:] - c[:-w]) / w
    return out


def _running_median(a, width):
    """MEDIAN(a, width) as GDL computes it: the upper-middle of the ``width`` neighbours
    ``[i - width // 2, i + width // 2 - 1]``, the window truncated at the ends.

    (IDL documents the ends as left unchanged; the GDL reference outputs in
    ``idl_reference/thar`` are reproduced only with truncated windows, which is what they are.)
    """
    h = width // 2
    n = a.size
    out = ndimage.median_filter(a, size=width, mode="nearest")  # rank width // 2: the upper middle
    for i in [*range(min(h, n)), *range(max(n - h, 0), n)]:
        window = np.sort(a[max(i - h, 0) : min(i + h, n)])
        out[i] = window[window.size // 2]
    return out


def _one_order(row, threshold):
    nx = row.size
    tt = _smooth(_smooth(row, 3), 3)
    # candidates: strictly falling for 2 px on both sides (circular neighbours, as IDL SHIFT)
    r1, l1 = np.roll(tt, -1), np.roll(tt, 1)
    r2, l2 = np.roll(tt, -2), np.roll(tt, 2)
    cand = (tt > r1) & (tt > l1) & (r1 > r2) & (l1 > l2)
    idx = np.flatnonzero(cand)
    idx = idx[(idx > 1) & (idx <= nx - 2)]
    # order-wide noise floor
    dtt = tt - _running_median(tt, _QHWID)
    q0, q1 = _quartile(dtt)
    noisec = (q1 - q0) / 1.35
    # position-dependent noise
    s = np.sort(tt)
    zc = np.clip(tt, s[int(0.05 * nx)], s[int(0.95 * nx)])
    zd2 = (zc - _running_median(zc, _QHWID)) ** 2
    zd2s = _smooth(_smooth(zd2, _QHWID), _QHWID)
    znoi = np.maximum(np.sqrt(np.maximum(zd2s, 0.0)), noisec)
    out = []
    for i in idx:
        lo, hi = max(i - _HALF, 0), min(i + _HALF, nx - 1)
        bkg, _ = _quartile(tt[lo : hi + 1])
        sig = tt[i] - bkg
        noise = _idl_median(znoi[lo : hi + 1])
        if not sig / noise > threshold:
            continue
        den = tt[i - 1] + tt[i + 1] - 2.0 * tt[i]
        ds = -0.5 * (tt[i + 1] - tt[i - 1]) / den
        wid = 2.0 * np.sqrt(sig / (2.0 * tt[i] - tt[i - 1] - tt[i + 1]))
        out.append((i + ds, sig * wid, wid, sig, noise, i))
    return np.array(out).reshape(-1, 6), tt


def thar_catalog(flux, *, threshold=4.5):
    """Lines of every order as the original's ``thar_catalog`` (gsw = 0) found them.

    Parameters
    ----------
    flux : ndarray (n_order, nx)
        Extracted ThAr spectra (any units; the original used flat-fielded counts).
    threshold : float
        Acceptance sig / noise (the original: 4.5).

    Returns
    -------
    dict of ndarray
        ``row`` (index into ``flux``), ``xpos`` (px, 0-based index), ``amp`` (sig x wid), ``wid``
        (about 2 sigma of the smoothed line), ``sig`` (peak above the lower-quartile background),
        ``noise``, ``peak`` (integer pixel of the maximum); and ``smoothed`` (n_order, nx), the
        doubly smoothed spectra.
    """
    flux = np.asarray(flux, dtype=np.float64)
    rows, parts, smoothed = [], [], []
    for k, row in enumerate(flux):
        res, tt = _one_order(row, float(threshold))
        rows.append(np.full(res.shape[0], k, dtype=np.int64))
        parts.append(res)
        smoothed.append(tt)
    res = np.concatenate(parts) if parts else np.zeros((0, 6))
    return {
        "row": np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
        "xpos": res[:, 0],
        "amp": res[:, 1],
        "wid": res[:, 2],
        "sig": res[:, 3],
        "noise": res[:, 4],
        "peak": res[:, 5].astype(np.int64),
        "smoothed": np.array(smoothed),
    }
