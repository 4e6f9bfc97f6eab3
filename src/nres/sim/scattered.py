"""Smooth scattered light: a fraction (1-3%) of the local flux, smoothed over hundreds of pixels.

It is computed on a coarse 64 x 64 grid of the *whole* detector from the continuum (or line flux)
of every lit trace, then interpolated bilinearly pixel by pixel (a numba kernel whose value at a
pixel depends only on the pixel's full-detector position), so a window gets exactly the values of
the same pixels of a full frame. The grid depends only on the geometry, sources, physical model
and exposure scale, so :mod:`nres.sim.core` caches it.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from scipy.ndimage import gaussian_filter

from . import _kernels
from .geometry import true_wavelength
from .sources import blaze_function, line_brightness, tungsten_sed

__all__ = ["scattered_light", "scattered_grid", "interpolate_grid", "CELL"]

#: Size (px) of a coarse cell; grid node k sits at full-detector pixel ``CELL * k + (CELL - 1) / 2``.
CELL = 64
_NCELL = 4096 // CELL
_SMOOTH_CELLS = 2.0


def scattered_grid(traces, lit, model, cfg, *, scale, line_list, template_level):
    """Scattered light (electrons per pixel) at the nodes of the coarse grid, shape (64, 64).

    Parameters are those of :func:`scattered_light`.
    """
    nodes = (np.arange(_NCELL) + 0.5) * CELL - 0.5
    cells = np.zeros((_NCELL, _NCELL))
    bins = np.arange(_NCELL + 1) * CELL - 0.5
    xfine = np.arange(0.0, 4096.0, 32.0)
    lit_idx = np.flatnonzero(np.isin(traces.fibers, list(lit)))
    y_nodes, y_fine = traces.center(nodes)[lit_idx], traces.center(xfine)[lit_idx]
    valid_nodes = traces.valid(nodes)[lit_idx]
    if line_list is not None:
        lam = line_list["wavelength"].to_value(u.nm)
        bright = line_brightness(line_list)
    for k, t in enumerate(lit_idx):
        fiber, order = int(traces.fibers[t]), int(traces.orders[t])
        source = lit[fiber]
        y, yf = y_nodes[k], y_fine[k]
        wl = true_wavelength(
            model, xfine, yf, order, fiber, distortion=cfg.distortion, lateral_colour=cfg.lateral_colour
        )
        centre = np.interp(2047.5, xfine, wl)
        blz = blaze_function(wl, order, centre)
        if source == "thar":
            ok = (lam > wl.min()) & (lam < wl.max())
            order_x = np.argsort(wl)
            xl = np.interp(lam[ok], wl[order_x], xfine[order_x])
            fl = cfg.thar_level * scale * bright[ok] * np.interp(xl, xfine, blz)
            per_col = np.histogram(xl, bins=bins, weights=fl)[0] / CELL
        else:
            level = cfg.flat_level if source == "flat" else template_level
            sed = tungsten_sed(wl) if source == "flat" else tungsten_sed(wl) ** (3000.0 / 5800.0)
            per_col = np.interp(nodes, xfine, level * scale * blz * sed)
        valid = valid_nodes[k] & (y > -0.5) & (y < 4095.5)
        rows = np.clip(np.floor((y + 0.5) / CELL).astype(int), 0, _NCELL - 1)
        np.add.at(cells, (rows[valid], np.arange(_NCELL)[valid]), per_col[valid] * CELL)
    local = gaussian_filter(cells / CELL**2, _SMOOTH_CELLS, mode="nearest")
    u_, v_ = np.meshgrid(nodes / 4095.0, nodes / 4095.0, indexing="ij")
    lo, hi = cfg.scattered_fraction
    frac = lo + (hi - lo) * (0.5 + 0.5 * np.sin(2.0 * np.pi * (0.7 * u_ + 0.4 * v_) + 1.0))
    return frac * local


def interpolate_grid(grid, window):
    """Bilinear interpolation of a coarse-grid array (64, 64) onto ``window`` = (y0, y1, x0, x1).

    Constant beyond the end nodes. Each pixel's value depends only on its full-detector position.

    Returns
    -------
    ndarray, shape (y1 - y0, x1 - x0)
    """
    y0, y1, x0, x1 = (int(v) for v in window)
    out = np.empty((y1 - y0, x1 - x0))
    _kernels.bilinear_grid(np.ascontiguousarray(grid, dtype=np.float64), float(CELL), y0, x0, out)
    return out


def scattered_light(traces, lit, model, cfg, window, *, scale, line_list, template_level, seed=0):
    """Scattered light (electrons) in ``window`` = (y0, y1, x0, x1).

    Parameters
    ----------
    traces : Traces
        The frame's (transformed) traces.
    lit : dict
        fiber -> source ("flat", "thar", "star").
    model : physical model with ``.wavelength(x, order, fiber)``.
    cfg : SimConfig
    window : (int, int, int, int)
        Full-detector rows y0:y1 and columns x0:x1.
    scale : float
        Exposure-time scale of the source levels.
    line_list : QTable or None
        ThAr lines (``wavelength``, ``intensity``) when a fiber has ThAr.
    template_level : float
        Star continuum level (electrons per column at the blaze peak).
    seed : int
        Unused (the scattered light is deterministic); kept for backward compatibility.

    Returns
    -------
    ndarray, shape (y1 - y0, x1 - x0)
    """
    grid = scattered_grid(
        traces, lit, model, cfg, scale=scale, line_list=line_list, template_level=template_level
    )
    return interpolate_grid(grid, window)
