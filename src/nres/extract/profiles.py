"""``Profiles``: normalised cross-dispersion profiles per (fiber, order, block, dy).

Minimal container (the profile-measurement step extends it). Profiles are sampled at offsets
``dy`` (px) from the trace centre, one per block of columns; between block centres a profile is
interpolated linearly in x (clamped beyond the first/last centre). The original anchored its block
profiles at the blocks' left edges (idl-calib-trace-extract.md 16, bug 5): ``interpolation=
"idl_rebin"`` reproduces that for parity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["Profiles"]

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
        if self.interpolation == "linear":
            pos = np.interp(x, self.block_x, np.arange(nb))
        else:
            # the original: block b's profile sits at its left edge, the last block is held
            left = self.block_x - 0.5 * (self.block_width - 1.0)
            pos = np.interp(x, left, np.arange(nb))
        k = np.clip(np.floor(pos).astype(int), 0, nb - 2)
        f = (pos - k)[:, None]
        return prof[k] * (1.0 - f) + prof[k + 1] * f
