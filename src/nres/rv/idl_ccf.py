"""The original's Stage A cross-correlation (``mgbcc``), literal port (idl-rv-ops.md 8).

:func:`mgbcc` correlates one order of a star with the same order of a ZERO template on a common
uniform ln(lambda) grid (FFT, 150 km/s boxcar high-pass, cosine tapers) and refines the peak with a
parabola. It is the engine of ``measure(..., method="ccf")`` under its legacy options; the default
``ccf`` method (:mod:`nres.rv.ccf`) generalises it to all orders with exact redshifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..doppler import C_M_S
from ..errors import FitError, InvalidParameterError
from . import _idl

__all__ = ["MgbccResult", "mgbcc", "HIGHPASS_KM_S", "HALF_WINDOW"]

#: Width of the boxcar high-pass (km/s).
HIGHPASS_KM_S = 150.0
#: Half-length (samples) of the CCF window kept around the peak.
HALF_WINDOW = 400
_C_KM_S = C_M_S / 1e3


@dataclass(frozen=True)
class MgbccResult:
    """Output of :func:`mgbcc` (the original's names in brackets).

    Attributes
    ----------
    rcc : float
        Peak lag as a ln(lambda) shift [rcc]; the original uses it directly as the redshift.
    rvv : float
        ``c * rcc`` in km/s, no barycentric correction [rvv].
    ampcc : float
        Peak height of the normalised CCF (<= 1) [ampcc].
    widcc : float
        FWHM of the CCF in km/s [widcc].
    ccf : ndarray (801,)
        The CCF around the peak [ccm].
    velocity : ndarray (801,)
        Its lag axis in km/s [delv].
    step : float
        The common grid's ln(lambda) step [rmin].
    """

    rcc: float
    rvv: float
    ampcc: float
    widcc: float
    ccf: np.ndarray
    velocity: np.ndarray
    step: float


def _edge_fill(arr):
    """Hold the 11th positive sample's value to the left and the 10th-from-last one's to the right."""
    pos = np.flatnonzero(arr > 0)
    if pos.size < 21:
        msg = "mgbcc: fewer than 21 positive samples on the common grid"
        raise FitError(msg)
    p_lo, p_hi = int(pos[10]), int(pos[pos.size - 10])
    out = arr.copy()
    out[: p_lo + 1] = arr[p_lo]
    out[p_hi:] = arr[p_hi]
    return out, p_lo, p_hi


def _taper(n, p_lo, p_hi):
    """1 on [p_lo, p_hi], 0 outside, raised-cosine ramps of floor(0.1 (p_hi - p_lo + 1)) samples."""
    w = np.zeros(n)
    w[p_lo : p_hi + 1] = 1.0
    tw = int(np.floor(0.1 * (p_hi - p_lo + 1)))
    if tw > 0:
        ramp = 0.5 * (1.0 - np.cos(np.pi * np.arange(tw) / tw))
        w[p_lo : p_lo + tw] = ramp
        w[p_hi - tw + 1 : p_hi + 1] = ramp[::-1]
    return w


def mgbcc(zlam, zstar, lam, star, *, lsq_degree=2) -> MgbccResult:
    """Cross-correlate one order of a star with a ZERO order, as the original's ``mgbcc``.

    Parameters
    ----------
    zlam, zstar : array_like (n_z,)
        ZERO wavelengths (nm, rest frame) and flux (the original: a blaze-subtracted spectrum).
    lam, star : array_like (n,)
        Star wavelengths (nm) and flux.
    lsq_degree : {2, 1}
        Degree of the 4-point least-squares interpolation that resamples both spectra. IDL's
        ``INTERPOL(/LSQUADRATIC)`` is documented as a parabola (2); GDL 1.0.1, which produced the
        reference outputs in tests/data/rv_gdl_*, fits a straight line (1).

    Returns
    -------
    MgbccResult

    Raises
    ------
    InvalidParameterError
        Inputs of different lengths or non-increasing wavelengths.
    FitError
        Too few positive samples, or no half-maximum crossing.
    """
    zlam, zstar, lam, star = (np.asarray(a, dtype=np.float64) for a in (zlam, zstar, lam, star))
    if zlam.shape != zstar.shape or lam.shape != star.shape or zlam.ndim != 1 or lam.ndim != 1:
        msg = "mgbcc: zlam/zstar and lam/star must be 1-D pairs of equal length"
        raise InvalidParameterError(msg)
    if np.any(np.diff(zlam) <= 0) or np.any(np.diff(lam) <= 0):
        msg = "mgbcc: wavelengths must increase"
        raise InvalidParameterError(msg)
    if lsq_degree not in (1, 2):
        msg = f"mgbcc: lsq_degree must be 1 or 2, got {lsq_degree!r}"
        raise InvalidParameterError(msg)
    sstar = _idl.smooth(_idl.smooth(star, 3), 3)
    rmin = float(min(np.min(np.abs(_idl.deriv(zlam)) / zlam), np.min(np.abs(_idl.deriv(lam)) / lam)))
    lmin = min(zlam.min(), lam.min())
    lmax = max(zlam.max(), lam.max())
    nn = int(np.floor(np.log(lmax / lmin) / rmin)) + 1
    grid = lmin * np.exp(rmin * np.arange(nn))
    interp = _idl.interpol_lsquadratic if lsq_degree == 2 else _idl.interpol_lslinear
    zr = interp(zstar, zlam, grid)
    sr = interp(sstar, lam, grid)
    nbig = 2048 * (nn // 2048 + 1)
    i0 = (nbig - nn) // 2
    dv = rmin * _C_KM_S
    width = int(HIGHPASS_KM_S / dv)
    arrays = []
    for r in (sr, zr):
        big = np.zeros(nbig)
        big[i0 : i0 + nn] = r
        big, p_lo, p_hi = _edge_fill(big)
        big = big - _idl.smooth(big, width)
        arrays.append(big * _taper(nbig, p_lo, p_hi))
    s, z = arrays
    cc = np.fft.ifft(np.fft.fft(s) * np.conj(np.fft.fft(z))).real
    cc = np.roll(cc, nbig // 2) / (np.sqrt(np.sum(s * s)) * np.sqrt(np.sum(z * z)))
    ix = int(np.argmax(cc))
    lo = max(ix - HALF_WINDOW, 0)
    window = cc[lo : ix + HALF_WINDOW + 1]
    ccm = np.zeros(2 * HALF_WINDOW + 1)
    ccm[: window.size] = window  # the original zero-pads a short window at its end
    j = np.arange(2 * HALF_WINDOW + 1)
    delv = (j - HALF_WINDOW + ix - nbig // 2) * dv
    peak = ccm[HALF_WINDOW]
    half = 0.5 * peak
    right = np.flatnonzero(ccm[HALF_WINDOW:] <= half)
    left = np.flatnonzero(ccm[: HALF_WINDOW + 1][::-1] <= half)
    if right.size == 0 or left.size == 0:
        msg = "mgbcc: the CCF does not fall to half its peak within the window"
        raise FitError(msg)
    kr = HALF_WINDOW + int(right[0])
    kl = HALF_WINDOW - int(left[0])
    xr = kr - 1 + (ccm[kr - 1] - half) / (ccm[kr - 1] - ccm[kr])
    xl = kl + 1 - (ccm[kl + 1] - half) / (ccm[kl + 1] - ccm[kl])
    fwhm_pix = xr - xl
    near = np.abs(j - HALF_WINDOW) <= 0.33 * fwhm_pix
    if near.sum() < 5:
        near = np.abs(j - HALF_WINDOW) <= 2
    t = (j[near] - HALF_WINDOW).astype(float)
    c2, c1, c0 = np.polyfit(t, ccm[near], 2)
    ds = -c1 / (2.0 * c2)
    rcc = (ix - nbig // 2 + ds) * rmin
    return MgbccResult(
        rcc=float(rcc),
        rvv=float(rcc * _C_KM_S),
        ampcc=float(c0 + c1 * ds + c2 * ds * ds),
        widcc=float(fwhm_pix * dv),
        ccf=ccm,
        velocity=delv,
        step=rmin,
    )
