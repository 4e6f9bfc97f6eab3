"""A ThAr arc at the extracted-spectrum level: proves the wavelength solver without extraction.

The true wavelength of every pixel is the site's physical model at ``x - dx`` where ``dx`` is the
simulator's smooth distortion (:func:`nres.sim.geometry.wavelength_offset`: a cubic field
distortion and lateral colour, outside the model's family) evaluated at the trace height of the
same geometry as the 2-D simulator, so the 2-D and extracted truths agree.
"""

from __future__ import annotations

import functools

import astropy.units as u
import numpy as np
from astropy.nddata import VarianceUncertainty
from astropy.table import QTable

from ..errors import InvalidParameterError
from ..flags import Flag, empty_flags
from ._kernels import line_spectrum
from .config import SimConfig
from .detector import extracted_counts
from .geometry import transform_traces, true_wavelength
from .sources import blaze_function, line_brightness
from .truth import Truth

__all__ = ["simulate_extracted_arc"]

NX_DETECTOR = 4096


def _trace_heights(site, fibers, orders, x, cfg):
    """Trace centre y (n_fiber, n_order, nx) of the simulator's geometry (reference traces, moved)."""
    from ..instrument import reference_traces

    geo = transform_traces(
        reference_traces(site), shift=cfg.trace_shift, rotation=cfg.trace_rotation, scale=cfg.trace_scale
    )
    cen = geo.center(x.astype(float))
    out = np.empty((len(fibers), len(orders), x.size))
    for i, f in enumerate(fibers):
        for j, m in enumerate(orders):
            k = np.flatnonzero((geo.fibers == f) & (geo.orders == m))
            if k.size == 0:
                msg = f"simulate_extracted_arc: no reference trace for fiber {f}, order {m} at site {site!r}"
                raise InvalidParameterError(msg)
            out[i, j] = cen[k[0]]
    return out


def simulate_extracted_arc(
    *,
    site="lsc",
    seed=0,
    mjd=58400.5,
    fibers=(0, 1),
    orders=None,
    noiseless=False,
    flux_scale=1.0e6,
    distortion=True,
    drift=None,
    line_list="redman",
    lsf_sigma=None,
    background=20.0,
    read_noise=20.0,
    saturation=2.5e5,
    model=None,
    config=None,
):
    """A DOUBLE ThAr arc as an extraction would deliver it, with its truth.

    Parameters
    ----------
    site : str
        NRES site code; the true wavelengths start from ``PhysicalModel.for_site(site, mjd=mjd)``.
    seed : int
        Seed of the noise.
    mjd : float
        MJD of the arc (selects the true physical model).
    fibers : tuple of int
        Lit fibers (both carry ThAr).
    orders : array_like of int or None
        Physical orders (default all, 52..118).
    noiseless : bool
        Return the expected electrons (no noise, no saturation clipping); the variance is still
        that of a real arc.
    flux_scale : float
        Total electrons of a line whose list intensity is the 99.8th percentile of the list, at
        the blaze peak (brighter lines saturate).
    distortion : bool
        Add the simulator's field distortion and lateral colour (``SimConfig`` amplitudes).
    drift : tuple of float or None
        ``(dx0, dx1)``: extra shift ``dx0 + dx1 t`` px (``t`` = x mapped to [-1, 1]).
    line_list : "redman" or QTable
        Lines rendered: a packaged list name or a table with ``wavelength`` and ``intensity``
        (lines without a positive intensity are not rendered; a list with none at all, such as
        the ESO atlas, raises InvalidParameterError).
    lsf_sigma : float or None
        Gaussian sigma of the lines along x, px (default ``SimConfig.lsf_sigma``).
    background : float
        Flat continuum under the lines, electrons per pixel.
    read_noise : float
        Read noise per extracted pixel, electrons.
    saturation : float
        Extracted electrons above which a pixel is clipped and flagged SATURATED (noisy only).
    model : PhysicalModel or None
        True physical model (default ``for_site(site, mjd=mjd)``).
    config : SimConfig or None
        Geometry and distortion amplitudes (default ``SimConfig()``).

    Returns
    -------
    spectrum : EchelleSpectrum
        data (n_fiber, n_order, 4096) electrons, variance = expected + read_noise**2, flags with
        SATURATED; no wavelengths (the solver's job).
    truth : Truth
        ``wavelength`` (true vacuum nm of every pixel), ``expected``, ``lines_used`` (fiber,
        order, wavelength, x, electrons, saturated), ``geometry`` (distortion, drift, lsf_sigma) and
        ``meta["model"]`` (the true physical model).
    """
    from ..instrument import PhysicalModel, thar_lines
    from ..spectrum import EchelleSpectrum

    cfg = config or SimConfig()
    sigma = float(cfg.lsf_sigma if lsf_sigma is None else lsf_sigma)
    if not sigma > 0 or not flux_scale > 0 or read_noise < 0 or background < 0:
        msg = "simulate_extracted_arc: need lsf_sigma > 0, flux_scale > 0, read_noise >= 0, background >= 0"
        raise InvalidParameterError(msg)
    fibers = tuple(int(f) for f in fibers)
    if not fibers or any(f not in (0, 1, 2) for f in fibers):
        msg = f"simulate_extracted_arc: fibers must be ids 0, 1, 2; got {fibers!r}"
        raise InvalidParameterError(msg)
    orders = np.arange(52, 119) if orders is None else np.atleast_1d(np.asarray(orders)).astype(np.int64)
    lines = thar_lines(line_list) if isinstance(line_list, str) else line_list
    model = model or PhysicalModel.for_site(site, mjd=mjd)
    drift = (0.0, 0.0) if drift is None else (float(drift[0]), float(drift[1]))
    x = np.arange(NX_DETECTOR, dtype=np.int64)
    xf = x.astype(float)
    y = _trace_heights(site, fibers, orders, x, cfg)
    amp_d, amp_c = (cfg.distortion, cfg.lateral_colour) if distortion else (0.0, 0.0)
    wave = functools.partial(true_wavelength, model, distortion=amp_d, lateral_colour=amp_c, drift=drift)

    lam = lines["wavelength"].to_value(u.nm)
    bright = line_brightness(lines)
    shape = (len(fibers), orders.size, x.size)
    wl = np.empty(shape)
    expected = np.full(shape, float(background))
    blz = np.empty(shape)
    rows = {k: [] for k in ("fiber", "order", "wavelength", "x", "electrons")}
    # a fine x grid beyond the detector so lines near the ends are placed (and partly rendered)
    xg = np.arange(-30.0, NX_DETECTOR + 30.0, 0.25)
    for i, f in enumerate(fibers):
        for j, m in enumerate(orders):
            wg = wave(xg, np.interp(xg, xf, y[i, j]), m, f)
            # exact per-pixel truth (the fine grid only places the lines)
            wl[i, j] = wave(xf, y[i, j], m, f)
            centre = model.blaze_wavelength(int(m)).to_value(u.nm)
            blz[i, j] = blaze_function(wl[i, j], int(m), centre)
            inside = np.flatnonzero((lam > wg[0]) & (lam < wg[-1]) & (bright > 0))
            if inside.size == 0:
                continue
            xl = np.interp(lam[inside], wg, xg)
            # refine the positions by Newton steps on the exact map (interpolation error ~1e-6 px)
            for _ in range(2):
                h = 1e-3
                w0 = wave(xl, np.interp(xl, xf, y[i, j]), m, f)
                w1 = wave(xl + h, np.interp(xl + h, xf, y[i, j]), m, f)
                xl = xl - (w0 - lam[inside]) / ((w1 - w0) / h)
            flux = flux_scale * bright[inside] * blaze_function(lam[inside], int(m), centre)
            row = np.zeros(x.size)
            line_spectrum(0, x.size, np.ascontiguousarray(xl), np.ascontiguousarray(flux), sigma, row)
            expected[i, j] += row
            rows["fiber"].append(np.full(inside.size, f))
            rows["order"].append(np.full(inside.size, int(m)))
            rows["wavelength"].append(lam[inside])
            rows["x"].append(xl)
            rows["electrons"].append(flux)

    variance = expected + read_noise**2
    flags = empty_flags(shape)
    data = extracted_counts(expected, read_noise, seed=seed, stream=0xA4C, noiseless=noiseless)
    if not noiseless:
        sat = expected >= saturation
        data[sat] = saturation
        flags[sat] |= np.uint16(Flag.SATURATED)
    used = QTable({k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()})
    used["fiber"] = used["fiber"].astype(np.int64)
    used["order"] = used["order"].astype(np.int64)
    used["wavelength"] = used["wavelength"] * u.nm
    peak = used["electrons"] * (2 * _phi_half(sigma) - 1.0)  # electrons in the central pixel
    used["saturated"] = np.asarray(peak + background >= saturation) & (not noiseless)
    meta = {"OBSTYPE": "DOUBLE", "SITEID": site, "MJD-OBS": float(mjd), "NRESSIM": True, "SIMSEED": int(seed)}
    spec = EchelleSpectrum(
        data,
        uncertainty=VarianceUncertainty(variance),
        flags=flags,
        orders=orders,
        fibers=np.array(fibers),
        pixel=x,
        meta=meta,
    )
    truth = Truth(
        obstype="DOUBLE",
        site=site,
        seed=int(seed),
        x=x,
        spectrum_fibers=np.array(fibers),
        spectrum_orders=orders,
        expected=expected,
        wavelength=wl * u.nm,
        blaze=blz,
        line_list=lines,
        lines_used=used,
        drift=drift,
        geometry={"distortion": amp_d, "lateral_colour": amp_c, "lsf_sigma": sigma, "heights": y},
        meta={
            "model": model,
            "read_noise": float(read_noise),
            "background": float(background),
            "saturation": float(saturation),
            "flux_scale": float(flux_scale),
        },
    )
    return spec, truth


def _phi_half(sigma):
    """Normal CDF at +0.5 px / sigma (the central-pixel fraction of a centred line is 2 Phi - 1)."""
    from math import erf, sqrt

    return 0.5 * (1.0 + erf(0.5 / sigma / sqrt(2.0)))
