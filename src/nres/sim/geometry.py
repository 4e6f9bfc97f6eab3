"""Geometry of simulated frames: traces moved off the reference table, profiles, true wavelengths."""

from __future__ import annotations

import astropy.units as u
import numpy as np

from ..traces import Traces

__all__ = ["transform_traces", "profile_sigma", "wavelength_offset", "true_wavelength", "CENTRE"]

#: Detector centre (px) about which traces are rotated and scaled.
CENTRE = 2047.5


def transform_traces(reference: Traces, *, shift: float, rotation: float, scale: float) -> Traces:
    """The reference traces rotated by ``rotation`` (rad) and scaled about the detector centre, then
    shifted by ``shift`` px in y, refitted as Legendre series of degree 6 in x.

    Parameters
    ----------
    reference : Traces
        Per-site reference traces (full-detector coordinates).
    """
    xs = np.linspace(-200.0, 4295.0, 181)
    ys = reference.center(xs)
    dx, dy = xs[None, :] - CENTRE, ys - CENTRE
    cos, sin = np.cos(rotation), np.sin(rotation)
    xt = CENTRE + scale * (cos * dx - sin * dy)
    yt = CENTRE + scale * (sin * dx + cos * dy) + shift
    x = np.arange(0.0, 4096.0, 16.0)
    y = np.stack([np.interp(x, xr, yr) for xr, yr in zip(xt, yt, strict=True)])
    meta = {**reference.meta, "SIMSHIFT": shift, "SIMROT": rotation, "SIMSCALE": scale}
    return Traces.from_samples(
        x,
        y,
        orders=reference.orders,
        fibers=reference.fibers,
        degree=6,
        x_domain=reference.x_domain,
        x_valid=reference.x_valid,
        box_height=reference.box_height,
        meta=meta,
    )


def profile_sigma(x, orders, *, sigma: float, variation: float) -> np.ndarray:
    """Gaussian-core sigma (px), shape (n_traces, nx): grows quadratically towards the order ends
    and linearly with order number (slowly varying, as NRES profiles do)."""
    t = (np.asarray(x, dtype=float) - CENTRE) / CENTRE
    m = (np.asarray(orders, dtype=float)[:, None] - 85.0) / 33.0
    return sigma * (1.0 + variation * t[None, :] ** 2) * (1.0 + 0.5 * variation * m)


def wavelength_offset(x, y, *, distortion: float, lateral_colour: float, drift=(0.0, 0.0)) -> np.ndarray:
    """Offset dx (px) such that the true wavelength at column x is the physical model's at x - dx.

    A cubic field distortion that changes with detector height, lateral colour (a magnification
    along x growing with y) and the drift ``d0 + d1 t``; ``t`` and ``s`` are x and y mapped to
    [-1, 1]. x, y broadcast together.
    """
    t = (np.asarray(x, dtype=float) - CENTRE) / CENTRE
    s = (np.asarray(y, dtype=float) - CENTRE) / CENTRE
    cubic = distortion * (t**3 - 0.6 * t) * (1.0 + 0.5 * s)
    colour = lateral_colour * s * t
    return cubic + colour + drift[0] + drift[1] * t


def true_wavelength(model, x, y, order, fiber, *, distortion: float, lateral_colour: float, drift=(0.0, 0.0)):
    """True vacuum wavelength (nm, ndarray) at columns ``x`` of a trace at heights ``y``: the physical
    model's (``model.wavelength(x, order, fiber)``) at ``x - dx``, dx from :func:`wavelength_offset`.

    The one definition the 2-D frames, their scattered light and the extracted arcs share, so their
    truths agree.
    """
    x = np.asarray(x, dtype=float)
    dx = wavelength_offset(x, y, distortion=distortion, lateral_colour=lateral_colour, drift=drift)
    return model.wavelength(x - dx, int(order), int(fiber)).to_value(u.nm)
