"""Synthetic frames with exactly known extracted fluxes for the extraction tests.

Traces are straight-ish Legendre curves (tilted so a block of columns samples every sub-pixel
phase); the cross-dispersion profile is a pixel-integrated Gaussian (erf) whose sigma varies
slowly along x; the truth is the flux per column deposited (all of it lands within a few sigma).
Nothing here uses nres.extract.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData, VarianceUncertainty
from scipy.special import erf

from nres.traces import Traces
from nres.window import with_window_origin


def make_traces(
    *,
    n_orders=3,
    fibers=(0, 1),
    y_first=30.0,
    order_step=40.0,
    fiber_step=18.0,
    tilt=6.0,
    x_domain=(0.0, 4095.0),
    box_height=10.5,
):
    """Traces of ``n_orders`` orders (m = 90, 91, ...) x fibers; fiber 0 at larger y."""
    coef, orders, fib = [], [], []
    for k in range(n_orders):
        for f in fibers:
            y = y_first + k * order_step + (fibers[-1] - f) * fiber_step
            coef.append([y, tilt, 0.8, 0.2])
            orders.append(90 + k)
            fib.append(f)
    return Traces(np.array(coef), np.array(orders), np.array(fib), x_domain=x_domain, box_height=box_height)


def sigma_of(x, *, sigma=1.5, variation=0.05):
    """Profile sigma (px) at full-detector x: a slow quadratic change along the order."""
    t = (np.asarray(x, float) - 2047.5) / 2047.5
    return sigma * (1.0 + variation * t * t)


def render(traces, flux, *, shape, x0=0, y0=0, sigma=1.5, variation=0.05, background=None):
    """Noiseless image (ny, nx): each trace's column flux times its pixel-integrated Gaussian."""
    ny, nx = shape
    x = np.arange(nx) + x0
    rows = np.arange(ny)[:, None] + y0
    img = np.zeros(shape)
    cen = traces.center(x)
    s = sigma_of(x, sigma=sigma, variation=variation)[None, :]
    for t in range(len(traces)):
        c = cen[t][None, :]
        frac = 0.5 * (erf((rows + 0.5 - c) / (np.sqrt(2) * s)) - erf((rows - 0.5 - c) / (np.sqrt(2) * s)))
        img += flux[t][None, :] * frac
    if background is not None:
        img += background
    return img


def to_frame(img, *, read_noise, x0=0, y0=0, var=None, mask=None, flags=None, objects="tung&tung&none"):
    meta = with_window_origin({"RDNOISE": read_noise, "OBJECTS": objects}, y0, x0)
    if var is None:
        var = read_noise**2 + np.maximum(img, 0.0)
    f = CCDData(img, unit="electron", uncertainty=VarianceUncertainty(var), mask=mask, meta=meta)
    if flags is not None:
        f.flags = flags
    return f


def star_flux(x, n_traces, *, level=1.0e4, seed=0):
    """Smooth blaze times absorption lines, one row per trace (strictly positive)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, float)
    out = np.empty((n_traces, x.size))
    for t in range(n_traces):
        blaze = np.exp(-0.5 * ((x - 2047.5 - 200 * t) / 1500.0) ** 2)
        lines = np.ones_like(x)
        for xc in rng.uniform(x.min(), x.max(), 12):
            lines -= 0.6 * np.exp(-0.5 * ((x - xc) / 2.0) ** 2)
        out[t] = level * blaze * np.clip(lines, 0.05, None)
    return out
