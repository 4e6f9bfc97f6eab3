"""Blaze from an extracted lamp flat, flat fielding, and the original's blaze-subtracted spectrum.

:func:`measure_blaze` turns an extracted flat (:func:`~nres.extract.extract` of a LAMPFLAT) into a
relative blaze per (fiber, order): the flat divided by the maximum of its 11-column running median
over the order's interior (mk_flat1, idl-calib-trace-extract.md 11.1), with the flat's variance
scaled alike. Columns that deviate from the running median by more than ``kappa`` sigma (cosmic
rays, bad columns in the flat) are replaced by the median; faint columns are flagged LOW_SIGNAL.
The result is an :class:`~nres.spectrum.EchelleSpectrum` whose data *and* ``blaze`` plane are the
blaze, with its variance.

:func:`flat_correct` divides a spectrum by that blaze, propagating both variances and carrying
both flags. :func:`with_blaze` attaches it instead (``spec.normalized(by="blaze")`` divides later).
:func:`blaze_subtracted` is the original's apply_flat2 product for its RV method (11.2): within the
usable range of the flat each star order minus the flat scaled to it, ``R - amp F``.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.nddata import VarianceUncertainty
from astropy.table import QTable
from scipy.ndimage import median_filter, uniform_filter1d

from .. import legacy as _legacy
from ..errors import InvalidParameterError, MissingCalibrationError
from ..flags import FLAG_DTYPE, Flag
from ..provenance import record_provenance
from ..spectrum import EchelleSpectrum

__all__ = ["measure_blaze", "flat_correct", "with_blaze", "blaze_subtracted"]

_legacy.register(
    "measure_blaze",
    "outlier_rule",
    choices=("sigma", "idl"),
    default="sigma",
    legacy="idl",
    reference="idl-calib-trace-extract.md 11.1, 16 bug 18",
    summary="mk_flat1 replaced points with |d - median| >= 5 x smooth((d - median)^2, 51): a variance "
    "compared with a deviation; and set the flat to 0 below 0.01 or S/N 0.05",
)
_legacy.register(
    "blaze_subtracted",
    "badlam_fiber",
    choices=("absolute", "relative"),
    default="absolute",
    legacy="relative",
    reference="idl-calib-trace-extract.md 11.2, 16 bug 17",
    summary="apply_flat2 took the bad-wavelength mask of plane (fiber - first lit fiber): a fiber-2 "
    "star got fiber 1's mask",
)


def _rebuild(spec, **changes):
    """A new EchelleSpectrum like ``spec`` with some constructor arguments replaced."""
    fields = dict(
        uncertainty=spec.uncertainty,
        flags=spec.flags,
        wavelength=spec.wavelength,
        wavelength_medium=spec.wavelength_medium,
        wavelength_frame=spec.wavelength_frame,
        orders=spec.orders,
        fibers=spec.fibers,
        pixel=spec.pixel,
        blaze=spec.blaze,
        continuum=spec.continuum,
        meta=spec.meta,
    )
    data = changes.pop("data", u.Quantity(spec.data, spec.unit))
    fields.update(changes)
    return EchelleSpectrum(data, **fields)


def _running_median(d, width):
    """Running median of a 1-D row ignoring NaN (NaN filled from the nearest finite value)."""
    ok = np.isfinite(d)
    if not ok.any():
        return np.full_like(d, np.nan)
    idx = np.arange(d.size)
    filled = np.interp(idx, idx[ok], d[ok])
    return median_filter(filled, size=int(width), mode="nearest")


def measure_blaze(
    flat_spec,
    *,
    median_width=11,
    edge=51,
    kappa=5.0,
    min_blaze=0.01,
    min_snr=0.05,
    outlier_rule=None,
    legacy=False,
):
    """Relative blaze per (fiber, order) from an extracted lamp flat.

    Parameters
    ----------
    flat_spec : EchelleSpectrum
        Extracted flat (fiber, order, pixel) in electrons with variance.
    median_width : int
        Columns of the running median (odd).
    edge : int
        Columns at each end of an order excluded from the normalising maximum.
    kappa : float
        Outlier threshold (sigma of the flat's variance) for replacing a column by the median.
    min_blaze, min_snr : float
        Columns with blaze <= ``min_blaze`` or flat S/N <= ``min_snr`` are flagged LOW_SIGNAL.
    outlier_rule : {"sigma", "idl"} or None
        "sigma": ``|d - m| > kappa sqrt(V)``; "idl" (legacy): the original's rule (docs/legacy.md),
        also zeroing the LOW_SIGNAL columns as it did.
    legacy : bool
        All legacy options.

    Returns
    -------
    EchelleSpectrum
        Dimensionless blaze (max ~1 per order) as data and as ``blaze``, variance ``V / N^2`` (the
        normalisation N taken as noise-free), flags of the flat plus LOW_SIGNAL; ``meta["BLAZE"]``
        a QTable (fiber, order, norm, n_replaced).

    Raises
    ------
    InvalidParameterError
        Not an EchelleSpectrum with variance, or bad parameters.
    """
    opts = _legacy.resolve("measure_blaze", legacy, outlier_rule=outlier_rule)
    if not isinstance(flat_spec, EchelleSpectrum) or flat_spec.variance is None:
        msg = "measure_blaze: flat_spec must be an EchelleSpectrum with a variance (extract a LAMPFLAT)"
        raise InvalidParameterError(msg)
    if int(median_width) < 1 or int(median_width) % 2 == 0 or int(edge) < 0 or not kappa > 0:
        msg = (
            f"measure_blaze: need odd median_width, edge >= 0, kappa > 0; got {median_width}, {edge}, {kappa}"
        )
        raise InvalidParameterError(msg)
    data = np.asarray(flat_spec.data, dtype=np.float64)
    var = np.asarray(flat_spec.variance, dtype=np.float64)
    flags = flat_spec.flags.copy()
    usable = ~flat_spec.mask
    nf, no, nx = data.shape
    blaze = np.full(data.shape, np.nan)
    bvar = np.full(data.shape, np.nan)
    rows = []
    for f in range(nf):
        for o in range(no):
            d = np.where(usable[f, o], data[f, o], np.nan)
            if not np.isfinite(d).any():
                rows.append((flat_spec.fibers[f], flat_spec.orders[o], np.nan, 0))
                continue
            m = _running_median(d, median_width)
            dev = d - m
            if opts["outlier_rule"] == "sigma":
                bad = np.abs(dev) > kappa * np.sqrt(np.maximum(var[f, o], 0.0))
            else:
                sm = uniform_filter1d(np.nan_to_num(dev**2), 51, mode="nearest")
                bad = (d <= 0) | (np.abs(dev) >= 5.0 * sm)
            bad &= np.isfinite(d)
            d = np.where(bad, m, d)
            inner = m[int(edge) : nx - int(edge) - 1] if nx > 2 * int(edge) + 1 else m
            norm = np.nanmax(inner) if np.isfinite(inner).any() else np.nan
            if not norm > 0:
                rows.append((flat_spec.fibers[f], flat_spec.orders[o], norm, int(bad.sum())))
                continue
            blaze[f, o] = d / norm
            bvar[f, o] = var[f, o] / norm**2
            rows.append((flat_spec.fibers[f], flat_spec.orders[o], norm, int(bad.sum())))
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = data / np.sqrt(var)
    low = ~(blaze > min_blaze) | ~(snr > min_snr)
    flags[low] |= FLAG_DTYPE(Flag.LOW_SIGNAL)
    if opts["outlier_rule"] == "idl":
        blaze = np.where(low, 0.0, blaze)
    bvar = np.where(np.isfinite(bvar), bvar, 0.0)
    table = QTable(rows=rows, names=("fiber", "order", "norm", "n_replaced"))
    meta = dict(flat_spec.meta)
    record_provenance(
        meta,
        "nres.extract.measure_blaze",
        median_width=int(median_width),
        edge=int(edge),
        kappa=kappa,
        **opts,
    )
    meta["BLAZE"] = table
    return _rebuild(
        flat_spec,
        data=u.Quantity(blaze, u.dimensionless_unscaled),
        uncertainty=VarianceUncertainty(bvar),
        flags=flags,
        blaze=blaze,
        continuum=None,
        meta=meta,
    )


def _aligned_blaze(spec, flat_spec, name):
    """Blaze, its variance and flags of ``flat_spec`` laid out like ``spec`` (NaN where absent)."""
    if not isinstance(spec, EchelleSpectrum) or not isinstance(flat_spec, EchelleSpectrum):
        msg = f"{name}: spec and flat_spec must be EchelleSpectrum objects"
        raise InvalidParameterError(msg)
    bl = flat_spec if flat_spec.blaze is not None else measure_blaze(flat_spec)
    if bl.pixel.shape != spec.pixel.shape or not np.array_equal(bl.pixel, spec.pixel):
        msg = f"{name}: flat_spec columns (pixel) differ from spec's; extract both on the same window"
        raise InvalidParameterError(msg)
    shape = spec.shape
    b = np.full(shape, np.nan)
    bv = np.zeros(shape)
    bf = np.full(shape, int(Flag.NO_WEIGHT), dtype=FLAG_DTYPE)
    found = False
    for i, fib in enumerate(spec.fibers):
        fi = np.flatnonzero(bl.fibers == fib)
        for j, order in enumerate(spec.orders):
            oj = np.flatnonzero(bl.orders == order)
            if fi.size and oj.size:
                b[i, j] = bl.blaze[fi[0], oj[0]]
                bv[i, j] = 0.0 if bl.variance is None else bl.variance[fi[0], oj[0]]
                bf[i, j] = bl.flags[fi[0], oj[0]]
                found = True
    if not found:
        msg = f"{name}: flat_spec has none of the spectrum's (fiber, order) pairs"
        raise MissingCalibrationError(msg)
    return b, bv, bf


def flat_correct(spec, flat_spec, *, min_blaze=0.01):
    """Divide a spectrum by the blaze of an extracted flat, propagating both variances.

    Parameters
    ----------
    spec : EchelleSpectrum
        Extracted spectrum (fiber, order, pixel).
    flat_spec : EchelleSpectrum
        :func:`measure_blaze` output (or a raw extracted flat, normalised here with the defaults);
        matched by fiber id and order, same columns.
    min_blaze : float
        Columns where the blaze is not above this are NaN and NO_WEIGHT.

    Returns
    -------
    EchelleSpectrum
        ``s / B`` with variance ``V_s / B^2 + s^2 V_B / B^4``; flags of both (the blaze's NO_WEIGHT
        where a (fiber, order) has no flat); blaze and continuum dropped.

    Raises
    ------
    InvalidParameterError
        Different columns; MissingCalibrationError when the flat has none of the spectrum's traces.
    """
    b, bv, bf = _aligned_blaze(spec, flat_spec, "flat_correct")
    s = np.asarray(spec.data, dtype=np.float64)
    vs = np.zeros(s.shape) if spec.variance is None else np.asarray(spec.variance, dtype=np.float64)
    good = np.isfinite(b) & (b > min_blaze)
    safe = np.where(good, b, 1.0)
    out = np.where(good, s / safe, np.nan)
    var = np.where(good, vs / safe**2 + s**2 * bv / safe**4, np.nan)
    flags = spec.flags | bf
    flags[~good] |= FLAG_DTYPE(Flag.NO_WEIGHT)
    meta = dict(spec.meta)
    record_provenance(meta, "nres.extract.flat_correct", min_blaze=min_blaze)
    return _rebuild(
        spec,
        data=u.Quantity(out, spec.unit),
        uncertainty=None if spec.variance is None else VarianceUncertainty(var),
        flags=flags,
        blaze=None,
        continuum=None,
        meta=meta,
    )


def with_blaze(spec, flat_spec):
    """``spec`` with the flat's blaze attached as its ``blaze`` plane (data unchanged).

    ``spec.normalized(by="blaze")`` then equals :func:`flat_correct` without the blaze's variance.
    Columns without a blaze get NaN there (normalized flags them NO_WEIGHT).
    """
    b, _, _ = _aligned_blaze(spec, flat_spec, "with_blaze")
    return _rebuild(spec, blaze=b)


def blaze_subtracted(
    spec,
    flat_spec,
    *,
    cutoff=0.1,
    bad=None,
    thar_fibers=None,
    min_points=10,
    badlam_fiber=None,
    legacy=False,
):
    """The original's blaze-subtracted spectrum (apply_flat2's ``blazspec``) for its RV method.

    For every star (fiber, order): the usable range ``[ixl, ixr]`` is bounded by the last column of
    the left half with flat ``F < cutoff`` (+1) and the first of the right half with ``F <= cutoff``
    (-1) (``nx/4 .. 3nx/4`` if empty); the good set is that range minus ``bad`` columns (or the range
    if nothing is left); the amplitude ``amp = sum R F / max(sum F^2, 1)`` over the central half of
    the good set (by count; 0 if it has ``min_points`` or fewer); the result is ``R - amp F`` in the
    range and 0 (flagged ORDER_EDGE) outside. ThAr fibers are returned unchanged.

    Parameters
    ----------
    spec : EchelleSpectrum
        Extracted (not flat-corrected) spectrum R.
    flat_spec : EchelleSpectrum
        :func:`measure_blaze` output (its blaze is F).
    cutoff : float
        Flat level bounding the usable range.
    bad : ndarray of bool, shape (3, n_order, n_pixel), or None
        Bad-wavelength columns per absolute fiber id 0..2 (the original's badlamwts == 0); default
        the spectrum's TELLURIC/BAD_WAVELENGTH flags.
    thar_fibers : sequence of int or None
        Fibers left unchanged; default those named ``thar`` in ``meta["OBJECTS"]`` (else fiber 1).
    min_points : int
        The amplitude needs more than this many points.
    badlam_fiber : {"absolute", "relative"} or None
        Which plane of ``bad`` a fiber uses (legacy "relative": plane fiber - first fiber of spec).
    legacy : bool
        All legacy options.

    Returns
    -------
    EchelleSpectrum
        ``R - amp F`` (electrons) with the variance of R, flags; ``meta["AMPFL"]`` a QTable
        (fiber, order, amp, ixl, ixr) in the original's terms (ixl/ixr window column indices).
    """
    opts = _legacy.resolve("blaze_subtracted", legacy, badlam_fiber=badlam_fiber)
    b, _, bf = _aligned_blaze(spec, flat_spec, "blaze_subtracted")
    nf, no, nx = spec.shape
    if thar_fibers is None:
        words = str(spec.meta.get("OBJECTS", "")).split("&")
        if len(words) == 3:
            thar_fibers = [i for i, w in enumerate(words) if w.strip().upper() == "THAR"]
        else:
            thar_fibers = [1]
    if bad is None:
        own = (spec.flags & FLAG_DTYPE(Flag.TELLURIC | Flag.BAD_WAVELENGTH)) != 0
        bad = np.zeros((3, no, nx), dtype=bool)
        for i, fib in enumerate(spec.fibers):
            if 0 <= fib <= 2:
                bad[fib] = own[i]
    bad = np.asarray(bad, dtype=bool)
    if bad.shape != (3, no, nx):
        msg = f"blaze_subtracted: bad must have shape (3, n_order, n_pixel) = {(3, no, nx)}, got {bad.shape}"
        raise InvalidParameterError(msg)
    r = np.asarray(spec.data, dtype=np.float64)
    out = r.copy()
    flags = spec.flags | (bf & FLAG_DTYPE(Flag.NO_WEIGHT))
    idx = np.arange(nx)
    rows = []
    fib0 = int(spec.fibers.min())
    for i, fib in enumerate(spec.fibers):
        if int(fib) in list(thar_fibers):
            continue
        plane = int(fib) if opts["badlam_fiber"] == "absolute" else int(fib) - fib0
        for j, order in enumerate(spec.orders):
            f = np.nan_to_num(b[i, j], nan=0.0)
            left = np.flatnonzero((f < cutoff) & (idx <= nx // 2))
            right = np.flatnonzero((f <= cutoff) & (idx > nx // 2))
            ixl = left.max() + 1 if left.size else 0
            ixr = right.min() - 1 if right.size else nx - 1
            if ixl >= ixr:
                ixl, ixr = nx // 4, 3 * nx // 4
            in_range = (idx >= ixl) & (idx <= ixr)
            sg = np.flatnonzero(in_range & ~bad[plane, j] & np.isfinite(r[i, j]))
            if sg.size == 0:
                sg = np.flatnonzero(in_range & np.isfinite(r[i, j]))
            core = sg[sg.size // 4 : 3 * sg.size // 4 + 1]
            amp = 0.0
            if core.size > min_points:
                amp = float(np.sum(r[i, j, core] * f[core]) / max(np.sum(f[core] ** 2), 1.0))
                out[i, j] = r[i, j] - amp * f
            else:
                out[i, j] = 0.0
            out[i, j, ~in_range] = 0.0
            flags[i, j, ~in_range] |= FLAG_DTYPE(Flag.ORDER_EDGE)
            rows.append((fib, order, amp, ixl, ixr))
    table = QTable(rows=rows or None, names=("fiber", "order", "amp", "ixl", "ixr"))
    meta = dict(spec.meta)
    record_provenance(meta, "nres.extract.blaze_subtracted", cutoff=cutoff, min_points=min_points, **opts)
    meta["AMPFL"] = table
    return _rebuild(spec, data=u.Quantity(out, spec.unit), flags=flags, blaze=None, meta=meta)
