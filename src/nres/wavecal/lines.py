"""Emission-line finding and sub-pixel centring in extracted arc spectra (``find_lines``).

Peaks are local maxima of the 3-pixel running mean whose central pixel stands ``threshold``
standard deviations above a lower-envelope background. Each is centred by a weighted fit of a
pixel-integrated Gaussian plus a constant (Levenberg-Marquardt, numba) over ``+-half_window``
pixels; the centre error comes from the inverse normal matrix with inverse-variance weights, so it
is the photon + read-noise error of the centre. The original's 3-point parabola on a doubly
smoothed spectrum (idl-wavecal.md 4) is the legacy ``centroid="idl3pt"``.
"""

from __future__ import annotations

import enum

import numpy as np
from astropy.table import QTable
from scipy import ndimage

from .. import legacy as _legacy
from ..errors import InvalidParameterError
from ..flags import Flag
from . import _kernels
from .idl_catalog import thar_catalog

__all__ = ["LineFlag", "find_lines", "USABLE"]

_FIND = "find_lines"
_legacy.register(
    _FIND,
    "centroid",
    choices=("gaussian", "idl3pt"),
    default="gaussian",
    legacy="idl3pt",
    reference="idl-wavecal.md 4 (step 6) and 13 (replicate 1)",
    summary="3-point parabola vertex on a twice boxcar-3 smoothed spectrum (biased up to 0.012 px)",
)


class LineFlag(enum.IntFlag):
    """Why a found line may be unfit for the wavelength solution (``flags`` column, uint16)."""

    BLEND = 1 << 0  #: another peak within ``blend_separation`` px
    SATURATED = 1 << 1  #: a pixel of its window is flagged SATURATED (or BLEED)
    ORDER_EDGE = 1 << 2  #: its window reaches the end of the order or a masked pixel
    FIT_FAILED = 1 << 3  #: the Gaussian fit did not converge or left its window
    WIDTH = 1 << 4  #: fitted width far from the order's median width (a blend or artefact)


#: Lines with none of these flags are used by the solver.
USABLE = 0


def _background(data, size):
    """Lower envelope: grey opening (min then max filter) smoothed by a running mean, per row."""
    low = ndimage.minimum_filter1d(data, size, axis=-1, mode="nearest")
    low = ndimage.maximum_filter1d(low, size, axis=-1, mode="nearest")
    return ndimage.uniform_filter1d(low, size, axis=-1, mode="nearest")


def _candidates(data, variance, bad, threshold, half_window):
    """(row, pixel) of peaks: maxima of the 3-px mean, max within +-2 px, S/N above threshold.

    Bad pixels are replaced by the background before smoothing: scipy's running mean is a moving
    sum, so one NaN (a masked pixel, the part of a partial order outside the window) would make
    every later pixel of the row NaN and hide all the lines after it.
    """
    fill = bad | ~np.isfinite(data)
    background = _background(np.where(fill, np.nan_to_num(data), data), 8 * half_window + 1)
    data = np.where(fill, background, data)
    smooth = ndimage.uniform_filter1d(data, 3, axis=-1, mode="nearest")
    local = ndimage.maximum_filter1d(smooth, 5, axis=-1, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = (data - background) / np.sqrt(np.where(variance > 0, variance, np.inf))
    peak = (smooth == local) & (snr > threshold) & ~bad
    peak[:, :1] = peak[:, -1:] = False
    rows, cols = np.nonzero(peak)
    return rows, cols, background, snr


def find_lines(
    spec,
    *,
    threshold=10.0,
    half_window=4,
    blend_separation=None,
    sigma_guess=1.3,
    max_iter=50,
    idl_threshold=4.5,
    fibers=None,
    centroid=None,
    legacy=False,
) -> QTable:
    """Find and centre the emission lines of every (fiber, order) of an extracted arc.

    Parameters
    ----------
    spec : EchelleSpectrum
        Extracted arc, data (fiber, order, pixel) in electrons with a variance; ``mask``/``flags``
        mark bad pixels (SATURATED/BLEED pixels make a line SATURATED, other bad pixels ORDER_EDGE).
    threshold : float
        Minimum peak signal-to-noise of the central pixel above the local background.
    half_window : int
        Fit window half-width, px (the window is ``2 half_window + 1`` pixels).
    blend_separation : float or None
        Lines closer than this (px) to another peak are flagged BLEND (default ``2 half_window``).
    sigma_guess : float
        Starting Gaussian sigma of a line, px.
    max_iter : int
        Levenberg-Marquardt iterations per line.
    idl_threshold : float
        With ``centroid="idl3pt"``: the original's acceptance sig / noise (4.5).
    fibers : sequence of int or None
        Fibers to search (default all of ``spec.fibers``).
    centroid : {"gaussian", "idl3pt"}, optional
        "gaussian" (default): the fit above. "idl3pt" (legacy): the original's ``thar_catalog`` -
        its detection (sig/noise > ``idl_threshold`` with its noise model) and its 3-point
        parabola on the twice boxcar-3 smoothed data; ``x_err`` is its width / sqrt(max(amp, 10))
        rule, ``sigma`` half its width, ``flux`` its amp.
    legacy : bool
        Shorthand for every legacy option (``centroid="idl3pt"``).

    Returns
    -------
    QTable, one row per line, sorted by (fiber, order, x)
        ``fiber``, ``order`` (m), ``x`` (full-detector px), ``x_err`` (px), ``flux`` (total
        electrons of the line), ``flux_err``, ``sigma`` (Gaussian sigma, px), ``background``
        (e-/px), ``peak_snr``, ``chi2_dof``, ``flags`` (uint16 :class:`LineFlag` bits).
        ``meta`` records the options.

    Raises
    ------
    InvalidParameterError
        ``spec`` is not an EchelleSpectrum or has no variance, a requested fiber is not in it,
        or an option is out of range.
    """
    opts = _legacy.resolve(_FIND, legacy, centroid=centroid)
    if not all(hasattr(spec, a) for a in ("fibers", "orders", "pixel", "variance")):
        msg = f"find_lines: spec must be an EchelleSpectrum, got {type(spec).__name__}"
        raise InvalidParameterError(msg)
    if spec.variance is None:
        msg = "find_lines: spec has no variance (VarianceUncertainty); centre errors need it"
        raise InvalidParameterError(msg)
    half_window = int(half_window)
    if half_window < 2 or not threshold > 0 or not sigma_guess > 0:
        msg = "find_lines: need half_window >= 2, threshold > 0 and sigma_guess > 0"
        raise InvalidParameterError(msg)
    blend = 2.0 * half_window if blend_separation is None else float(blend_separation)
    fiber_ids = np.asarray(spec.fibers) if fibers is None else np.atleast_1d(fibers)
    missing = [int(f) for f in fiber_ids if f not in set(np.asarray(spec.fibers).tolist())]
    if missing:
        msg = f"find_lines: fibers={missing} not in spec (fibers {[int(f) for f in spec.fibers]})"
        raise InvalidParameterError(msg)
    fidx = np.array([int(np.flatnonzero(np.asarray(spec.fibers) == f)[0]) for f in fiber_ids])
    data = np.ascontiguousarray(np.asarray(spec.data, dtype=np.float64)[fidx])
    variance = np.asarray(spec.variance, dtype=np.float64)[fidx]
    flags = np.asarray(spec.flags)[fidx]
    nf, no, nx = data.shape
    data2 = data.reshape(nf * no, nx)
    var2 = variance.reshape(nf * no, nx)
    flag2 = flags.reshape(nf * no, nx)
    sat2 = (flag2 & np.uint16(Flag.SATURATED | Flag.BLEED)) != 0
    bad2 = np.asarray(spec.mask)[fidx].reshape(nf * no, nx) | ~np.isfinite(data2) | ~(var2 > 0)
    other_bad = bad2 & ~sat2
    # non-finite pixels (extracted columns with no weight, e.g. flagged dead columns) are zeroed for
    # the legacy catalogue and the fits' starting parabola (_candidates fills them with the
    # background); they stay bad (zero weight; ORDER_EDGE for a line over them).
    data2 = np.where(np.isfinite(data2), data2, 0.0)
    rows, cols, background, snr = _candidates(data2, var2, other_bad, float(threshold), half_window)
    if opts["centroid"] == "idl3pt":
        catalog = thar_catalog(data2, threshold=float(idl_threshold))
        rows, cols = catalog["row"], catalog["peak"]

    lo = np.maximum(cols - half_window, 0)
    hi = np.minimum(cols + half_window + 1, nx)
    n = rows.size
    lflags = np.zeros(n, dtype=np.uint16)
    # window flags: ends of the order, masked pixels, saturation
    csum_bad = np.concatenate([np.zeros((nf * no, 1)), np.cumsum(other_bad, axis=1)], axis=1)
    csum_sat = np.concatenate([np.zeros((nf * no, 1)), np.cumsum(sat2, axis=1)], axis=1)
    edge = (cols - half_window < 0) | (cols + half_window >= nx)
    edge |= (csum_bad[rows, hi] - csum_bad[rows, lo]) > 0
    lflags[edge] |= np.uint16(LineFlag.ORDER_EDGE)
    lflags[(csum_sat[rows, hi] - csum_sat[rows, lo]) > 0] |= np.uint16(LineFlag.SATURATED)
    # blends: another peak of the same row closer than `blend`
    same_prev = np.concatenate([[False], rows[1:] == rows[:-1]])
    gap_prev = np.where(same_prev, np.diff(cols, prepend=-(10**9)), np.inf)
    gap_next = np.concatenate([gap_prev[1:], [np.inf]])
    lflags[(gap_prev < blend) | (gap_next < blend)] |= np.uint16(LineFlag.BLEND)

    weight = np.where(bad2 | sat2, 0.0, 1.0 / np.where(var2 > 0, var2, np.inf))
    if opts["centroid"] == "gaussian":
        flat = np.ascontiguousarray(data2.ravel())
        wflat = np.ascontiguousarray(weight.ravel())
        base = rows.astype(np.int64) * nx
        start = np.ascontiguousarray(base + lo)
        stop = np.ascontiguousarray(base + hi)
        # start: parabola through the 3 central pixels, area from the peak
        c = cols
        ym, y0, yp = data2[rows, np.maximum(c - 1, 0)], data2[rows, c], data2[rows, np.minimum(c + 1, nx - 1)]
        den = ym + yp - 2.0 * y0
        ds = np.where(den < 0, 0.5 * (ym - yp) / np.where(den < 0, den, -1.0), 0.0)
        ds = np.clip(ds, -0.5, 0.5)
        bkg0 = background[rows, c]
        init = np.empty((n, 4))
        init[:, 0] = np.maximum(y0 - bkg0, 1.0) * np.sqrt(2 * np.pi) * sigma_guess
        init[:, 1] = base + c + ds
        init[:, 2] = sigma_guess
        init[:, 3] = bkg0
        params, errors = np.empty((n, 4)), np.empty((n, 4))
        chi2, status = np.empty(n), np.empty(n, dtype=np.int64)
        _kernels.fit_gaussians(flat, wflat, start, stop, init, int(max_iter), params, errors, chi2, status)
        xpos = params[:, 1] - base
        npix = (
            (weight[rows[:, None], np.clip(lo[:, None] + np.arange(2 * half_window + 1), 0, nx - 1)] > 0)
            & (lo[:, None] + np.arange(2 * half_window + 1) < hi[:, None])
        ).sum(axis=1)
        chi2_dof = chi2 / np.maximum(npix - 4, 1)
        failed = (status != 0) | ~np.isfinite(errors[:, 1]) | (np.abs(xpos - cols) > half_window)
        lflags[failed] |= np.uint16(LineFlag.FIT_FAILED)
        flux, flux_err, sigma, sigma_err = params[:, 0], errors[:, 0], params[:, 2], errors[:, 2]
        x_err, bkg = errors[:, 1], params[:, 3]
        # widths far from the order's median: unresolved blends or artefacts
        ok = lflags == 0
        for r in np.unique(rows):
            sel = rows == r
            good = sel & ok
            if good.sum() >= 5:
                med = np.median(sigma[good])
                mad = 1.4826 * np.median(np.abs(sigma[good] - med))
                wide = sel & (np.abs(sigma - med) > max(5 * mad, 0.15 * med))
                lflags[wide] |= np.uint16(LineFlag.WIDTH)
    else:
        xpos, wid, flux = catalog["xpos"], catalog["wid"], catalog["amp"]
        flux_err = np.full(n, np.nan)
        sigma = wid / 2.0  # the original's width is about 2 sigma
        sigma_err = np.full(n, np.nan)
        # the original's expected position error (thar_setup xperr) in pixels
        x_err = wid / np.sqrt(np.maximum(flux, 10.0))
        bkg = catalog["smoothed"][rows, cols] - catalog["sig"]
        chi2_dof = np.full(n, np.nan)
        lflags[~np.isfinite(xpos)] |= np.uint16(LineFlag.FIT_FAILED)

    pixel = np.asarray(spec.pixel, dtype=np.float64)
    # pixel index -> full-detector x (columns are contiguous in an extracted spectrum)
    x_full = np.interp(xpos, np.arange(nx), pixel, left=np.nan, right=np.nan)
    x_full = np.where(np.isfinite(x_full), x_full, pixel[0] + xpos)
    orders = np.asarray(spec.orders)
    table = QTable()
    table["fiber"] = fiber_ids[rows // no].astype(np.int64)
    table["order"] = orders[rows % no].astype(np.int64)
    table["x"] = x_full
    table["x_err"] = x_err
    table["flux"] = flux
    table["flux_err"] = flux_err
    table["sigma"] = sigma
    table["sigma_err"] = sigma_err
    table["background"] = bkg
    table["peak_snr"] = snr[rows, cols]
    table["chi2_dof"] = chi2_dof
    table["flags"] = lflags
    table.meta.update(
        threshold=float(threshold),
        half_window=half_window,
        blend_separation=blend,
        centroid=opts["centroid"],
    )
    return table
