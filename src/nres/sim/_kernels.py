"""Jitted kernels of the simulator (numba options from :mod:`nres._jit` only).

Kernels take contiguous float64/int64/bool arrays and scalars; the public modules validate inputs.
Pixel conventions: rows/columns are 0-based with pixel centres at integers, so pixel j spans
[j - 0.5, j + 0.5].
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import njit, njit_parallel

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


# ----- cross-dispersion profile ------------------------------------------------------------------
@njit
def _phi(z):
    return 0.5 * (1.0 + math.erf(z / _SQRT2))


@njit
def profile_cdf(y, c, sigma, asym, wing_frac, wing_sigma):
    """CDF at y of the normalised profile centred (mode) at c.

    Core: split normal with sigmas ``sigma (1 - asym)`` below and ``sigma (1 + asym)`` above the
    mode; wings: a Gaussian of ``wing_sigma`` centred at c with weight ``wing_frac``.
    """
    sl = sigma * (1.0 - asym)
    sr = sigma * (1.0 + asym)
    d = y - c
    if d < 0.0:
        core = 2.0 * sl / (sl + sr) * _phi(d / sl)
    else:
        core = sl / (sl + sr) + 2.0 * sr / (sl + sr) * (_phi(d / sr) - 0.5)
    return (1.0 - wing_frac) * core + wing_frac * _phi(d / wing_sigma)


@njit_parallel
def render_traces(image, y0, x0, centres, sigma, asym, wing_frac, wing_sigma, flux, half):
    """Add each trace's column flux times its pixel-integrated profile into ``image`` (in place).

    image (ny, nx) covers full-detector rows y0.. and columns x0..; centres, sigma, flux
    (n_traces, nx) per window column; the profile is deposited over rows within ``half`` px of
    the centre. Parallel over columns (independent outputs).
    """
    ny, nx = image.shape
    nt = centres.shape[0]
    for i in prange(nx):
        for t in range(nt):
            f = flux[t, i]
            if f == 0.0:
                continue
            c = centres[t, i]
            s = sigma[t, i]
            j0 = max(int(math.floor(c - half)), y0)
            j1 = min(int(math.ceil(c + half)), y0 + ny - 1)
            if j1 < j0:
                continue
            lo = profile_cdf(j0 - 0.5, c, s, asym, wing_frac, wing_sigma)
            for j in range(j0, j1 + 1):
                hi = profile_cdf(j + 0.5, c, s, asym, wing_frac, wing_sigma)
                image[j - y0, i] += f * (hi - lo)
                lo = hi


# ----- emission lines along x --------------------------------------------------------------------
@njit
def line_spectrum(x0, nx, line_x, line_flux, sigma, out):
    """Add pixel-integrated Gaussian lines (centre line_x, total line_flux, sigma px) to out (nx,).

    Column k of ``out`` is full-detector column x0 + k, spanning [x0 + k - 0.5, x0 + k + 0.5].
    """
    reach = 8.0 * sigma
    for n in range(line_x.size):
        xl = line_x[n]
        k0 = max(int(math.floor(xl - reach)) - x0, 0)
        k1 = min(int(math.ceil(xl + reach)) - x0, nx - 1)
        if k1 < k0:
            continue
        lo = _phi((x0 + k0 - 0.5 - xl) / sigma)
        for k in range(k0, k1 + 1):
            hi = _phi((x0 + k + 0.5 - xl) / sigma)
            out[k] += line_flux[n] * (hi - lo)
            lo = hi


# ----- counter-based random numbers (a pixel's draws do not depend on the window) ----------------
@njit
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit
def _uniform(key, counter):
    """Uniform in (0, 1) from a 64-bit key and a counter (splitmix64 finaliser)."""
    z = _mix(key + np.uint64(counter + 1) * np.uint64(0x9E3779B97F4A7C15))
    return (float(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit
def _normal(key, counter):
    u1 = _uniform(key, counter)
    u2 = _uniform(key, counter + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit
def _poisson(lam, key, counter):
    """Poisson deviate: inversion below 10, Hormann's PTRS transformed rejection above."""
    if lam <= 0.0:
        return 0.0
    if lam < 10.0:
        u = _uniform(key, counter)
        p = math.exp(-lam)
        cdf = p
        k = 0
        while u > cdf and k < 1000:
            k += 1
            p *= lam / k
            cdf += p
        return float(k)
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    n = counter
    while True:
        u = _uniform(key, n) - 0.5
        v = _uniform(key, n + 1)
        n += 2
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0.0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b) <= -lam + k * loglam - math.lgamma(
            k + 1.0
        ):
            return k


@njit
def pixel_key(seed, stream, y, x):
    """64-bit key of full-detector pixel (y, x) for one random stream."""
    return _mix(_mix(np.uint64(seed) ^ (np.uint64(stream) << np.uint64(48))) + np.uint64(y * 8192 + x))


@njit_parallel
def add_noise(expected, y0, x0, seed, read_noise, out):
    """out = Poisson(expected) + read_noise * N(0, 1), drawn per full-detector pixel (in electrons)."""
    ny, nx = expected.shape
    for i in prange(ny):
        for k in range(nx):
            key = pixel_key(seed, 1, y0 + i, x0 + k)
            out[i, k] = _poisson(expected[i, k], key, 2) + read_noise * _normal(key, 0)


@njit
def poisson_draws(lam, seed, n):
    """n counter-based Poisson draws of mean lam (for tests of the generator)."""
    out = np.empty(n)
    for k in range(n):
        out[k] = _poisson(lam, pixel_key(seed, 7, k // 4096, k % 4096), 2)
    return out


# ----- detector effects --------------------------------------------------------------------------
@njit_parallel
def bleed_columns(image, full_well, bled):
    """Spread charge above ``full_well`` along each column, half up and half down (in place).

    ``bled`` (bool, same shape) is set where a pixel received bleeding charge. Parallel over columns.
    """
    ny, nx = image.shape
    for k in prange(nx):
        for j in range(ny):
            excess = image[j, k] - full_well
            if excess <= 0.0:
                continue
            image[j, k] = full_well
            for direction in (-1, 1):
                left = 0.5 * excess
                jj = j + direction
                while left > 0.0 and 0 <= jj < ny:
                    room = full_well - image[jj, k]
                    if room > 0.0:
                        take = min(room, left)
                        image[jj, k] += take
                        left -= take
                        bled[jj, k] = True
                    jj += direction


@njit
def deposit_tracks(image, hit, y0, x0, ys, xs, dys, dxs, energies):
    """Add straight cosmic-ray tracks (start ys, xs; extent dys, dxs px; energy e-) to a window."""
    ny, nx = image.shape
    for n in range(ys.size):
        length = math.hypot(dys[n], dxs[n])
        nstep = max(int(4.0 * length), 1)
        e = energies[n] / nstep
        for s in range(nstep):
            f = (s + 0.5) / nstep if nstep > 1 else 0.0
            j = int(math.floor(ys[n] + f * dys[n] + 0.5)) - y0
            i = int(math.floor(xs[n] + f * dxs[n] + 0.5)) - x0
            if 0 <= j < ny and 0 <= i < nx:
                image[j, i] += e
                hit[j, i] = True


# ----- scattered light and detector response ----------------------------------------------------
@njit
def _node_weight(p, cell, n):
    """Lower node index and weight of the upper node for full-detector position p on a grid of n
    nodes at ``cell * k + (cell - 1) / 2``; constant beyond the end nodes."""
    t = (p - 0.5 * (cell - 1.0)) / cell
    if t <= 0.0:
        return 0, 0.0
    if t >= n - 1:
        return n - 2, 1.0
    k = int(math.floor(t))
    return k, t - k


@njit_parallel
def bilinear_grid(grid, cell, y0, x0, out):
    """out[i, k] = bilinear interpolation of grid (n, m) at full-detector pixel (y0 + i, x0 + k).

    The value at a pixel depends only on its full-detector position (a window is a crop).
    """
    ny, nx = out.shape
    n, m = grid.shape
    for i in prange(ny):
        ky, fy = _node_weight(float(y0 + i), cell, n)
        for k in range(nx):
            kx, fx = _node_weight(float(x0 + k), cell, m)
            lo = (1.0 - fx) * grid[ky, kx] + fx * grid[ky, kx + 1]
            hi = (1.0 - fx) * grid[ky + 1, kx] + fx * grid[ky + 1, kx + 1]
            out[i, k] = (1.0 - fy) * lo + fy * hi


@njit_parallel
def respond(electrons, lin_e, sat_e, nonlinearity, out, nonlinear, saturated):
    """Detector response in electrons: above ``lin_e`` the excess loses up to ``nonlinearity`` of
    itself (reached at ``sat_e``); clipped at ``sat_e``. Fills out, nonlinear, saturated."""
    ny, nx = electrons.shape
    span = sat_e - lin_e
    for i in prange(ny):
        for k in range(nx):
            e = electrons[i, k]
            v = e
            if e > lin_e:
                excess = e - lin_e
                v = lin_e + excess * (1.0 - nonlinearity * min(excess / span, 1.0))
            sat = v >= sat_e
            out[i, k] = min(v, sat_e)
            saturated[i, k] = sat
            nonlinear[i, k] = e > lin_e and not sat


def _warmup():
    """Compile every kernel of nres.sim on tiny inputs."""
    wl = np.array([500.0, 500.1])
    amp = np.array([0.3, 0.2])
    sig = np.array([0.005, 0.004])
    star_flux(np.array([500.0, 500.05]), wl, amp, sig, 0.005)
    star_mean(np.array([499.99]), np.array([500.01]), wl, amp, sig, 0.005)
    img = np.zeros((8, 4))
    c = np.full((1, 4), 3.2)
    s = np.full((1, 4), 1.5)
    render_traces(img, 0, 0, c, s, 0.1, 0.02, 4.0, np.ones((1, 4)), 4.0)
    line = np.zeros(4)
    line_spectrum(0, 4, np.array([1.3]), np.array([10.0]), 1.1, line)
    out = np.empty_like(img)
    add_noise(img * 100.0, 0, 0, 1, 3.0, out)
    poisson_draws(20.0, 1, 4)
    bleed_columns(img * 10.0, 5.0, np.zeros(img.shape, dtype=np.bool_))
    deposit_tracks(
        img,
        np.zeros(img.shape, dtype=np.bool_),
        0,
        0,
        np.array([1.0]),
        np.array([1.0]),
        np.array([2.0]),
        np.array([1.0]),
        np.array([500.0]),
    )
    bilinear_grid(np.arange(6.0).reshape(2, 3), 4.0, 0, 0, np.empty((3, 5)))
    respond(
        img * 1e4,
        2.0e4,
        3.0e4,
        0.05,
        np.empty_like(img),
        np.empty(img.shape, np.bool_),
        np.empty(img.shape, np.bool_),
    )
