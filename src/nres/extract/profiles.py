"""``Profiles``: normalised cross-dispersion profiles per (fiber, order, block, dy), and
:func:`measure_profiles`, which measures them from a lamp flat.

A profile value ``P(dy)`` is the fraction of a column's total flux that falls in a pixel whose
centre lies ``dy`` px from the trace centre; ``sum(P) * step(dy) = 1`` (for pixel-step samples: unit
sum). :func:`measure_profiles` samples P on a fine grid (0.02 px by default) from the many
sub-pixel phases a tilted trace presents within a block of columns, so the extraction can evaluate it
at any fractional offset. Profiles are sampled at offsets
``dy`` (px) from the trace centre, one per block of columns; between block centres a profile is
interpolated linearly in x (clamped beyond the first/last centre). The original anchored its block
profiles at the blocks' left edges (idl-calib-trace-extract.md 16, bug 5): ``interpolation=
"idl_rebin"`` reproduces that for parity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.nddata import VarianceUncertainty
from scipy.interpolate import BSpline

from .. import legacy as _legacy
from ..errors import FitError, InvalidParameterError
from ..flags import flags_to_mask
from ..provenance import record_provenance
from ..window import window_origin
from . import _extract_kernels as _k

__all__ = ["Profiles", "measure_profiles"]

_legacy.register(
    "measure_profiles",
    "profile_anchor",
    choices=("center", "idl"),
    default="center",
    legacy="idl",
    reference="idl-calib-trace-extract.md 10.8, 16 bug 5",
    summary="block profiles anchored at the blocks' left edges (IDL REBIN), ~170 px off their centres",
)

_INTERPOLATIONS = ("linear", "idl_rebin")


@dataclass(frozen=True, eq=False)
class Profiles:
    """Cross-dispersion profiles, normalised to unit sum over ``dy`` where there is signal.

    Parameters
    ----------
    data : ndarray, shape (n_fiber, n_order, n_block, n_dy)
        Profile values (sum over dy = 1, or all 0 for an unlit fiber).
    fibers : ndarray of int, shape (n_fiber,)
    orders : ndarray of int, shape (n_order,)
        Physical orders m.
    block_x : ndarray, shape (n_block,)
        Full-detector x of each block's centre (the column the profile describes).
    dy : ndarray, shape (n_dy,)
        Offsets (px) of the samples from the trace centre, increasing.
    interpolation : {"linear", "idl_rebin"}
        Rule for the profile between blocks (see the module docstring).
    block_width : float
        Columns per block (used by ``"idl_rebin"``).
    meta : dict
    """

    data: np.ndarray
    fibers: np.ndarray
    orders: np.ndarray
    block_x: np.ndarray
    dy: np.ndarray
    interpolation: str = "linear"
    block_width: float = 342.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        data = np.asarray(self.data, dtype=np.float64)
        fibers = np.asarray(self.fibers).astype(np.int64)
        orders = np.asarray(self.orders).astype(np.int64)
        block_x = np.asarray(self.block_x, dtype=np.float64)
        dy = np.asarray(self.dy, dtype=np.float64)
        expect = (fibers.size, orders.size, block_x.size, dy.size)
        if data.shape != expect:
            msg = f"Profiles: data must have shape (n_fiber, n_order, n_block, n_dy) = {expect}, "
            msg += f"got {data.shape}"
            raise InvalidParameterError(msg)
        if self.interpolation not in _INTERPOLATIONS:
            msg = f"Profiles: interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}"
            raise InvalidParameterError(msg)
        if block_x.size > 1 and np.any(np.diff(block_x) <= 0):
            msg = "Profiles: block_x must increase"
            raise InvalidParameterError(msg)
        for name, value in (
            ("data", data),
            ("fibers", fibers),
            ("orders", orders),
            ("block_x", block_x),
            ("dy", dy),
        ):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "meta", dict(self.meta))

    def at(self, fiber: int, order: int, x) -> np.ndarray:
        """Profile of (fiber, order) at full-detector columns ``x``: shape (len(x), n_dy).

        Raises ``KeyError`` naming the fiber and order if absent.
        """
        fi = np.flatnonzero(self.fibers == fiber)
        oi = np.flatnonzero(self.orders == order)
        if fi.size == 0 or oi.size == 0:
            msg = f"no profile for fiber {fiber}, order {order}"
            raise KeyError(msg)
        prof = self.data[fi[0], oi[0]]  # (n_block, n_dy)
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        nb = self.block_x.size
        if nb == 1:
            return np.repeat(prof, x.size, axis=0)
        k, f = self.block_weights(x)
        f = f[:, None]
        return prof[k] * (1.0 - f) + prof[k + 1] * f

    def block_weights(self, x):
        """Block index k and weight f of block k + 1 at full-detector columns ``x``.

        The profile at x is ``(1 - f) data[..., k, :] + f data[..., k + 1, :]`` (k = 0, f = 0
        when there is a single block).
        """
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        nb = self.block_x.size
        if nb == 1:
            return np.zeros(x.size, dtype=np.int64), np.zeros(x.size)
        if self.interpolation == "linear":
            pos = np.interp(x, self.block_x, np.arange(nb))
        else:
            # the original: block b's profile sits at its left edge, the last block is held
            left = self.block_x - 0.5 * (self.block_width - 1.0)
            pos = np.interp(x, left, np.arange(nb))
        k = np.clip(np.floor(pos).astype(np.int64), 0, nb - 2)
        return k, pos - k

    def for_traces(self, traces) -> np.ndarray:
        """Profile blocks in the order of ``traces``: shape (n_traces, n_block, n_dy).

        Traces without a profile get zeros (their extraction is then flagged NO_WEIGHT).
        """
        out = np.zeros((len(traces), self.block_x.size, self.dy.size))
        fmap = {int(f): i for i, f in enumerate(self.fibers)}
        omap = {int(o): i for i, o in enumerate(self.orders)}
        for t, (fib, order) in enumerate(zip(traces.fibers.tolist(), traces.orders.tolist(), strict=True)):
            if fib in fmap and order in omap:
                out[t] = self.data[fmap[fib], omap[order]]
        return out


# ----- frame preparation shared with the extraction ------------------------------------------------
def _frame_arrays(frame, name="frame"):
    """(data, variance, good) of a CCDData-like frame as float64/bool (ny, nx) C-contiguous arrays.

    Pixels are usable where data and variance are finite and neither mask nor flags mark them; the
    kernels read data and variance only there (no copies with bad pixels zeroed).
    """
    data = getattr(frame, "data", None)
    if data is None or np.ndim(data) != 2:
        msg = f"{name}: expected a 2-D CCDData/NDData in electrons, got {type(frame).__name__}"
        raise InvalidParameterError(msg)
    data = np.ascontiguousarray(data, dtype=np.float64)
    good = np.isfinite(data)
    mask = getattr(frame, "mask", None)
    if mask is not None:
        good &= ~np.asarray(mask, dtype=bool)
    flags = getattr(frame, "flags", None)
    if flags is not None:
        good &= ~flags_to_mask(flags)
    unc = getattr(frame, "uncertainty", None)
    if unc is not None:
        if not isinstance(unc, VarianceUncertainty):
            unc = unc.represent_as(VarianceUncertainty)
        var = np.ascontiguousarray(unc.array, dtype=np.float64)
        good &= np.isfinite(var)
    else:
        var = np.abs(data)
    return data, var, good


def _window_centers(traces, shape, meta):
    """Trace centres in window rows (n_traces, nx), NaN outside each trace's x_valid; and full x."""
    y0, x0 = window_origin(meta)
    x = np.arange(shape[1], dtype=np.float64) + x0
    cen = traces.center(x) - y0
    cen[~traces.valid(x)] = np.nan
    return np.ascontiguousarray(cen), x


def _dummy_profile():
    return np.zeros((1, 1, 2)), 0.0, 1.0


def _lit_traces(traces, meta):
    """Boolean (n_traces,): traces of the fibers lit in a frame (all when OBJECTS is absent)."""
    if meta is None or "OBJECTS" not in meta:
        return np.ones(len(traces), dtype=bool)
    from .identify import lit_fibers

    return np.isin(traces.fibers, lit_fibers(meta))


def _knots(grid, rcore, knot_spacing, wing_knot_spacing):
    """Cubic-spline knots over ``grid``: every ``knot_spacing`` px within ``rcore`` of the centre,
    every ``wing_knot_spacing`` px beyond (the wings are smooth and faint)."""
    lo, hi = float(grid[0]), float(grid[-1])
    if rcore >= hi:
        nk = max(int(np.floor(2 * rcore / knot_spacing)), 2)
        inner = np.linspace(lo, hi, nk + 1)[1:-1]
    else:
        nk = max(int(np.floor(2 * rcore / knot_spacing)), 2)
        core = np.linspace(-rcore, rcore, nk + 1)
        nw = max(int(np.ceil((hi - rcore) / wing_knot_spacing)), 1)
        wing = np.linspace(rcore, hi, nw + 1)[:-1]
        inner = np.unique(np.r_[-wing, core, wing])
    inner = np.asarray(inner)
    return np.r_[[lo] * 4, inner, [hi] * 4], inner


def _smooth_blocks(sv, sw, grid, knots, inner, fit, out, prior=0.0, pedestal=False, measured=None):
    """Spline-smooth the binned samples ``sv / sw`` (ntr, nblock, ngrid) of the traces where ``fit``
    into ``out`` (normalised to ``sum * step = 1``); returns (n_bad, n_pooled). Only the (trace,
    block) where ``measured`` (default all) are fitted, and only their samples are pooled; the
    others are left to the caller (:func:`_borrow`)."""
    ntr, n_blocks, ng = sv.shape
    if measured is not None:
        sv = np.where(measured[..., None], sv, 0.0)
        sw = np.where(measured[..., None], sw, 0.0)
    step = grid[1] - grid[0]
    nk = inner.size + 1
    cell = np.clip(np.searchsorted(inner, grid, side="right"), 0, nk - 1)
    n_bad = n_pooled = 0
    if measured is None:
        measured = np.ones((ntr, n_blocks), dtype=bool)
    rows = [(t, b) for t in np.flatnonzero(fit) for b in range(n_blocks) if measured[t, b]]
    values = np.zeros((len(rows), ng))
    weights = np.zeros((len(rows), ng))
    usable = np.zeros(len(rows), dtype=bool)
    # a knot interval is covered when it holds samples; a block of a nearly flat trace samples few
    # sub-pixel phases, so its neighbours' samples are pooled in until every interval is covered
    for r, (t, b) in enumerate(rows):
        for reach in range(n_blocks):
            lo, hi = max(b - reach, 0), min(b + reach + 1, n_blocks)
            w = sw[t, lo:hi].sum(axis=0)
            if np.unique(cell[w > 0]).size == nk:
                break
        n_pooled += reach > 0
        ok = w > 0
        if ok.sum() < 4:
            continue
        usable[r] = True
        # shrinking towards 0 by a tiny pseudo-weight leaves well-sampled nodes alone (bias
        # < 1e-6 relative) but keeps nodes whose samples were all dominated by a neighbour's
        # light (weights ~1e-10, see _joint_profile_samples) from taking its residuals
        w0 = prior * w[ok].max()
        values[r, ok] = sv[t, lo:hi].sum(axis=0)[ok] / (w[ok] + w0)
        # spline weights bounded to 1e-4..1 of the largest: weights spanning 1e10 make the
        # normal equations lose ~1e-6 of the peak to round-off in the faint nodes
        weights[r, ok] = np.maximum(w[ok], 1e-4 * w[ok].max()) if prior > 0 else w[ok]
    design = BSpline.design_matrix(grid, knots, 3).tocsr()
    first = np.ascontiguousarray(design.indices[design.indptr[:-1]], dtype=np.int64)
    bvals = np.ascontiguousarray(design.data.reshape(ng, 4))
    fitted, fit_ok = _k._spline_smooth(values, weights, first, bvals, int(design.shape[1]))
    for r, (t, b) in enumerate(rows):
        if not usable[r]:
            n_bad += 1
            out[t, b] = 0.0
            continue
        ok = weights[r] > 0
        p = fitted[r] if fit_ok[r] else np.interp(grid, grid[ok], values[r, ok])
        if pedestal:
            # the wings end within the grid: a level left at its ends is a pedestal (an error of
            # the subtracted scattered light), not light of this trace
            p = p - p[np.abs(grid) >= grid[-1] - 0.5].mean()
        total = p.sum() * step
        if not total > 0:
            n_bad += 1
            out[t, b] = 0.0
            continue
        out[t, b] = p / total
    return n_bad, n_pooled


def _borrow(out, traces, fit):
    """Give every block without a profile (all zero) of a ``fit`` trace, and every block of a nuisance
    trace, the profile of the nearest order of the same fiber measured in that block (in place).

    Traces cut by a frame's edge have no column whose aperture is wholly on it (nuisance traces), or
    too few; only the part of their profile on the frame matters (their flux is fitted to it), and
    the next order's profile is the best estimate of it (NRES profiles change by ~0.1 % per order).
    Returns the number of (trace, block) profiles borrowed.
    """
    measured = out.any(axis=-1) & ~traces.nuisance[:, None]  # (ntr, nblock)
    n_borrowed = 0
    for t in np.flatnonzero(fit):
        need = ~measured[t]
        if not need.any():
            continue
        same = np.flatnonzero((traces.fibers == traces.fibers[t]) & (np.arange(len(traces)) != t))
        same = same[np.argsort(np.abs(traces.orders[same] - traces.orders[t]), kind="stable")]
        for b in np.flatnonzero(need):
            donors = same[measured[same, b]]
            out[t, b] = out[donors[0], b] if donors.size else 0.0
            n_borrowed += int(donors.size > 0)
    return n_borrowed


def measure_profiles(
    flat,
    traces,
    *,
    n_blocks=16,
    half_extent=None,
    step=0.02,
    knot_spacing=0.25,
    wing_knot_spacing=1.0,
    joint=True,
    n_joint=6,
    pedestal=False,
    profile_anchor=None,
    legacy=False,
) -> Profiles:
    """Measure normalised cross-dispersion profiles per (fiber, order, block) from lamp flats.

    Every good pixel within ``half_extent`` of a trace, divided by its column's flux, is a sample
    of the profile at offset ``j - c``; a tilted trace samples all sub-pixel phases within a block
    of columns. The samples of a block are binned on a ``step`` grid and smoothed by a
    least-squares cubic spline (knots every ``knot_spacing`` px in the core, ``wing_knot_spacing``
    beyond ``box_height / 2 + 2.5``); the result is normalised to ``sum * step = 1`` over
    ``[-half_extent, half_extent]``.

    With ``joint=True`` (default) the profiles of neighbouring traces are measured together, so
    wings that reach the next trace are neither lost nor double counted: starting from the
    single-trace profiles of the cores, ``n_joint`` times the fluxes of all lit traces are fitted
    jointly per column (:func:`~nres.extract.extract`'s joint fit), the other traces' model light
    is subtracted from each pixel, and each profile is re-measured from what remains, normalised
    by the joint flux. Two flats with different lit fibers (NRES fibers 0+1 and 1+2) pin down the
    wings between two lit traces, where one flat alone cannot tell whose wing a pixel's light is
    (their fluxes are nearly proportional): pass both.

    Parameters
    ----------
    flat : CCDData or sequence of CCDData
        Lamp flat(s) in electrons (scattered light subtracted), each (ny, nx), possibly windows of
        the same shape and origin. ``meta["OBJECTS"]`` names the lit fibers (all, if absent).
    traces : Traces
        Traces of the fibers (full-detector coordinates).
    n_blocks : int
        Blocks of columns along x (profiles are interpolated linearly between block centres).
    half_extent : float or None
        Half height (px) over which the profile is measured and normalised (its "full wings");
        default ``2 * box_height`` with ``joint=True``, else ``box_height / 2 + 2.5``.
    step, knot_spacing, wing_knot_spacing : float
        Grid step and spline knot spacings (px) in dy.
    joint : bool
        Measure neighbouring traces' profiles together (see above).
    n_joint : int
        Joint iterations (each a flux fit and a re-measurement).
    pedestal : bool
        Remove a constant level left at the ends of the joint profiles (the wings must have ended
        there). Use it once when the flat's scattered light is still crude (fitted without a
        profile, so the wings were taken for background): a pedestal and a background error are
        otherwise the same thing under overlapping traces. Then refit the scattered light with the
        profile and re-measure without it (docs/extraction.md).
    profile_anchor : {"center", "idl"} or None
        "center": each block's profile describes its centre column (default). "idl": the original's
        anchoring at the block's left edge (legacy; see docs/legacy.md).
    legacy : bool
        Shorthand for all legacy options.

    Returns
    -------
    Profiles
        ``data`` of shape (n_fiber, n_order, n_blocks, n_dy) with ``dy`` the offset grid;
        ``meta["NJOINT"]`` joint iterations, ``meta["DPROF"]`` the largest change of a profile value
        (relative to its peak) in the last one, ``meta["NBORROW"]`` the (trace, block) profiles
        borrowed from the nearest measured order of the same fiber: blocks where a trace's
        aperture and extent are wholly on the frame in fewer than a quarter of the columns (a
        frame's edge cuts them), and every block of a nuisance trace (``traces.nuisance``).

    Raises
    ------
    InvalidParameterError
        Bad frame, or parameters out of range.
    FitError
        No trace has enough samples.
    """
    opts = _legacy.resolve("measure_profiles", legacy, profile_anchor=profile_anchor)
    if int(n_blocks) < 1 or not step > 0 or not knot_spacing > step or not wing_knot_spacing > step:
        msg = f"measure_profiles: need n_blocks >= 1 and 0 < step < knot_spacing, got {n_blocks}, {step}, "
        msg += f"{knot_spacing}, {wing_knot_spacing}"
        raise InvalidParameterError(msg)
    if int(n_joint) < 0:
        msg = f"measure_profiles: n_joint must be >= 0, got {n_joint}"
        raise InvalidParameterError(msg)
    joint = bool(joint)
    rcore = float(traces.box_height) / 2.0 + 2.5
    if half_extent is None:
        rmax = 2.0 * float(traces.box_height) if joint else rcore
    else:
        rmax = float(half_extent)
    if not rmax > 1.0:
        msg = f"measure_profiles: half_extent must exceed 1 px, got {rmax}"
        raise InvalidParameterError(msg)
    flats = list(flat) if isinstance(flat, (list, tuple)) else [flat]
    if not flats:
        msg = "measure_profiles: flat must be a frame or a non-empty sequence of frames"
        raise InvalidParameterError(msg)
    arrays = [_frame_arrays(f, "measure_profiles: flat") for f in flats]
    shape = arrays[0][0].shape
    metas = [getattr(f, "meta", None) for f in flats]
    if any(a[0].shape != shape for a in arrays) or len({window_origin(m) for m in metas}) > 1:
        msg = "measure_profiles: the flats must have the same shape and window origin"
        raise InvalidParameterError(msg)
    nx = shape[1]
    cen, xfull = _window_centers(traces, shape, metas[0])
    lit = np.array([_lit_traces(traces, m) for m in metas])  # (n_flat, n_traces)
    n_blocks = int(min(n_blocks, nx))
    edges = np.linspace(0, nx, n_blocks + 1).round().astype(int)
    blk = np.repeat(np.arange(n_blocks), np.diff(edges)).astype(np.int64)
    block_x = np.array([xfull[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    width = float(nx) / n_blocks
    interp = "linear" if opts["profile_anchor"] == "center" else "idl_rebin"
    ngrid = int(np.floor(2 * rmax / step)) + 1
    grid0 = -0.5 * (ngrid - 1) * step
    grid = grid0 + step * np.arange(ngrid)
    knots, inner = _knots(grid, rcore if joint else rmax, knot_spacing, wing_knot_spacing)

    # single-trace start (the cores only, when joint): normalising flux = fractional-edge sum
    r0 = min(rcore, rmax) if joint else rmax
    prof0, g0, gs = _dummy_profile()
    sv = np.zeros((len(traces), n_blocks, ngrid))
    sw = np.zeros_like(sv)
    # a trace is sampled in the columns where its aperture and the part of the profile being measured
    # are wholly on the frame: where a frame's edge cuts them, the profile would be normalised over
    # what is left (the core of an order next to a window's edge came out 1-2 % off) and a cut
    # aperture's flux depends on the profile being measured; such blocks borrow the next order's
    whole = []  # per flat (n_traces, nx): the extent wholly on the frame (and inside x_valid)
    n_cols = np.zeros((len(traces), n_blocks))
    rows_c = np.where(np.isfinite(cen), cen, -np.inf)
    for (dataT, varT, goodT), use in zip(arrays, lit, strict=True):
        rej = np.zeros(goodT.shape, dtype=np.bool_)
        _, _, flux, _, _, _, _, _, status = _k._extract(
            dataT, varT, varT, goodT, cen, prof0, np.zeros(nx, dtype=np.int64), np.zeros(nx),
            g0, gs, r0, False, 1, 5.0, 0, rej,
        )  # fmt: skip
        # columns with masked or off-frame pixels, and unlit traces, are skipped
        inside = (rows_c - r0 >= -0.5) & (rows_c + r0 <= shape[0] - 0.5)
        flux = np.where((status == 0) & use[:, None] & inside, flux, -1.0)
        on = ((status & _k.ST_EDGE) == 0) & (rows_c - rmax >= -0.5) & (rows_c + rmax <= shape[0] - 0.5)
        whole.append(on)
        n_cols += np.add.reduceat((on if joint else inside) & use[:, None], edges[:-1], axis=1)
        a, b = _k._profile_samples(dataT, goodT, cen, flux, blk, n_blocks, grid0, step, ngrid, r0)
        sv += a
        sw += b
    fit = lit.any(axis=0)
    out = np.zeros((len(traces), n_blocks, ngrid))
    # the start is smoothed on the part of the grid it sampled (zero beyond: the joint passes add
    # the wings); the normalisation over the full grid is unchanged by the zeros
    core = np.abs(grid) <= r0 + 1e-9
    knots0, inner0 = (knots, inner) if core.all() else _knots(grid[core], r0, knot_spacing, wing_knot_spacing)
    sub = np.zeros((len(traces), n_blocks, int(core.sum())))
    # a block is measured from a quarter of its columns at least (the rest of the phases pooled)
    measured = n_cols >= max(0.25 * width, min(8.0, width))
    _, n_pooled = _smooth_blocks(
        sv[..., core], sw[..., core], grid[core], knots0, inner0, fit, sub, measured=measured
    )
    out[..., core] = sub
    n_borrowed = _borrow(out, traces, fit)
    n_bad = int((~out.any(axis=-1)).sum())
    if n_bad == len(traces) * n_blocks:
        msg = "measure_profiles: no (trace, block) of the flat had enough good samples"
        raise FitError(msg)

    dprof = np.nan
    n_done = 0
    if joint and n_joint > 0:
        tmp = Profiles(
            out[None], [0], np.arange(len(traces)), block_x, grid, interpolation=interp, block_width=width
        )
        blk_k, blk_f = tmp.block_weights(xfull)
        blk_k = np.ascontiguousarray(blk_k, dtype=np.int64)
        blk_f = np.ascontiguousarray(blk_f)
        half = 0.5 * float(traces.box_height)
        for _ in range(int(n_joint)):
            sv[:] = 0.0
            sw[:] = 0.0
            for (dataT, _, goodT), use, m, on in zip(arrays, lit, metas, whole, strict=True):
                sub = np.flatnonzero(use)
                cen_l = np.ascontiguousarray(cen[sub])
                prof_l = np.ascontiguousarray(out[sub])
                rn = float(m["RDNOISE"]) if m is not None and "RDNOISE" in m else 0.0
                var0 = np.full((1, 1), max(rn * rn, 1.0))
                rej = np.zeros(goodT.shape, dtype=np.bool_)
                flux, _, _, _, _, _, jst = _k._joint_extract(
                    dataT, var0, goodT, cen_l, prof_l, blk_k, blk_f, grid0, step, half, 2, 5.0, 2, rej
                )
                flux = np.where(jst == 0, flux, np.nan)
                model = _k._render_model(shape[0], cen_l, flux, prof_l, blk_k, blk_f, grid0, step)
                good = goodT & ~rej
                sampled = np.where(on[sub], np.nan_to_num(flux, nan=-1.0), -1.0)
                a, b = _k._joint_profile_samples(
                    dataT, model, good, cen_l, sampled, prof_l, blk_k, blk_f,
                    blk, n_blocks, grid0, step, ngrid, rmax, rcore, 1e-6,
                )  # fmt: skip
                sv[sub] += a
                sw[sub] += b
            new = np.zeros_like(out)
            _, n_pooled = _smooth_blocks(
                sv, sw, grid, knots, inner, fit, new, prior=1e-6, pedestal=pedestal, measured=measured
            )
            n_borrowed = _borrow(new, traces, fit)
            n_bad = int((~new.any(axis=-1)).sum())
            peak = out.max(axis=-1, keepdims=True)
            with np.errstate(all="ignore"):
                dprof = float(np.nanmax(np.abs(new - out) / np.where(peak > 0, peak, np.nan)))
            out = new
            n_done += 1
    fibers = np.unique(traces.fibers)
    orders = np.unique(traces.orders)
    data = np.zeros((fibers.size, orders.size, n_blocks, ngrid))
    for t, (fib, order) in enumerate(zip(traces.fibers, traces.orders, strict=True)):
        data[np.searchsorted(fibers, fib), np.searchsorted(orders, order)] = out[t]
    meta_out = {"HALFEXT": rmax, "STEP": step, "NBADBLK": n_bad, "NPOOLED": n_pooled, "NJOINT": n_done}
    meta_out["NBORROW"] = n_borrowed
    meta_out["DPROF"] = dprof
    record_provenance(
        meta_out,
        "nres.extract.measure_profiles",
        n_blocks=n_blocks,
        half_extent=rmax,
        dy_step=step,
        knot_spacing=knot_spacing,
        wing_knot_spacing=wing_knot_spacing,
        joint=joint,
        n_joint=n_done,
        n_flats=len(flats),
        **opts,
    )
    return Profiles(
        data, fibers, orders, block_x, grid, interpolation=interp, block_width=width, meta=meta_out
    )
