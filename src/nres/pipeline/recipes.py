"""Recipes per OBSTYPE: pure tasks (raw path + calibration paths in; product paths + QC out).

Each task has the batch signature ``task(path, calibrations, options) -> (product_paths, qc)``
(:mod:`nres.pipeline.batch`), reads only its inputs, writes only its products (atomically) and
never touches the database: :func:`reduce_file` and :func:`nres.pipeline.night.reduce_night`
choose the calibrations and record the outcome.

========== ========================================= =============================================
OBSTYPE    calibrations used                          products
========== ========================================= =============================================
BIAS       --                                        ``-2d.fits.fz`` (processed frame)
DARK       BIAS                                      ``-2d.fits.fz`` (e-/s)
LAMPFLAT   BIAS, DARK                                ``-2d.fits.fz``, ``-trace.fits`` (traces,
                                                     profiles, blaze)
DOUBLE     BIAS, DARK, TRACE (same fibers)           ``-2d.fits.fz``, ``-1d.fits`` (arc),
                                                     ``-wavesol.fits`` (WavelengthSolution)
TARGET     BIAS, DARK, TRACE, DOUBLE (same fibers);  ``-2d.fits.fz``, ``-1d.fits`` (spectrum, RV,
           TRIPLE and ZERO when given                per-order RVs, CCF), ``-summary.png``
========== ========================================= =============================================

Every processed frame gets its dead columns flagged (:mod:`nres.pipeline.defects`; no bad-pixel
map exists for simulated nights), and BIAS, DARK, LAMPFLAT and TARGET frames their cosmic rays
(option ``cosmic_rays``, :func:`_process`). A processed DARK is in e-/s, and a BIAS or DARK product
has its cosmic-ray pixels filled (still masked), so either calibrates frames by itself. The QC dict
of a calibration product carries ``qc["calibration"] = {"obstype", "path", "fiber_state"}`` so the
driver can register it.

TARGET wavelengths: the master solution is the TRIPLE (``calibrations["TRIPLE"]``, DOUBLEs of both
fiber pairs combined by :func:`nres.wavecal.combine_doubles`) when the driver found one, else the
DOUBLE of the frame's fiber pair. The simultaneous ThAr of fiber 1 then measures the drift against
that master (:func:`nres.wavecal.measure_drift`) and the drift-corrected solution gives the star
fiber its wavelengths (option ``drift_correction``: True by default, False never, ``"auto"`` only
against a TRIPLE; a drift whose error exceeds ``drift_max_error_m_s`` (5 m/s) or that cannot be
measured is not applied and ``qc["drift_skipped"]`` says why; QC ``drift_px``, ``drift_m_s``).
The RV reference is ``calibrations["ZERO"]`` (a ZERO template of the star chosen by the driver)
when given, else ``options["template"]`` (:mod:`nres.pipeline.templates`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import astropy.units as u
import numpy as np

from ..errors import InvalidParameterError, MissingCalibrationError
from .products import product_path, reduced_name

__all__ = [
    "RECIPES",
    "REQUIRED_CALIBRATIONS",
    "reduce_bias",
    "reduce_dark",
    "reduce_flat",
    "reduce_arc",
    "reduce_target",
    "reduce_file",
    "calibration_path",
    "trace_flat",
    "wavecal_error",
    "measure_rv",
    "drift_correct",
]

#: Calibrations each recipe needs (kind -> whether it must match the frame's fiber state).
REQUIRED_CALIBRATIONS = {
    "BIAS": {},
    "DARK": {"BIAS": False},
    "LAMPFLAT": {"BIAS": False, "DARK": False},
    "DOUBLE": {"BIAS": False, "DARK": False, "TRACE": True},
    "TARGET": {"BIAS": False, "DARK": False, "TRACE": True, "DOUBLE": True},
}


def calibration_path(raw, kind: str, out_dir) -> Path:
    """Path of a per-frame calibration product: ``kind`` ``"trace"`` or ``"wavesol"``."""
    if kind not in ("trace", "wavesol"):
        raise InvalidParameterError(f"kind: expected 'trace' or 'wavesol', got {kind!r}")
    return Path(os.fspath(out_dir)) / f"{reduced_name(raw)}-{kind}.fits"


def _need(calibrations, kind, path):
    value = calibrations.get(kind)
    if not value:
        raise MissingCalibrationError(f"{Path(path).name}: no {kind} calibration given")
    return value


def _out_dir(options):
    out = options.get("out_dir")
    if out is None:
        raise InvalidParameterError("options: 'out_dir' (where products go) is required")
    Path(os.fspath(out)).mkdir(parents=True, exist_ok=True)
    return out


#: Frame types whose cosmic rays are flagged by default (option ``cosmic_rays="auto"``). Not DOUBLE:
#: an arc is its own calibration (a hit is a narrow "line" that the line matching leaves out), and its
#: pixels feed the wavelength solution, which is tested without the flagging.
COSMIC_RAY_TYPES = ("BIAS", "DARK", "LAMPFLAT", "TARGET")


def _process(path, calibrations, options, *, use=("BIAS", "DARK")):
    """Read and process a raw file with the masters in ``use``; flag dead columns and cosmic rays.

    Cosmic rays (option ``cosmic_rays``: "auto" (default) for :data:`COSMIC_RAY_TYPES`, True for
    every type, False never) are flagged COSMIC_RAY by :func:`nres.calib.flag_cosmic_rays`
    (``method="contrast"``, ~0.15 s per full frame; after the dead columns, whose neighbours would
    otherwise stand out). The flags also grow from saturated pixels: a track's saturated pixels are
    masked already, but its partially hit neighbours, often tens of thousands of electrons, are
    not (in the scattered-light fit of a simulated TARGET they moved the background by up to
    80 e-; 1 e- with them flagged). Next to a saturated ThAr line they flag the line's bright
    wings, whose columns lost their core anyway."""
    from ..calib import flag_cosmic_rays, process_ccd
    from ..flags import Flag
    from ..io import read_raw
    from .defects import flag_dead_columns
    from .frames import read_master

    raw = read_raw(path)
    masters = {}
    for kind in use:
        masters[kind.lower()] = read_master(_need(calibrations, kind, path))  # cached per worker
    frame = process_ccd(raw, **masters)
    n_dead = 0
    if options.get("dead_columns", True):
        frame, n_dead = flag_dead_columns(frame)
    mode = options.get("cosmic_rays", "auto")
    if mode not in (True, False, "auto"):
        raise InvalidParameterError(f"options: cosmic_rays must be True, False or 'auto', got {mode!r}")
    obstype = raw.info.obstype
    if mode is True or (mode == "auto" and obstype in COSMIC_RAY_TYPES):
        frame = flag_cosmic_rays(frame, method="contrast", grow_from=Flag.SATURATED)
    return raw, frame, n_dead


def _n_cosmic(frame):
    from ..flags import Flag

    flags = getattr(frame, "flags", None)
    return 0 if flags is None else int(((np.asarray(flags) & int(Flag.COSMIC_RAY)) != 0).sum())


def _frame_qc(raw, frame, n_dead):
    good = ~np.asarray(frame.mask, bool) if frame.mask is not None else np.ones(frame.shape, bool)
    data = np.asarray(frame.data)[good]
    return {
        "obstype": raw.info.obstype,
        "fiber_state": raw.info.fiber_state,
        "median_e": float(np.median(data)) if data.size else float("nan"),
        "masked_fraction": float(1.0 - good.mean()),
        "n_dead_columns": int(n_dead),
        "n_cosmic_ray_pixels": _n_cosmic(frame),
    }


def _calibration_frame(frame):
    """A processed BIAS/DARK with its cosmic-ray and no-weight (NaN) pixels filled with the median of
    their row's neighbours (:func:`nres.calib.fill_masked`; still flagged and masked): used as a
    calibration by itself, it then puts no hole or NaN into the frames it calibrates."""
    from ..calib import fill_masked
    from ..flags import Flag

    return fill_masked(frame, flags=Flag.COSMIC_RAY | Flag.NO_WEIGHT)


def reduce_bias(path, calibrations, options):
    """BIAS: overscan, trim, gain; the processed frame (electrons), cosmic rays flagged and filled."""
    out_dir = _out_dir(options)
    raw, frame, n_dead = _process(path, calibrations, options, use=())
    from .frames import write_frame

    frame = _calibration_frame(frame)
    out = write_frame(frame, product_path(path, "2d", out_dir))
    qc = _frame_qc(raw, frame, n_dead)
    good = ~np.asarray(frame.mask, bool)
    qc["std_e"] = float(np.std(np.asarray(frame.data)[good])) if good.any() else float("nan")
    qc["calibration"] = {"obstype": "BIAS", "path": os.fspath(out), "fiber_state": ""}
    return [out], qc


def reduce_dark(path, calibrations, options):
    """DARK: processed with the master bias, cosmic rays flagged and filled, divided by EXPTIME.

    The product is a dark-current image in e-/s (EXPTIME 1, the exposure in ``DARKEXPT``), like a
    master dark: it can calibrate frames by itself (``reduce_file`` registers it) and
    :func:`nres.calib.stack` combines such frames unchanged (it divides by their EXPTIME, 1).
    """
    out_dir = _out_dir(options)
    raw, frame, n_dead = _process(path, calibrations, options, use=("BIAS",))
    from ..calib import stack
    from .frames import write_frame

    exptime = float(raw.info.exptime)
    if not exptime > 0:
        raise InvalidParameterError(f"{Path(path).name}: a DARK needs EXPTIME > 0 (got {exptime!r})")
    qc = _frame_qc(raw, frame, n_dead)
    # the one-frame stack is the normalisation (e-/s, variance / EXPTIME^2, EXPTIME = 1 in the header)
    rate = _calibration_frame(stack([frame], obstype="DARK", min_frames=1))
    rate.meta["DARKEXPT"] = (exptime, "[s] exposure time of the dark")
    for key in ("NCOMBINE", "NGOODMIN", "NGOODMAX"):
        rate.meta.pop(key, None)
    out = write_frame(rate, product_path(path, "2d", out_dir))
    qc["dark_rate_e_s"] = qc["median_e"] / exptime
    qc["calibration"] = {"obstype": "DARK", "path": os.fspath(out), "fiber_state": ""}
    return [out], qc


def trace_flat(flat, *, site=None):
    """Traces, profiles and blaze of a processed lamp flat: ``(traces, profiles, blaze)``."""
    from ..extract import extract, find_traces, measure_blaze, measure_profiles, subtract_scattered_light

    traces = find_traces(flat, site=site)
    clean, background = subtract_scattered_light(flat, traces)
    profiles = measure_profiles(clean, traces)
    spec = extract(clean, traces, profile=profiles, background=background)
    return traces, profiles, measure_blaze(spec)


def reduce_flat(path, calibrations, options):
    """LAMPFLAT: processed frame (cosmic rays flagged, so masked for the tracing), then its traces,
    profiles and blaze (``-trace.fits``)."""
    out_dir = _out_dir(options)
    raw, frame, n_dead = _process(path, calibrations, options)
    from .frames import write_frame, write_trace_file

    out2d = write_frame(frame, product_path(path, "2d", out_dir))
    traces, profiles, blaze = trace_flat(frame, site=raw.info.site)
    out_trace = write_trace_file(
        calibration_path(path, "trace", out_dir), traces, profiles, blaze, header=frame.meta
    )
    qc = _frame_qc(raw, frame, n_dead)
    qc["n_traces"] = len(traces)
    qc["orders"] = sorted({int(m) for m in traces.orders})
    qc["calibration"] = {
        "obstype": "TRACE",
        "path": os.fspath(out_trace),
        "fiber_state": raw.info.fiber_state,
    }
    return [out2d, out_trace], qc


def _extract(frame, trace_file, *, return_blaze=False):
    """Scattered light, optimal extraction, the flat's blaze attached; also the blaze (with its
    variance, for the RV's error budget) when ``return_blaze``."""
    from ..extract import extract, subtract_scattered_light, with_blaze
    from .frames import read_trace_file

    traces, profiles, blaze, _ = read_trace_file(trace_file)
    clean, background = subtract_scattered_light(frame, traces)
    spec = with_blaze(extract(clean, traces, profile=profiles, background=background), blaze)
    return (spec, blaze) if return_blaze else spec


def reduce_arc(path, calibrations, options):
    """DOUBLE: processed, extracted with the flat of the same fibers, wavelength solution."""
    out_dir = _out_dir(options)
    raw, frame, n_dead = _process(path, calibrations, options)
    from ..instrument import PhysicalModel, thar_lines
    from ..wavecal import apply_solution, solve
    from .frames import write_frame
    from .qc import solution_qc
    from .spectrum1d import write_spectrum_1d

    spec = _extract(frame, _need(calibrations, "TRACE", path))
    model = PhysicalModel.for_site(raw.info.site, mjd=raw.info.mjd_obs)
    solution = solve(spec, lines=thar_lines(options.get("line_list", "redman")), model=model)
    sol_path = calibration_path(path, "wavesol", out_dir)
    solution.write(sol_path, overwrite=True)
    spec = apply_solution(spec, solution)
    qc = _frame_qc(raw, frame, n_dead) | solution_qc(solution)
    out2d = write_frame(frame, product_path(path, "2d", out_dir))
    out1d = write_spectrum_1d(product_path(path, "1d", out_dir), spec, qc=_scalars(qc))
    qc["calibration"] = {
        "obstype": "DOUBLE",
        "path": os.fspath(sol_path),
        "fiber_state": raw.info.fiber_state,
    }
    return [out2d, out1d, sol_path], qc


def _scalars(qc):
    return {k: v for k, v in qc.items() if isinstance(v, bool | int | float | str)}


def _barycentric(raw, fiber):
    """Flux-weighted z_B of the science fiber from the exposure meter (else mid-exposure)."""
    from ..rv import barycentric_correction, flux_weighted_correction

    target = raw.info.targets[fiber]
    location = target.location if target.location is not None else raw.info.site
    meter = raw.tables.get("EXPOSURE_METER") if hasattr(raw.tables, "get") else None
    if meter is not None and len(meter) and f"FIB{fiber}COUNTS" in meter.colnames:
        try:
            return flux_weighted_correction(target.coord, meter, location, fiber=fiber), "flux-weighted"
        except InvalidParameterError:
            pass  # no usable sample: fall back to mid-exposure
    mid = raw.info.date_obs + 0.5 * raw.info.exptime * u.s
    return barycentric_correction(target.coord, mid, location), "mid-exposure"


def wavecal_error(solution, spec, rv, fiber) -> float:
    """Standard error (m/s) the wavelength solution's uncertainty gives the RV.

    :func:`nres.pipeline.qc.wavecal_rv_error`: the solution's covariance propagated to the RV's
    information-weighted combination of pixels and orders. Every exposure calibrated by the same
    master shares this error. (It was an upper bound, the RV-weighted mean of the pointwise
    errors as if fully correlated: ~3x the propagated error on the demo's window.)
    """
    from .qc import wavecal_rv_error

    return wavecal_rv_error(solution, spec, rv, fiber)


def measure_rv(spec, reference, *, method, fiber, z_b, window=30.0):
    """``nres.rv.measure`` with a fallback start.

    The measurement's starting CCF over +-400 km/s can lock onto a wrong peak when one order
    misleads it; every order's fit then fails (``FitError``). The fallback measures the orders
    one by one, takes the median of their RVs as the centre and measures all orders again
    within +-``window`` km/s of it. ``rv.meta["start"]`` says which start was used.
    """
    from ..errors import FitError
    from ..rv import measure

    try:
        rv = measure(spec, reference, method=method, fiber=fiber, z_b=z_b)
        rv.meta["start"] = "ccf"
        return rv
    except FitError:
        pass
    single = []
    for m in np.asarray(spec.orders).tolist():
        try:
            one = measure(spec, reference, method=method, fiber=fiber, z_b=z_b, orders=[m])
        except (FitError, InvalidParameterError):
            continue
        single.append(one.rv_observed.to_value(u.km / u.s))
    if not single:
        raise FitError(f"measure: no order of fiber {fiber} gave a velocity, alone or together")
    centre = float(np.median(single))
    rv = measure(spec, reference, method=method, fiber=fiber, z_b=z_b,
                 velocity_range=(centre - window, centre + window) * u.km / u.s)  # fmt: skip
    rv.meta["start"] = f"per-order median {centre:.3f} km/s"
    return rv


def drift_correct(spec, master, *, fiber, enabled=True, max_error_m_s=5.0):
    """Drift-corrected master solution of a TARGET frame and its QC.

    The ThAr lines of fiber 1 in ``spec`` against ``master`` (:func:`nres.wavecal.measure_drift`),
    carried to ``fiber``. Returns ``(solution, qc)``: the master with the drift applied
    (:class:`~nres.wavecal.DriftCorrectedSolution`) and ``drift_px``, ``drift_err_px``,
    ``drift_m_s``, ``drift_err_m_s`` (mean over the orders with lines; m/s positive: lines moved
    to the red), ``drift_n_lines``. When ``enabled`` is False, the drift cannot be measured (too
    few or too imprecise fiber-1 lines), or its error in ``fiber`` exceeds ``max_error_m_s``
    (m/s; e.g. lines in a small part of the frame, extrapolated), ``master`` itself, ``drift_px``
    None and ``drift_skipped`` saying why.
    """
    from ..errors import FitError
    from ..wavecal import measure_drift

    if not enabled:
        return master, {"drift_px": None, "drift_m_s": None, "drift_skipped": "drift_correction=False"}
    try:
        drift = measure_drift(spec, master, fibers=sorted({1, int(fiber)}))
    except (FitError, InvalidParameterError) as err:
        return master, {"drift_px": None, "drift_m_s": None, "drift_skipped": f"{type(err).__name__}: {err}"}
    row = drift.summary[np.asarray(drift.summary["fiber"]) == int(fiber)][0]
    v, err = float(row["velocity"].to_value(u.m / u.s)), float(row["velocity_err"].to_value(u.m / u.s))
    if not err <= max_error_m_s:  # also NaN
        reason = (
            f"drift {v:.1f} +- {err:.1f} m/s in fiber {int(fiber)} from {int(drift.qc['n_used'])} lines: "
            f"error above drift_max_error_m_s={max_error_m_s:g}"
        )
        return master, {"drift_px": None, "drift_m_s": None, "drift_skipped": reason}
    qc = {
        "drift_px": float(row["shift_px"]),
        "drift_err_px": float(row["shift_err_px"]),
        "drift_m_s": v,
        "drift_err_m_s": err,
        "drift_n_lines": int(drift.qc["n_used"]),
    }
    return drift.corrected_solution(), qc


def _reference(calibrations, options, *, name, spec, fiber):
    """``(reference, method, description)``: the ZERO calibration if given, else the template option."""
    from .templates import resolve_reference

    zero = calibrations.get("ZERO")
    if zero:
        from ..rv import read_zero

        return read_zero(zero), "template", f"ZERO {Path(zero).name}"
    return resolve_reference(
        options.get("template"), target_name=name, spec=spec, fiber=fiber,
        mask_medium=options.get("mask_medium", "air"),
    )  # fmt: skip


def reduce_target(path, calibrations, options):
    """TARGET: processed, extracted, blaze attached, drift-corrected wavelengths, RV of the science fiber.

    ``options["summary_format"]`` "png" (default), "pdf" or "both" chooses the summary files;
    ``options["e91"]`` (default False) also writes the original's e91 file (:mod:`nres.pipeline.e91`).
    """
    out_dir = _out_dir(options)
    summary_paths = []  # checked before the reduction: a bad summary_format fails at once
    if options.get("plot", True):
        from .plots import summary_paths as _summary_paths

        summary_paths = _summary_paths(path, out_dir, options.get("summary_format", "png"))
    raw, frame, n_dead = _process(path, calibrations, options)
    from ..wavecal import WavelengthSolution, apply_solution
    from .frames import write_frame
    from .qc import error_budget, flat_rv_error, rv_qc, snr_per_order, spectrum_qc
    from .spectrum1d import write_spectrum_1d

    fiber = raw.info.science_fiber
    if fiber is None or fiber not in raw.info.targets:
        raise InvalidParameterError(f"{Path(path).name}: TARGET frame without a science fiber target")
    spec, flat_blaze = _extract(frame, _need(calibrations, "TRACE", path), return_blaze=True)
    master_path = calibrations.get("TRIPLE") or _need(calibrations, "DOUBLE", path)
    master = WavelengthSolution.read(master_path)
    # drift correction on by default. The spurious tens of m/s it measured on drift-free simulated
    # nights came from find_lines losing every fiber-1 line after the first NaN (no-weight) column
    # of a TARGET extraction (fixed), and an order-quadratic drift model bending towards the edge
    # orders of the 8-order windows (degree 0 there now); 30 drift-free TARGETs of 5 nights then
    # measured |drift| < 1.8 m/s (< 2.3 sigma), and an injected 0.08 px drift is recovered to
    # 0.001 px (tests/pipeline/test_drift_triple.py). "auto": only against a TRIPLE.
    mode = options.get("drift_correction", True)
    enabled = bool(calibrations.get("TRIPLE")) if mode == "auto" else bool(mode)
    max_error = float(options.get("drift_max_error_m_s", 5.0))
    solution, drift_qc = drift_correct(spec, master, fiber=fiber, enabled=enabled, max_error_m_s=max_error)
    if mode == "auto" and not enabled:
        drift_qc["drift_skipped"] = "drift_correction='auto' and the master is a DOUBLE, not a TRIPLE"
    spec = apply_solution(spec, solution)
    name = raw.info.targets[fiber].name
    qc = _frame_qc(raw, frame, n_dead) | spectrum_qc(spec, fiber)
    qc |= {
        "target": name,
        "science_fiber": int(fiber),
        "mjd_obs": raw.info.mjd_obs,
        "exptime": raw.info.exptime,
    }
    qc["wavecal_rms_m_s"] = float(solution.qc.get("rms_m_s", float("nan")))
    qc["wavecal_master"] = "TRIPLE" if calibrations.get("TRIPLE") else "DOUBLE"
    qc |= drift_qc
    rv = None
    template_name = ""
    try:
        reference, method, template_name = _reference(
            calibrations, options, name=name, spec=spec, fiber=fiber
        )
    except MissingCalibrationError as err:
        qc["rv_skipped"] = str(err)
    else:
        bary, how = _barycentric(raw, fiber)
        rv = measure_rv(spec, reference, method=method, fiber=fiber, z_b=float(bary.z))
        qc["rv_start"] = rv.meta["start"]
        qc |= rv_qc(rv)
        qc["rv_err_wavecal_m_s"] = wavecal_error(master, spec, rv, fiber)
        qc["rv_err_flat_m_s"] = flat_rv_error(spec, flat_blaze, rv, fiber)
        # photon (+) drift per exposure; the master solution's and the flat's errors are common to the
        # exposures they calibrate (docs/pipeline.md "RV error budget")
        qc |= error_budget(
            qc["rv_err_m_s"], drift=qc.get("drift_err_m_s"), wavecal=qc["rv_err_wavecal_m_s"],
            flat=qc["rv_err_flat_m_s"],
        )  # fmt: skip
        if bary.bjd_tdb is not None:
            qc["bjd_tdb"] = float(bary.bjd_tdb.tdb.jd)
            if rv.bjd_tdb is None:  # measure() leaves it None when given z_b; the products want it
                rv = dataclasses.replace(rv, bjd_tdb=bary.bjd_tdb)
        qc["barycentric_method"] = how
        qc["rv_template"] = template_name
    # the processed 2-D frame is optional (write_2d=False saves ~1 s per full frame)
    write_2d = options.get("write_2d", True)
    out2d = write_frame(frame, product_path(path, "2d", out_dir)) if write_2d else None
    out1d = write_spectrum_1d(
        product_path(path, "1d", out_dir), spec, rv=rv, template_name=template_name, qc=_scalars(qc)
    )
    products = [p for p in (out2d, out1d) if p is not None]
    if options.get("e91", False):  # the original's 10-HDU archive layout, <raw stem e00 -> e91>.fits
        from .e91 import write_e91

        bjd = {"BJD": qc["bjd_tdb"]} if "bjd_tdb" in qc else None
        products.append(
            write_e91(product_path(path, "e91", out_dir, rlevel=91), spec, rv=rv, fiber=fiber, header=bjd)
        )
    if summary_paths:
        from .plots import summary_figure

        snr = snr_per_order(spec, fiber)
        title = f"{Path(path).name}: {name}"
        products += summary_figure(
            summary_paths, spec, fiber=fiber, rv=rv, solution=solution, snr=snr, title=title
        )
    return products, qc


#: OBSTYPE -> recipe task
RECIPES = {
    "BIAS": reduce_bias,
    "DARK": reduce_dark,
    "LAMPFLAT": reduce_flat,
    "DOUBLE": reduce_arc,
    "TARGET": reduce_target,
}


def reduce_file(
    path, *, db, out_dir, calibrations=None, force: bool = False, register: bool = True, **options
):
    """Reduce one raw file: choose its calibrations in ``db``, run its recipe, record the outcome.

    Parameters
    ----------
    path : str or os.PathLike
        Raw NRES file.
    db : nres.pipeline.Database
        Calibrations are selected from it (:meth:`~nres.pipeline.Database.select_calibration`,
        nearest in time, same instrument, camera and, for TRACE/DOUBLE, fiber state); the frame,
        its calibration product and its RV are recorded in it.
    out_dir : str or os.PathLike
        Where products go.
    calibrations : dict of kind -> path, optional
        Use these instead of selecting (kinds of :data:`REQUIRED_CALIBRATIONS`).
    force : bool
        Reduce again a file (same checksum) already reduced successfully.
    register : bool
        Register the frame's calibration product (a single-frame BIAS/DARK/TRACE, a DOUBLE
        solution) in ``db``.
    **options
        Recipe options: ``template`` (``"simulated"`` or a line-mask path), ``mask_medium``,
        ``plot`` (summary figure, default True), ``summary_format`` ("png", "pdf" or "both"),
        ``e91`` (also write the original's e91 file, default False), ``dead_columns`` (default
        True), ``cosmic_rays`` ("auto" (default): flag the cosmic rays of BIAS, DARK, LAMPFLAT and
        TARGET frames; True: also DOUBLE; False: none), ``line_list``, ``drift_correction``
        (TARGET: True (default) corrects the master solution for the drift measured on the
        simultaneous ThAr, False never, ``"auto"`` only against a TRIPLE), ``drift_max_error_m_s``
        (5.0: a drift less precise than this is not applied; ``qc["drift_skipped"]`` says why).

    Returns
    -------
    nres.pipeline.batch.TaskResult
        ``status`` "done", "failed" (with ``reason``) or "skipped".
    """
    from concurrent.futures import ThreadPoolExecutor

    from ..io import read_raw_info
    from .batch import Task, frame_fields, record_failures, run_stage
    from .calibrations import register_results, select_calibrations

    path = os.fspath(path)
    try:
        info = read_raw_info(path)
    except Exception as err:  # an unreadable file is a recorded failure, as in a night
        return record_failures(db, [(path, f"{type(err).__name__}: {err}")], stage="classify")[0]
    if info.obstype not in RECIPES:
        reason = f"UnsupportedObstype: no recipe reduces OBSTYPE {info.obstype}"
        return record_failures(db, [(path, reason)], stage="classify")[0]
    if calibrations is None:
        try:
            calibrations = select_calibrations(db, info)
        except MissingCalibrationError as err:
            from .batch import file_checksum

            reason = f"{type(err).__name__}: {err}"
            db.record_frame(path, checksum=file_checksum(path), success=False, reason=reason,
                            stage=info.obstype, **frame_fields(info))  # fmt: skip
            from .batch import TaskResult

            return TaskResult(path, file_checksum(path), "failed", reason=reason)
        from .night import extra_calibrations

        calibrations = {**calibrations, **extra_calibrations(db, info)}  # TRIPLE, ZERO if any
    task = Task(RECIPES[info.obstype], path, dict(calibrations), {**options, "out_dir": os.fspath(out_dir)},
                frame_fields(info))  # fmt: skip
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = run_stage([task], pool, db=db, progress=False, force=force, stage=info.obstype)[0]
    register_results(db, [(result, info)], calibrations=register)
    return result
