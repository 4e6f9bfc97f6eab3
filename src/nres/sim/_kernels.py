"""Jitted kernels of the simulator (numba options from :mod:`nres._jit` only).

Kernels take contiguous float64/int64/bool arrays and scalars; the public modules validate inputs.
Pixel conventions: rows/columns are 0-based with pixel centres at integers, so pixel j spans
[j - 0.5, j + 0.5].
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import njit

_SQRT2 = math.sqrt(2.0)
_SQRT_PI_2 = math.sqrt(math.pi / 2.0)
#: Lines are summed out to this many (convolved) sigmas; exp(-12.5**2 / 2) ~ 1e-34 is below
#: float64 resolution of the continuum.
_NSIG = 12.5


# ----- stellar spectrum ----------------------------------------------------------------------
@njit
def star_flux(lam, line_wl, line_amp, line_sigma, max_sigma):
    """Continuum-normalised flux ``1 - sum amp_i exp(-(lam - wl_i)^2 / (2 sigma_i^2))``.

    lam (n,) rest-frame wavelengths; lines sorted by wavelength.
    """
    n = lam.size
    out = np.empty(n)
    reach = _NSIG * max_sigma
    for i in range(n):
        x = lam[i]
        k0 = np.searchsorted(line_wl, x - reach)
        k1 = np.searchsorted(line_wl, x + reach)
        s = 0.0
        for k in range(k0, k1):
            d = (x - line_wl[k]) / line_sigma[k]
            s += line_amp[k] * math.exp(-0.5 * d * d)
        out[i] = 1.0 - s
    return out


@njit
def star_mean(lo, hi, line_wl, line_amp, line_sigma, max_sigma):
    """Mean of :func:`star_flux` over each interval [lo_i, hi_i] (exact, via erf)."""
    n = lo.size
    out = np.empty(n)
    reach = _NSIG * max_sigma
    for i in range(n):
        a = lo[i]
        b = hi[i]
        k0 = np.searchsorted(line_wl, a - reach)
        k1 = np.searchsorted(line_wl, b + reach)
        s = 0.0
        for k in range(k0, k1):
            sg = line_sigma[k]
            w = line_wl[k]
            s += (
                line_amp[k]
                * sg
                * _SQRT_PI_2
                * (math.erf((b - w) / (_SQRT2 * sg)) - math.erf((a - w) / (_SQRT2 * sg)))
            )
        out[i] = 1.0 - s / (b - a)
    return out


def _warmup():
    """Compile every kernel of nres.sim on tiny inputs."""
    wl = np.array([500.0, 500.1])
    amp = np.array([0.3, 0.2])
    sig = np.array([0.005, 0.004])
    star_flux(np.array([500.0, 500.05]), wl, amp, sig, 0.005)
    star_mean(np.array([499.99]), np.array([500.01]), wl, amp, sig, 0.005)
