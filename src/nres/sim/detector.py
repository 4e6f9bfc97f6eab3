"""Detector effects of simulated frames: defects, cosmic rays, response, raw layout; and the noise of
simulated extracted spectra."""

from __future__ import annotations

import numpy as np

from . import _kernels

__all__ = ["RAW_SHAPE", "TRIMSEC", "BIASSEC", "DATASEC", "defects", "cosmic_rays", "respond", "raw_layout"]
__all__ += ["extracted_counts"]

#: Raw NRES frame shape (ny, nx): 4096 data columns, 6 unused, a 58-column overscan; 12 extra rows.
RAW_SHAPE = (4108, 4160)
TRIMSEC = "[1:4096,1:4096]"
DATASEC = "[1:4096,1:4096]"
BIASSEC = "[4103:4160,1:4096]"
_PIXEL_CM = 15e-4


def defects(seed: int, n_bad_columns: int, n_hot_pixels: int):
    """Full-detector bad columns and hot pixels (deterministic from the seed).

    Returns
    -------
    bad_x : ndarray of int (n_bad_columns,)
        Columns (with their first row: a column is bad from there upwards, as charge-transfer traps).
    bad_y0 : ndarray of int (n_bad_columns,)
    hot_y, hot_x : ndarray of int (n_hot_pixels,)
    hot_rate : ndarray (n_hot_pixels,)
        Extra dark current (e-/s).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xBAD]))
    bad_x = rng.integers(0, 4096, n_bad_columns)
    bad_y0 = rng.integers(0, 3000, n_bad_columns)
    hot_y = rng.integers(0, 4096, n_hot_pixels)
    hot_x = rng.integers(0, 4096, n_hot_pixels)
    hot_rate = 10.0 ** rng.uniform(-1.0, 1.0, n_hot_pixels)
    return bad_x, bad_y0, hot_y, hot_x, hot_rate


def cosmic_rays(seed: int, exptime: float, rate: float):
    """Cosmic-ray events on the full detector: start (y, x), extent (dy, dx) px, energy (e-).

    ``rate`` is in events per cm2 per minute; about a third are short tracks (grazing muons), the
    rest single hits a pixel or two across.
    """
    area = (4096 * _PIXEL_CM) ** 2
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC05]))
    n = rng.poisson(rate * area * exptime / 60.0)
    ys = rng.uniform(-0.5, 4095.5, n)
    xs = rng.uniform(-0.5, 4095.5, n)
    track = rng.uniform(size=n) < 0.35
    length = np.where(track, rng.uniform(3.0, 25.0, n), rng.uniform(0.0, 1.2, n))
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    energy = np.where(track, 80.0 * length, 1.0) * rng.lognormal(np.log(1500.0), 0.5, n)
    return ys, xs, length * np.sin(angle), length * np.cos(angle), energy


def render_cosmics(shape, y0, x0, events):
    """Charge (e-) and hit mask of the events in a window of ``shape`` at ``(y0, x0)``."""
    image = np.zeros(shape)
    hit = np.zeros(shape, dtype=np.bool_)
    _kernels.deposit_tracks(
        image, hit, int(y0), int(x0), *(np.ascontiguousarray(e, dtype=float) for e in events)
    )
    return image, hit


def respond(electrons, *, gain, saturate, maxlin, nonlinearity):
    """Detector response in electrons: non-linear above MAXLIN, clipped at SATURATE (ADU levels).

    Returns
    -------
    out : ndarray
        Recorded electrons (``ADU * gain`` without the bias).
    nonlinear, saturated : ndarray of bool
    """
    e = np.ascontiguousarray(electrons, dtype=np.float64)
    e2 = e.reshape(1, -1) if e.ndim != 2 else e
    out = np.empty(e2.shape)
    nonlinear = np.empty(e2.shape, dtype=np.bool_)
    saturated = np.empty(e2.shape, dtype=np.bool_)
    _kernels.respond(
        e2, float(maxlin * gain), float(saturate * gain), float(nonlinearity), out, nonlinear, saturated
    )
    return out.reshape(e.shape), nonlinear.reshape(e.shape), saturated.reshape(e.shape)


def raw_layout(electrons, *, seed, gain, read_noise, bias_level):
    """Raw ADU frame (4108, 4160) int32 with overscan, from the full-detector recorded electrons.

    The bias level varies slowly with row (as a real amplifier's); every pixel of the raw array,
    overscan included, gets read noise from the counter-based generator.
    """
    raw = np.zeros(RAW_SHAPE)
    raw[:4096, :4096] = electrons / gain
    rows = np.arange(RAW_SHAPE[0], dtype=float)[:, None]
    bias = bias_level + 1.5 * np.sin(2.0 * np.pi * rows / 3000.0)
    noise = np.empty(RAW_SHAPE)
    _kernels.add_noise(np.zeros(RAW_SHAPE), 0, 0, int(seed) ^ 0x5EED, read_noise / gain, noise)
    return np.round(raw + bias + noise).astype(np.int32)


def extracted_counts(expected, read_noise, *, seed, stream, noiseless=False):
    """Observed electrons of an extracted spectrum: Poisson(``expected``) plus Gaussian read noise of
    sigma ``read_noise`` (e-), drawn from ``SeedSequence([seed, stream])``; a copy of ``expected``
    when ``noiseless``."""
    if noiseless:
        return expected.copy()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), stream]))
    return rng.poisson(expected).astype(float) + rng.normal(0.0, read_noise, expected.shape)
