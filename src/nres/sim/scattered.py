"""Smooth scattered light: a fraction (1-3%) of the local flux, smoothed over hundreds of pixels.

It is computed on a coarse 64 x 64 grid of the *whole* detector from the continuum (or line flux)
of every lit trace, then interpolated bilinearly, so a window gets exactly the values of the same
pixels of a full frame.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from scipy.ndimage import gaussian_filter

from .geometry import wavelength_offset
from .sources import blaze_function, tungsten_sed

__all__ = ["scattered_light"]

_CELL = 64
_NCELL = 4096 // _CELL
_SMOOTH_CELLS = 2.0


def _interp_matrix(positions, nodes):
    """Bilinear weights (len(positions), len(nodes)); constant beyond the end nodes."""
    eye = np.eye(nodes.size)
    return np.stack([np.interp(positions, nodes, eye[k]) for k in range(nodes.size)], axis=1)


def scattered_light(traces, lit, model, cfg, window, *, scale, line_list, template_level, seed):
    """Scattered light (electrons) in ``window`` = (y0, y1, x0, x1).

    Parameters
    ----------
    traces : Traces
        The frame's (transformed) traces.
    lit : dict
        fiber -> source ("flat", "thar", "star").
    model : physical model with ``.wavelength(x, order, fiber)``.
    cfg : SimConfig
    scale : float
        Exposure-time scale of the source levels.
    """
    nodes = (np.arange(_NCELL) + 0.5) * _CELL - 0.5
    cells = np.zeros((_NCELL, _NCELL))
    bins = np.arange(_NCELL + 1) * _CELL - 0.5
    xfine = np.arange(0.0, 4096.0, 32.0)
    lit_idx = np.flatnonzero(np.isin(traces.fibers, list(lit)))
    y_nodes, y_fine = traces.center(nodes)[lit_idx], traces.center(xfine)[lit_idx]
    valid_nodes = traces.valid(nodes)[lit_idx]
    if line_list is not None:
        lam = line_list["wavelength"].to_value(u.nm)
        bright = np.nan_to_num(np.asarray(line_list["intensity"], dtype=float), nan=0.0)
        ref = np.percentile(bright[bright > 0], 99.8)
    for k, t in enumerate(lit_idx):
        fiber, order = int(traces.fibers[t]), int(traces.orders[t])
        source = lit[fiber]
        y, yf = y_nodes[k], y_fine[k]
        dx = wavelength_offset(xfine, yf, distortion=cfg.distortion, lateral_colour=cfg.lateral_colour)
        wl = model.wavelength(xfine - dx, order, fiber).to_value(u.nm)
        centre = np.interp(2047.5, xfine, wl)
        blz = blaze_function(wl, order, centre)
        if source == "thar":
            ok = (lam > wl.min()) & (lam < wl.max())
            order_x = np.argsort(wl)
            xl = np.interp(lam[ok], wl[order_x], xfine[order_x])
            fl = cfg.thar_level * scale * bright[ok] / ref * np.interp(xl, xfine, blz)
            per_col = np.histogram(xl, bins=bins, weights=fl)[0] / _CELL
        else:
            level = cfg.flat_level if source == "flat" else template_level
            sed = tungsten_sed(wl) if source == "flat" else tungsten_sed(wl) ** (3000.0 / 5800.0)
            per_col = np.interp(nodes, xfine, level * scale * blz * sed)
        valid = valid_nodes[k] & (y > -0.5) & (y < 4095.5)
        rows = np.clip(np.floor((y + 0.5) / _CELL).astype(int), 0, _NCELL - 1)
        np.add.at(cells, (rows[valid], np.arange(_NCELL)[valid]), per_col[valid] * _CELL)
    local = gaussian_filter(cells / _CELL**2, _SMOOTH_CELLS, mode="nearest")
    u_, v_ = np.meshgrid(nodes / 4095.0, nodes / 4095.0, indexing="ij")
    lo, hi = cfg.scattered_fraction
    frac = lo + (hi - lo) * (0.5 + 0.5 * np.sin(2.0 * np.pi * (0.7 * u_ + 0.4 * v_) + 1.0))
    y0, y1, x0, x1 = window
    wy = _interp_matrix(np.arange(y0, y1, dtype=float), nodes)
    wx = _interp_matrix(np.arange(x0, x1, dtype=float), nodes)
    return wy @ (frac * local) @ wx.T
