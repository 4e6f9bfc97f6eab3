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
from scipy.interpolate import make_lsq_spline

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


def measure_profiles(
    flat,
    traces,
    *,
    n_blocks=16,
    half_extent=None,
    step=0.02,
    knot_spacing=0.25,
    profile_anchor=None,
    legacy=False,
) -> Profiles:
    """Measure normalised cross-dispersion profiles per (fiber, order, block) from a lamp flat.

    Every good pixel within ``half_extent`` of a trace, divided by its column's flux over
    ``[c - half_extent, c + half_extent]`` (fractional edge pixels), is a sample of the profile at
    offset ``j - c``; a tilted trace samples all sub-pixel phases within a block of columns. The
    samples of a block are binned on a ``step`` grid and smoothed by a least-squares cubic spline
    (knots every ``knot_spacing`` px); the result is normalised to ``sum * step = 1``.

    Parameters
    ----------
    flat : CCDData
        Lamp flat in electrons (background-subtracted), shape (ny, nx), possibly a window.
    traces : Traces
        Traces of the lit fibers (full-detector coordinates).
    n_blocks : int
        Blocks of columns along x (profiles are interpolated linearly between block centres).
    half_extent : float or None
        Half height (px) over which the profile is measured and normalised (its "full wings");
        default ``traces.box_height / 2 + 2.5``.
    step, knot_spacing : float
        Grid step and spline knot spacing (px) in dy.
    profile_anchor : {"center", "idl"} or None
        "center": each block's profile describes its centre column (default). "idl": the original's
        anchoring at the block's left edge (legacy; see docs/legacy.md).
    legacy : bool
        Shorthand for all legacy options.

    Returns
    -------
    Profiles
        ``data`` of shape (n_fiber, n_order, n_blocks, n_dy) with ``dy`` the offset grid.

    Raises
    ------
    InvalidParameterError
        Bad frame, or parameters out of range.
    FitError
        No trace has enough samples.
    """
    opts = _legacy.resolve("measure_profiles", legacy, profile_anchor=profile_anchor)
    if int(n_blocks) < 1 or not step > 0 or not knot_spacing > step:
        msg = f"measure_profiles: need n_blocks >= 1 and 0 < step < knot_spacing, got {n_blocks}, {step}, "
        msg += f"{knot_spacing}"
        raise InvalidParameterError(msg)
    rmax = float(traces.box_height) / 2.0 + 2.5 if half_extent is None else float(half_extent)
    if not rmax > 1.0:
        msg = f"measure_profiles: half_extent must exceed 1 px, got {rmax}"
        raise InvalidParameterError(msg)
    dataT, varT, goodT = _frame_arrays(flat, "measure_profiles: flat")
    nx = dataT.shape[1]
    meta = getattr(flat, "meta", None)
    cen, xfull = _window_centers(traces, dataT.shape, meta)
    n_blocks = int(min(n_blocks, nx))
    edges = np.linspace(0, nx, n_blocks + 1).round().astype(int)
    blk = np.repeat(np.arange(n_blocks), np.diff(edges)).astype(np.int64)
    block_x = np.array([xfull[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    width = float(nx) / n_blocks
    # normalising flux: fractional-edge sum over the full extent
    prof0, g0, gs = _dummy_profile()
    rej = np.zeros(goodT.shape, dtype=np.bool_)
    _, _, flux, _, _, _, _, _, status = _k._extract(
        dataT,
        varT,
        varT,
        goodT,
        cen,
        prof0,
        np.zeros(nx, dtype=np.int64),
        np.zeros(nx),
        g0,
        gs,
        rmax,
        False,
        1,
        5.0,
        0,
        rej,
    )
    flux = np.where(status == 0, flux, np.nan)  # columns with masked or off-frame pixels are skipped
    ngrid = int(np.floor(2 * rmax / step)) + 1
    grid0 = -0.5 * (ngrid - 1) * step
    grid = grid0 + step * np.arange(ngrid)
    sv, sw = _k._profile_samples(
        dataT, goodT, cen, np.nan_to_num(flux, nan=-1.0), blk, n_blocks, grid0, step, ngrid, rmax
    )
    nk = max(int(np.floor(2 * rmax / knot_spacing)), 2)
    inner = np.linspace(grid[0], grid[-1], nk + 1)[1:-1]
    knots = np.r_[[grid[0]] * 4, inner, [grid[-1]] * 4]
    out = np.zeros((len(traces), n_blocks, ngrid))
    n_bad = 0
    n_pooled = 0
    # a knot interval is covered when it holds samples; a block of a nearly flat trace samples few
    # sub-pixel phases, so its neighbours' samples are pooled in until every interval is covered
    cell = np.clip(np.searchsorted(inner, grid, side="right"), 0, nk - 1)
    for t in range(len(traces)):
        for b in range(n_blocks):
            for reach in range(n_blocks):
                lo, hi = max(b - reach, 0), min(b + reach + 1, n_blocks)
                w = sw[t, lo:hi].sum(axis=0)
                if np.unique(cell[w > 0]).size == nk:
                    break
            n_pooled += reach > 0
            ok = w > 0
            if ok.sum() < 4:
                n_bad += 1
                continue
            mean = sv[t, lo:hi].sum(axis=0)[ok] / w[ok]
            try:
                spl = make_lsq_spline(grid[ok], mean, knots, k=3, w=np.sqrt(w[ok]))
                p = spl(grid)
            except (ValueError, np.linalg.LinAlgError):
                p = np.interp(grid, grid[ok], mean)
            total = p.sum() * step
            if not total > 0:
                n_bad += 1
                continue
            out[t, b] = p / total
    if n_bad == len(traces) * n_blocks:
        msg = "measure_profiles: no (trace, block) of the flat had enough good samples"
        raise FitError(msg)
    fibers = np.unique(traces.fibers)
    orders = np.unique(traces.orders)
    data = np.zeros((fibers.size, orders.size, n_blocks, ngrid))
    for t, (fib, order) in enumerate(zip(traces.fibers, traces.orders, strict=True)):
        data[np.searchsorted(fibers, fib), np.searchsorted(orders, order)] = out[t]
    interp = "linear" if opts["profile_anchor"] == "center" else "idl_rebin"
    meta_out = {"HALFEXT": rmax, "STEP": step, "NBADBLK": n_bad, "NPOOLED": n_pooled}
    record_provenance(
        meta_out,
        "nres.extract.measure_profiles",
        n_blocks=n_blocks,
        half_extent=rmax,
        dy_step=step,
        knot_spacing=knot_spacing,
        **opts,
    )
    return Profiles(
        data, fibers, orders, block_x, grid, interpolation=interp, block_width=width, meta=meta_out
    )
