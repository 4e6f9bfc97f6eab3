"""``simulate``: a synthetic NRES frame (processed-like or raw-like) with its truth, in memory."""

from __future__ import annotations

import functools
from dataclasses import asdict

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.table import QTable
from astropy.time import Time

from ..doppler import z_from_velocity
from ..errors import InvalidParameterError
from ..flags import Flag, add_flag, empty_flags, flags_to_mask
from ..provenance import record_provenance
from ..window import DETECTOR_SHAPE, with_window_origin
from . import _cache, _kernels, detector
from .config import DEFAULT_EXPTIME, SITE_INSTRUMENTS, SimConfig
from .doppler import (
    barycentric_z_samples,
    exposure_samples,
    flux_weighted,
    mean_doppler_factor,
)
from .geometry import profile_sigma, transform_traces, true_wavelength
from .scattered import interpolate_grid, scattered_light
from .sources import blaze_function, line_brightness, tungsten_sed
from .star import StellarSpectrum
from .truth import Truth

__all__ = ["simulate", "order_window", "OBSTYPES"]

OBSTYPES = ("BIAS", "DARK", "LAMPFLAT", "DOUBLE", "TARGET")
#: Extra rows rendered above and below a window so charge bleeding is the same as in a full frame.
BLEED_MARGIN = 64
#: Columns beyond the window searched for ThAr lines whose wings reach it.
LINE_MARGIN = 16
_STAR_TEFF = 5800.0
#: Values of ``SimConfig.star_integration``.
STAR_INTEGRATIONS = ("moments", "samples")


@functools.lru_cache(maxsize=4)
def _default_template(seed):
    return StellarSpectrum(seed=seed)


def _check(obstype, fibers, window, raw, config):
    obstype = str(obstype).upper()
    if obstype not in OBSTYPES:
        msg = f"simulate: obstype must be one of {OBSTYPES}, got {obstype!r}"
        raise InvalidParameterError(msg)
    fibers = tuple(int(f) for f in fibers)
    if fibers not in ((0, 1), (1, 2)):
        msg = f"simulate: fibers must be (0, 1) or (1, 2), got {fibers}"
        raise InvalidParameterError(msg)
    if config is not None and config.star_integration not in STAR_INTEGRATIONS:
        msg = (
            f"simulate: config.star_integration must be one of {STAR_INTEGRATIONS}, "
            f"got {config.star_integration!r}"
        )
        raise InvalidParameterError(msg)
    if raw and window is not None:
        msg = "simulate: raw=True makes the whole raw detector; window must be None"
        raise InvalidParameterError(msg)
    return obstype, fibers


def _resolve_window(window, traces):
    if window is None:
        return (0, DETECTOR_SHAPE[0], 0, DETECTOR_SHAPE[1])
    if isinstance(window, dict):
        return order_window(traces, orders=window["orders"], columns=window.get("columns", (0, 4096)))
    win = tuple(int(v) for v in window)
    if len(win) != 4 or not (0 <= win[0] < win[1] <= 4096 and 0 <= win[2] < win[3] <= 4096):
        msg = (
            f"simulate: window must be (y0, y1, x0, x1) inside 4096x4096 with y0 < y1, x0 < x1, got {window}"
        )
        raise InvalidParameterError(msg)
    return win


def order_window(traces, *, orders, columns=(0, 4096), margin=20):
    """The (y0, y1, x0, x1) crop holding physical orders ``orders[0]..orders[1]`` (all fibers) over
    columns ``columns[0]:columns[1]``, with ``margin`` rows each side.

    Parameters
    ----------
    traces : Traces
        The frame's traces (e.g. ``truth.geometry["traces"]`` or the reference traces).
    orders : (int, int)
        First and last physical order (inclusive).
    columns : (int, int)
        Full-detector columns (end exclusive).
    """
    lo, hi = sorted(int(v) for v in orders)
    x0, x1 = int(columns[0]), int(columns[1])
    sel = traces.select(orders=np.arange(lo, hi + 1))
    if len(sel) == 0 or not 0 <= x0 < x1 <= 4096:
        msg = f"order_window: no traces for orders {lo}..{hi} or bad columns {columns}"
        raise InvalidParameterError(msg)
    y = sel.center(np.arange(x0, x1))
    y0 = max(int(np.floor(y.min())) - margin, 0)
    y1 = min(int(np.ceil(y.max())) + margin + 1, 4096)
    return (y0, y1, x0, x1)


def _lit(obstype, fibers):
    """fiber -> source for the obstype."""
    if obstype == "LAMPFLAT":
        return dict.fromkeys(fibers, "flat")
    if obstype == "DOUBLE":
        return dict.fromkeys(fibers, "thar")
    if obstype == "TARGET":
        return {1: "thar", (0 if fibers == (0, 1) else 2): "star"}
    return {}


def _model_wavelength(model, x, order, fiber, y, cfg, drift):
    return true_wavelength(
        model, x, y, order, fiber, distortion=cfg.distortion, lateral_colour=cfg.lateral_colour, drift=drift
    )


def _thar_lines(line_list, wl_ext, x_ext, thar_level, scale):
    lam = line_list["wavelength"].to_value(u.nm)
    bright = line_brightness(line_list)
    lo, hi = min(wl_ext[0], wl_ext[-1]), max(wl_ext[0], wl_ext[-1])
    inside = np.flatnonzero((lam > lo) & (lam < hi) & (bright > 0))
    increasing = wl_ext[-1] > wl_ext[0]
    wl_sorted = wl_ext if increasing else wl_ext[::-1]
    x_sorted = x_ext if increasing else x_ext[::-1]
    xl = np.interp(lam[inside], wl_sorted, x_sorted.astype(float))
    return inside, xl, thar_level * scale * bright[inside]


def simulate(
    obstype,
    *,
    site="lsc",
    seed=0,
    window=None,
    raw=False,
    mjd=58400.5,
    exptime=None,
    fibers=(0, 1),
    rv=0.0 * u.km / u.s,
    target=None,
    drift=(0.0, 0.0),
    noiseless=False,
    scattered=True,
    config=None,
    traces=None,
    model=None,
    line_list=None,
    template=None,
):
    """Simulate an NRES frame with its truth.

    Parameters
    ----------
    obstype : {"BIAS", "DARK", "LAMPFLAT", "DOUBLE", "TARGET"}
        LAMPFLAT: tungsten in ``fibers``; DOUBLE: ThAr in ``fibers``; TARGET: the star in fiber 0
        (``fibers=(0, 1)``) or 2 (``(1, 2)``) and ThAr in fiber 1.
    site : str
        NRES site (traces, physical model, location, camera).
    seed : int
        Every random draw derives from it; noise is drawn per full-detector pixel, so a window is
        exactly the crop of the full frame.
    window : (y0, y1, x0, x1) or dict or None
        Full-detector crop (rows y0:y1, columns x0:x1), or ``{"orders": (m0, m1), "columns":
        (x0, x1)}`` (see :func:`order_window`). Its origin goes into ``meta``.
    raw : bool
        False: processed-like CCDData in electrons with variance, mask and flags. True: raw-like
        CCDData in ADU, shape (4108, 4160), with overscan and bias (``window`` must be None).
    mjd : float
        UTC MJD at the start of the exposure.
    exptime : float or None
        Seconds (default per obstype, :data:`~nres.sim.config.DEFAULT_EXPTIME`); source levels
        scale with it.
    fibers : (0, 1) or (1, 2)
        Lit fibers.
    rv : Quantity
        Star's barycentric radial velocity (``z_star = rv / c``).
    target : SkyCoord or None
        Star (with proper motion, parallax, epoch) for the barycentric correction (default tau Ceti).
    drift : (float, float)
        Spectrograph drift ``(dx0, dx1)``: the whole spectrum (all fibers) moves by
        ``dx0 + dx1 t`` px along x, ``t = (x - 2047.5) / 2047.5``.
    noiseless : bool
        No Poisson or read noise (defects, cosmic rays and scattered light follow ``config``).
    scattered : bool
        Add scattered light.
    config : SimConfig or None
        Geometry, source and detector parameters.
    traces, model, line_list, template : optional
        Replace the site's reference traces (``Traces``), physical model (anything with
        ``.wavelength(x, order, fiber)``), ThAr list (QTable with ``wavelength``, ``intensity``)
        or stellar template (``StellarSpectrum``).

    Returns
    -------
    frame : CCDData
        Electrons (processed-like) or ADU (raw) with the header of a raw NRES frame.
    truth : Truth
    """
    obstype, fibers = _check(obstype, fibers, window, raw, config)
    cfg = config or SimConfig()
    exptime = DEFAULT_EXPTIME[obstype] if exptime is None else float(exptime)
    if exptime < 0:
        msg = f"simulate: exptime must be >= 0, got {exptime}"
        raise InvalidParameterError(msg)
    scale = exptime / DEFAULT_EXPTIME[obstype] if DEFAULT_EXPTIME[obstype] > 0 else 0.0
    from .. import instrument

    telescop, camera = SITE_INSTRUMENTS.get(site, ("nres??", None))
    camera = cfg.camera or camera
    if camera is None:
        msg = f"simulate: no default camera for site {site!r}; give SimConfig(camera=...)"
        raise InvalidParameterError(msg)
    cam = instrument.camera_info(camera) if cfg.gain is None or cfg.read_noise is None else None
    gain = cfg.gain if cfg.gain is not None else cam.gain
    read_noise = cfg.read_noise if cfg.read_noise is not None else cam.read_noise
    # the default geometry, model, ThAr list and target go through caches (bit-for-bit the same)
    defaults = traces is None and model is None and line_list is None
    if traces is None:
        geo = _cache.moved_traces(site, cfg.trace_shift, cfg.trace_rotation, cfg.trace_scale)
    else:
        geo = transform_traces(
            traces, shift=cfg.trace_shift, rotation=cfg.trace_rotation, scale=cfg.trace_scale
        )
    y0, y1, x0, x1 = _resolve_window(window, geo)
    ny, nx = y1 - y0, x1 - x0
    x = np.arange(x0, x1)
    drift = (float(drift[0]), float(drift[1]))
    lit = _lit(obstype, fibers)

    # ----- which traces matter: those within the padded rows of the window
    half = cfg.profile_half
    pad0, pad1 = max(y0 - BLEED_MARGIN, 0), min(y1 + BLEED_MARGIN, 4096)
    cen_all = geo.center(x)
    near = (cen_all.max(axis=1) > pad0 - half - 1) & (cen_all.min(axis=1) < pad1 + half + 1)
    in_window = (cen_all.max(axis=1) >= y0 - 0.5) & (cen_all.min(axis=1) <= y1 - 0.5)
    idx = np.flatnonzero(near)
    cen = np.ascontiguousarray(cen_all[idx])
    sig = np.ascontiguousarray(
        profile_sigma(x, geo.orders[idx], sigma=cfg.profile_sigma, variation=cfg.profile_sigma_variation)
    )
    valid = geo.valid(x)[idx]

    need_model = obstype in ("LAMPFLAT", "DOUBLE", "TARGET")
    if need_model and model is None:
        model = _cache.site_model(site, float(mjd))
    if "thar" in lit.values() and line_list is None:
        line_list = instrument.thar_lines("redman")

    # ----- Doppler: exposure-meter samples, z_B(t) from astropy, flux weighting
    z_star = float(z_from_velocity(rv))
    meter_mjd, meter_flux = exposure_samples(mjd, exptime, cfg.n_meter_samples, seed=seed)
    zb_t = np.zeros_like(meter_mjd)
    if obstype == "TARGET":
        if target is None:
            zb_t = _cache.default_z_b(site, meter_mjd)
        else:
            zb_t = barycentric_z_samples(target, meter_mjd, instrument.site_location(site))
    z_b, z_obs_t = flux_weighted(zb_t, meter_flux, z_star)
    weights = meter_flux / meter_flux.sum()
    factor, spread = mean_doppler_factor(zb_t, meter_flux, z_star)
    if "star" in lit.values() and template is None:
        template = _default_template(int(seed))

    # ----- 1-D expected electrons per rendered trace, and the truth per (fiber, order, pixel)
    flux = np.zeros((idx.size, nx))
    wl = np.full((idx.size, nx), np.nan)
    blz = np.zeros((idx.size, nx))
    used = []
    x_ext = np.arange(max(x0 - LINE_MARGIN, 0), min(x1 + LINE_MARGIN, 4096))
    xc = np.array([2047.0, 2048.0])
    cen_xc = geo.center(xc)[idx]
    cen_ext = geo.center(x_ext)[idx]
    for k, t in enumerate(idx):
        fiber, order = int(geo.fibers[t]), int(geo.orders[t])
        if not need_model:
            break
        wl[k] = _model_wavelength(model, x, order, fiber, cen[k], cfg, drift)
        centre = _model_wavelength(model, xc, order, 1, cen_xc[k], cfg, (0.0, 0.0)).mean()
        blz[k] = blaze_function(wl[k], order, centre)
        source = lit.get(fiber)
        if source == "flat":
            flux[k] = cfg.flat_level * scale * blz[k] * tungsten_sed(wl[k])
        elif source == "star":
            xe = np.concatenate([x - 0.5, [x[-1] + 0.5]])
            ye = np.interp(xe, x, cen[k])
            edges = _model_wavelength(model, xe, order, fiber, ye, cfg, drift) * u.nm
            if cfg.star_integration == "moments":
                mean = template.flux_integrated(edges, z=factor - 1.0, spread=spread)
            else:
                mean = sum(
                    w * template.flux_integrated(edges, z=z) for w, z in zip(weights, z_obs_t, strict=True)
                )
            sed = tungsten_sed(wl[k]) ** (3000.0 / _STAR_TEFF)  # a warmer, flatter continuum
            flux[k] = cfg.star_level * scale * blz[k] * sed * mean
        elif source == "thar":
            wl_ext = _model_wavelength(model, x_ext, order, fiber, cen_ext[k], cfg, drift)
            rows, xl, fl = _thar_lines(line_list, wl_ext, x_ext, cfg.thar_level, scale)
            fl = fl * np.interp(xl, x_ext, blaze_function(wl_ext, order, centre))
            out = np.zeros(nx)
            _kernels.line_spectrum(
                int(x0),
                int(nx),
                np.ascontiguousarray(xl),
                np.ascontiguousarray(fl),
                float(cfg.lsf_sigma),
                out,
            )
            flux[k] = out
            used.append((np.full(rows.size, fiber), np.full(rows.size, order), rows, xl, fl))
    flux = np.where(valid, flux, 0.0)

    # ----- 2-D rendering on the padded window, bleeding, crop
    image = np.zeros((pad1 - pad0, nx))
    _kernels.render_traces(
        image,
        int(pad0),
        int(x0),
        cen,
        sig,
        float(cfg.profile_asymmetry),
        float(cfg.wing_fraction),
        float(cfg.wing_sigma),
        np.ascontiguousarray(flux),
        float(half),
    )
    full_well = cfg.saturate * gain
    bled = np.zeros(image.shape, dtype=np.bool_)
    _kernels.bleed_columns(image, float(full_well), bled)
    image = image[y0 - pad0 : y1 - pad0]
    bled = bled[y0 - pad0 : y1 - pad0]

    scat = np.zeros((ny, nx))
    if scattered and need_model and lit:
        if defaults:
            grid = _cache.default_scattered_grid(site, float(mjd), tuple(sorted(lit.items())), cfg, scale)
            scat = interpolate_grid(grid, (y0, y1, x0, x1))
        else:
            scat = scattered_light(
                geo,
                lit,
                model,
                cfg,
                (y0, y1, x0, x1),
                scale=scale,
                line_list=line_list,
                template_level=cfg.star_level,
            )
    bad_x, bad_y0, hot_y, hot_x, hot_rate = detector.defects(seed, cfg.n_bad_columns, cfg.n_hot_pixels)
    dark = np.full((ny, nx), cfg.dark_current * exptime)
    inside = (hot_y >= y0) & (hot_y < y1) & (hot_x >= x0) & (hot_x < x1)
    dark[hot_y[inside] - y0, hot_x[inside] - x0] += hot_rate[inside] * exptime
    # in place, same order of additions as image + scat + dark (no full-size temporaries)
    expected_image = np.add(image, scat, out=image)
    expected_image += dark
    if noiseless:
        electrons = expected_image.copy()
    else:
        electrons = np.empty((ny, nx))
        rn = 0.0 if raw else float(read_noise)
        _kernels.add_noise(np.ascontiguousarray(expected_image), int(y0), int(x0), int(seed), rn, electrons)
    cr_charge, cr_hit = detector.render_cosmics(
        (ny, nx), y0, x0, detector.cosmic_rays(seed, exptime, cfg.cosmic_rate)
    )
    electrons += cr_charge
    bad = np.zeros((ny, nx), dtype=bool)
    for bx, by in zip(bad_x, bad_y0, strict=True):
        if x0 <= bx < x1:
            bad[max(by - y0, 0) :, bx - x0] = True
    electrons[bad] *= 0.05  # a dead (charge-trapping) column keeps 5% of its signal
    recorded, nonlinear, saturated = detector.respond(
        electrons, gain=gain, saturate=cfg.saturate, maxlin=cfg.maxlin, nonlinearity=cfg.nonlinearity
    )

    meta = fits.Header(
        _header(obstype, site, telescop, camera, mjd, exptime, fibers, gain, read_noise, cfg, seed)
    )
    if raw:
        data = detector.raw_layout(
            recorded, seed=seed, gain=gain, read_noise=read_noise, bias_level=cfg.bias_level
        )
        frame = CCDData(data, unit=u.adu, meta=meta)
    else:
        flags = empty_flags((ny, nx))
        add_flag(flags, Flag.BAD_PIXEL, bad)
        add_flag(flags, Flag.NONLINEAR, nonlinear)
        add_flag(flags, Flag.SATURATED, saturated)
        add_flag(flags, Flag.BLEED, bled)
        add_flag(flags, Flag.COSMIC_RAY, cr_hit)
        variance = np.maximum(recorded, 0.0)  # = clip(recorded, 0, None), twice as fast
        variance += read_noise**2
        meta = with_window_origin(meta, y0, x0)
        frame = CCDData(
            recorded,
            unit=u.electron,
            uncertainty=VarianceUncertainty(variance, copy=False),
            mask=flags_to_mask(flags),
            flags=flags,
            meta=meta,
        )
    record_provenance(
        frame.meta, "nres.sim.simulate", obstype=obstype, seed=seed, raw=raw, noiseless=noiseless
    )

    lines_used = _lines_used(used, line_list)
    truth = Truth(
        obstype=obstype,
        site=site,
        seed=int(seed),
        window=(y0, y1, x0, x1),
        x=x,
        **_trace_truth(geo, idx, in_window[idx], cen, sig, flux, wl, blz, cfg),
        line_list=line_list if lines_used is not None else None,
        lines_used=lines_used,
        z_star=z_star,
        z_b=z_b,
        z_obs=float((1 + z_star) / (1 + z_b) - 1),
        mjd=meter_mjd,
        z_b_samples=zb_t,
        flux_history=meter_flux,
        template=template,
        cosmic_rays=cr_hit,
        bleed=bled,
        scattered_light=scat,
        drift=drift,
        meta={"exptime": exptime, "gain": gain, "read_noise": read_noise, "config": asdict(cfg)},
    )
    return frame, truth


def _header(obstype, site, telescop, camera, mjd, exptime, fibers, gain, read_noise, cfg, seed):
    t = Time(mjd, format="mjd", scale="utc")
    objects = {"LAMPFLAT": "tung", "DOUBLE": "thar", "TARGET": None}.get(obstype)
    words = ["none", "none", "none"]
    if objects is not None:
        for f in fibers:
            words[f] = objects
    if obstype == "TARGET":
        words[1] = "thar"
        words[fibers[0] if fibers[0] != 1 else fibers[1]] = "tauCet"
    day = Time(mjd - 0.5, format="mjd", scale="utc").strftime("%Y%m%d")
    return {
        "OBSTYPE": obstype,
        "OBJECTS": "&".join(words),
        "SITEID": site,
        "TELESCOP": telescop,
        "INSTRUME": camera,
        "DATE-OBS": t.isot,
        "DAY-OBS": day,
        "MJD-OBS": float(mjd),
        "EXPTIME": exptime,
        "GAIN": float(gain),
        "RDNOISE": float(read_noise),
        "SATURATE": float(cfg.saturate),
        "MAXLIN": float(cfg.maxlin),
        "BIASSEC": detector.BIASSEC,
        "TRIMSEC": detector.TRIMSEC,
        "DATASEC": detector.DATASEC,
        "DETSIZE": "[1:4160,1:4108]",
        "CCDSUM": "1 1",
        "RLEVEL": 0,
        "NRESSIM": True,
        "SIMSEED": int(seed),
    }


def _trace_truth(geo, idx, in_window, cen, sig, flux, wl, blz, cfg):
    """Truth fields of the rendered traces ``geo[idx]`` that reach the window (``in_window``): their
    orders, fibers, light centroids and profile parameters, the expected electrons, wavelengths
    and blaze per (fiber, order, pixel), and the geometry."""
    keep = np.flatnonzero(in_window)
    orders_t, fibers_t = geo.orders[idx][keep], geo.fibers[idx][keep]
    # mean of the split normal core (the wing is symmetric): c + (1 - f) sqrt(2 / pi) (s_r - s_l). The
    # centroid of the pixel-integrated profile equals it to ~exp(-2 pi^2 sigma^2) < 1e-20 (Poisson
    # summation) and truncation at profile_half rows changes it by < 1e-9 px.
    centres = (
        cen[keep] + (1.0 - cfg.wing_fraction) * np.sqrt(2.0 / np.pi) * 2.0 * cfg.profile_asymmetry * sig[keep]
    )
    s_orders = np.unique(orders_t)
    shape = (3, s_orders.size, flux.shape[1])
    expected, wave, blaze = np.zeros(shape), np.full(shape, np.nan), np.zeros(shape)
    for t in keep:
        f, o = int(geo.fibers[idx][t]), int(np.searchsorted(s_orders, geo.orders[idx][t]))
        expected[f, o], wave[f, o], blaze[f, o] = flux[t], wl[t], blz[t]
    geometry = {
        "traces": geo,
        "trace_shift": cfg.trace_shift,
        "trace_rotation": cfg.trace_rotation,
        "trace_scale": cfg.trace_scale,
        "distortion": cfg.distortion,
        "lateral_colour": cfg.lateral_colour,
    }
    profile = {
        "asymmetry": cfg.profile_asymmetry,
        "wing_fraction": cfg.wing_fraction,
        "wing_sigma": cfg.wing_sigma,
        "half": cfg.profile_half,
        "lsf_sigma": cfg.lsf_sigma,
    }
    return {
        "orders": orders_t,
        "fibers": fibers_t,
        "centers": centres,
        "profile_sigma": sig[keep],
        "profile": profile,
        "spectrum_fibers": np.array([0, 1, 2]),
        "spectrum_orders": s_orders,
        "expected": expected,
        "wavelength": wave * u.nm,
        "blaze": blaze,
        "geometry": geometry,
    }


def _lines_used(used, line_list):
    """QTable of the ThAr lines rendered (``used``: per trace (fiber, order, list row, x, electrons)
    arrays), or None when there were none."""
    if not used:
        return None
    cols = [np.concatenate(c) for c in zip(*used, strict=True)]
    lines_used = QTable()
    lines_used["fiber"], lines_used["order"] = cols[0].astype(np.int64), cols[1].astype(np.int64)
    lines_used["wavelength"] = line_list["wavelength"][cols[2]]
    lines_used["x"], lines_used["electrons"] = cols[3], cols[4]
    lines_used["list_index"] = cols[2].astype(np.int64)
    return lines_used
