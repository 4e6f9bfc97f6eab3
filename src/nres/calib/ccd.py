"""CCD processing: overscan, trim, gain, bias, dark, variance and pixel flags.

:func:`process_ccd` runs all steps in one fused numba pass (parallel over rows). The same steps
also exist as public functions (:func:`subtract_overscan`, :func:`trim`, :func:`gain_correct`,
:func:`subtract_bias`, :func:`make_variance`, :func:`subtract_dark`, :func:`flag_pixels`) written
in plain numpy; chained in that order they give results identical to the fused pass.

Units: raw frames in ADU; processed frames in electrons with a ``VarianceUncertainty`` in
electrons^2; master biases in electrons, master darks in electrons per second.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData, NDData, VarianceUncertainty

from .. import legacy
from ..errors import InvalidParameterError
from ..flags import FLAG_DTYPE, Flag, empty_flags, flags_to_mask
from ..provenance import record_provenance
from . import _kernels
from .overscan import overscan_level
from .sections import parse_section

__all__ = [
    "process_ccd",
    "ccd_parameters",
    "subtract_overscan",
    "trim",
    "gain_correct",
    "subtract_bias",
    "make_variance",
    "subtract_dark",
    "flag_pixels",
]

_PROCESS = "nres.calib.process_ccd"
VARIANCE_FORMULAS = ("poisson", "idl")
LAST_COLUMN = ("keep", "copy_previous")

for _fn in (_PROCESS, "nres.calib.make_variance"):
    legacy.register(
        _fn,
        "variance_formula",
        choices=VARIANCE_FORMULAS,
        default="poisson",
        legacy="idl",
        reference="idl-calib-trace-extract.md 7",
        summary="mk_variance: max(D,0) + gain^2 rdnois in ADU (Poisson x gain, wrong RN term)",
    )
for _fn in (_PROCESS, "nres.calib.trim"):
    legacy.register(
        _fn,
        "last_column",
        choices=LAST_COLUMN,
        default="keep",
        legacy="copy_previous",
        reference="idl-calib-trace-extract.md 3.3",
        summary="trimoscan replaced the last trimmed column by the next-to-last",
    )

#: header keyword(s) and RawInfo attribute of each camera parameter
_KEYS = {
    "gain": (("GAIN",), "gain"),
    "read_noise": (("RDNOISE",), "read_noise"),
    "saturation": (("SATURATE",), "saturation"),
    "max_linear": (("MAXLIN",), "max_linear"),
    "biassec": (("BIASSEC",), "biassec"),
    "trimsec": (("TRIMSEC", "DATASEC"), "trimsec"),
    "exptime": (("EXPTIME",), "exptime"),
}


# ----- input unpacking ------------------------------------------------------------------------
def _unpack_raw(raw):
    """(CCDData in ADU, info or None, name for messages) from a RawFrame or a raw CCDData."""
    if hasattr(raw, "frame") and hasattr(raw, "info"):
        name = str(getattr(raw, "path", None) or "raw frame")
        return raw.frame, raw.info, name
    if isinstance(raw, NDData):
        return raw, None, "raw frame"
    msg = f"raw: expected an nres.io.RawFrame or a CCDData in ADU, got {type(raw).__name__}"
    raise InvalidParameterError(msg)


def ccd_parameters(raw, **given) -> dict:
    """Camera parameters of a raw frame: explicit values, else ``RawFrame.info``, else the header.

    Parameters
    ----------
    raw : RawFrame or CCDData
        Raw frame (header keywords GAIN, RDNOISE, SATURATE, MAXLIN, BIASSEC, TRIMSEC or DATASEC,
        EXPTIME).
    **given
        Values that override the frame's (``None`` = not given): ``gain`` (e-/ADU),
        ``read_noise`` (e-), ``saturation`` and ``max_linear`` (raw ADU), ``biassec``,
        ``trimsec`` (FITS strings or slices), ``exptime`` (s).

    Returns
    -------
    dict
        The values above; sections parsed to 0-based ``(y, x)`` slices. A missing MAXLIN falls
        back to the saturation level (no pixel is then flagged non-linear).

    Raises
    ------
    InvalidParameterError
        A required value is found nowhere; the message names the keyword.
    """
    frame, info, name = _unpack_raw(raw)
    meta = frame.meta if frame.meta is not None else {}
    out = {}
    for key, (cards, attr) in _KEYS.items():
        value = given.get(key)
        if value is None and info is not None:
            value = getattr(info, attr, None)
        for card in cards:
            if value is None and card in meta:
                value = meta[card]
        out[key] = value
    if out["max_linear"] is None:
        out["max_linear"] = out["saturation"]
    missing = [k for k, v in out.items() if v is None]
    if missing:
        cards = ", ".join("/".join(_KEYS[k][0]) for k in missing)
        msg = f"{name}: missing {', '.join(missing)} (header keyword {cards}); pass it explicitly"
        raise InvalidParameterError(msg)
    for key in ("gain", "read_noise", "saturation", "max_linear", "exptime"):
        v = out[key]
        if isinstance(v, u.Quantity):
            v = v.value
        try:
            out[key] = float(v)
        except (TypeError, ValueError):
            msg = f"{name}: {key} must be a number, got {v!r}"
            raise InvalidParameterError(msg) from None
    if out["gain"] <= 0 or out["read_noise"] < 0 or out["exptime"] < 0:
        msg = f"{name}: expected gain > 0, read_noise >= 0, exptime >= 0; got {out}"
        raise InvalidParameterError(msg)
    out["biassec"] = parse_section(out["biassec"], name="biassec")
    out["trimsec"] = parse_section(out["trimsec"], name="trimsec")
    return out


def _variance(frame):
    """Variance array of a frame's uncertainty, or None."""
    unc = frame.uncertainty
    if unc is None:
        return None
    if not isinstance(unc, VarianceUncertainty):
        unc = unc.represent_as(VarianceUncertainty)
    return np.ascontiguousarray(unc.array, dtype=np.float64)


def _master(master, shape, name):
    """(data, variance or None, mask or None) of a master frame checked against ``shape``."""
    if master is None:
        return None, None, None
    if not isinstance(master, NDData):
        master = NDData(np.asarray(master, dtype=np.float64))
    data = np.ascontiguousarray(master.data, dtype=np.float64)
    if data.shape != tuple(shape):
        msg = f"{name}: expected shape {tuple(shape)} (the trimmed frame), got {data.shape}"
        raise InvalidParameterError(msg)
    var = _variance(master)
    mask = None if master.mask is None else np.ascontiguousarray(master.mask, dtype=bool)
    return data, var, mask


def _bpm(bpm, shape):
    """Bad-pixel map as a contiguous bool array (no copy if it already is one), or None."""
    if bpm is None:
        return None
    arr = np.asarray(bpm.data if isinstance(bpm, NDData) else bpm)
    if arr.shape != tuple(shape):
        msg = f"bpm: expected shape {tuple(shape)} (the trimmed frame), got {arr.shape}"
        raise InvalidParameterError(msg)
    return np.ascontiguousarray(arr) if arr.dtype == np.bool_ else arr != 0


def _variance_terms(formula, gain, read_noise):
    """(poisson_factor, constant) of the read-noise + Poisson variance in electrons^2."""
    if formula == "idl":
        # mk_variance in ADU: max(D,0) + gain^2 rdnois; times gain^2 for electrons
        return gain, gain**4 * read_noise
    return 1.0, read_noise * read_noise


def _new_frame(template, data, *, unit, var=None, flags=None, meta=None):
    meta = (template.meta.copy() if template.meta is not None else {}) if meta is None else meta
    mask = None if flags is None else flags_to_mask(flags)
    unc = None if var is None else VarianceUncertainty(var)
    return CCDData(data, unit=unit, uncertainty=unc, mask=mask, flags=flags, meta=meta)


def _flags_or_new(frame, shape):
    f = getattr(frame, "flags", None)
    return empty_flags(shape) if f is None else np.array(f, dtype=FLAG_DTYPE)


def _resolve(function, legacy_, **given) -> dict:
    """A function's legacy options (explicit values win over ``legacy``)."""
    return legacy.resolve(function, legacy_, **given)


# ----- the fused pass -------------------------------------------------------------------------
def process_ccd(
    raw,
    *,
    bias=None,
    dark=None,
    bpm=None,
    overscan=None,
    overscan_sigma: float = 3.0,
    overscan_smooth: int = 17,
    variance_formula=None,
    last_column=None,
    bleed_level=None,
    bleed_pad: int = 2,
    legacy: bool = False,
    **parameters,
) -> CCDData:
    """Process a raw frame in one fused pass: ADU with overscan -> trimmed electrons + variance.

    Steps: overscan level from BIASSEC (see :func:`~nres.calib.overscan_level`), trim to
    TRIMSEC, gain to electrons, master bias subtraction, variance = read noise^2 + Poisson term of
    the bias-subtracted signal (+ the masters' variances), master dark (e-/s) x EXPTIME
    subtraction, flags and the mask derived from them. Flags: BAD_PIXEL from ``bpm`` or a masked
    master pixel, SATURATED (raw >= SATURATE), NONLINEAR (raw > MAXLIN), BLEED (see
    :func:`flag_pixels`), NONFINITE (non-finite result).

    Parameters
    ----------
    raw : nres.io.RawFrame or CCDData
        Raw frame in ADU, shape (ny_raw, nx_raw) with overscan; a CCDData must carry the header
        keywords of :func:`ccd_parameters`. uint16, int32 and float64 data are read as they are
        (no float copy); other dtypes are converted to float64.
    bias : CCDData, optional
        Master bias (electrons), trimmed shape; its variance and mask propagate.
    dark : CCDData, optional
        Master dark (electrons per second), trimmed shape; its variance (e-/s)^2 and mask propagate.
    bpm : array_like or NDData, optional
        Bad-pixel map of the trimmed shape, non-zero = bad.
    overscan : {"row", "frame", "idl", "none"}, optional
        Overscan rule; default ``"row"`` (robust per-row level, running mean over
        ``overscan_smooth`` rows). ``"idl"`` is the original's trimoscan (legacy).
    overscan_sigma : float
        Rejection threshold of the robust overscan level.
    overscan_smooth : int
        Odd running-mean width in rows for ``overscan="row"``.
    variance_formula : {"poisson", "idl"}, optional
        ``"poisson"`` (default): read_noise^2 + max(signal, 0) in electrons. ``"idl"``: the
        original's mk_variance units bug, gain max(signal, 0) + gain^4 read_noise (legacy).
    last_column : {"keep", "copy_previous"}, optional
        ``"copy_previous"`` replaces the last trimmed column by the next-to-last (legacy).
    bleed_level : float, optional
        Raw ADU above which a pixel adjoining a saturated run along its column is bleed
        (default: MAXLIN).
    bleed_pad : int
        Extra pixels flagged BLEED beyond each end of a bleed trail.
    legacy : bool
        Turn on every legacy option not given explicitly.
    **parameters
        Overrides of the camera parameters (``gain``, ``read_noise``, ``saturation``,
        ``max_linear``, ``biassec``, ``trimsec``, ``exptime``), see :func:`ccd_parameters`.

    Returns
    -------
    CCDData
        Trimmed frame (ny, nx) in electrons, float64, with ``VarianceUncertainty``, uint16
        ``flags``, boolean ``mask`` and provenance in ``meta``; all new arrays (nothing shared with
        the inputs), the header copied.
    """
    opts = _resolve(
        _PROCESS, legacy, overscan=overscan, variance_formula=variance_formula, last_column=last_column
    )
    frame, _, name = _unpack_raw(raw)
    unknown = set(parameters) - set(_KEYS)
    if unknown:
        msg = f"process_ccd: unknown parameter(s) {sorted(unknown)}; expected some of {sorted(_KEYS)}"
        raise InvalidParameterError(msg)
    p = ccd_parameters(raw, **parameters)
    data = _raw_array(frame.data)
    ty, tx = p["trimsec"]
    ny, nx = _slice_len(ty, data.shape[0], "trimsec", name), _slice_len(tx, data.shape[1], "trimsec", name)
    shape = (ny, nx)
    masters = _master(bias, shape, "bias") + _master(dark, shape, "dark") + (_bpm(bpm, shape),)
    level = overscan_level(
        data,
        p["biassec"],
        overscan=opts["overscan"],
        sigma=overscan_sigma,
        smooth=overscan_smooth,
        data_rows=ty,
    )
    if not np.all(np.isfinite(level[ty])):
        msg = f"{name}: biassec {p['biassec']} does not cover the rows of trimsec {ty}"
        raise InvalidParameterError(msg)
    poisson_factor, var_const = _variance_terms(opts["variance_formula"], p["gain"], p["read_noise"])
    bleed = p["max_linear"] if bleed_level is None else float(bleed_level)
    # outputs allocated by numpy (huge pages for large arrays; see _kernels._process)
    out, var = np.empty(shape), np.empty(shape)
    flags, mask = np.empty(shape, dtype=FLAG_DTYPE), np.empty(shape, dtype=np.bool_)
    one, no = np.zeros((1, 1)), np.zeros((1, 1), dtype=np.bool_)
    given = []
    for arr, dummy in zip(masters, (one, one, no) * 2 + (no,), strict=True):
        given += [dummy if arr is None else arr, arr is not None]
    _kernels._process(
        data,
        level,
        ty.start,
        tx.start,
        p["gain"],
        poisson_factor,
        var_const,
        p["exptime"],
        *given,
        p["saturation"],
        p["max_linear"],
        bleed,
        int(bleed_pad),
        opts["last_column"] == "copy_previous",
        out,
        var,
        flags,
        mask,
    )
    meta = frame.meta.copy() if frame.meta is not None else {}
    meta["BUNIT"] = "electron"
    record_provenance(
        meta,
        _PROCESS,
        overscan=opts["overscan"],
        overscan_sigma=overscan_sigma,
        overscan_smooth=overscan_smooth,
        variance_formula=opts["variance_formula"],
        last_column=opts["last_column"],
        bias=bias is not None,
        dark=dark is not None,
        bpm=bpm is not None,
        bleed_level=bleed,
        bleed_pad=int(bleed_pad),
    )
    # fresh arrays: no copies (VarianceUncertainty copies by default; the kernel wrote the mask)
    unc = VarianceUncertainty(var, copy=False)
    return CCDData(out, unit=u.electron, uncertainty=unc, mask=mask, flags=flags, meta=meta)


def _raw_array(data):
    """The raw data as the kernel reads it: C-contiguous, in a dtype of ``_kernels.RAW_DTYPES``
    (no copy for a uint16/int32/float64 frame), else converted to float64."""
    data = np.asarray(data)
    native = data.dtype.newbyteorder("=")  # FITS data may come big-endian
    dtype = native if any(native == np.dtype(t) for t in _kernels.RAW_DTYPES) else np.float64
    return np.ascontiguousarray(data, dtype=dtype)


def _slice_len(s: slice, n: int, what: str, name: str) -> int:
    if s.stop > n:
        msg = f"{name}: {what} rows/columns up to {s.stop} exceed the frame size {n}"
        raise InvalidParameterError(msg)
    return s.stop - s.start


# ----- the individual steps (numpy; identical to the fused pass) ------------------------------
def subtract_overscan(
    raw,
    *,
    overscan=None,
    overscan_sigma: float = 3.0,
    overscan_smooth: int = 17,
    legacy: bool = False,
    biassec=None,
    trimsec=None,
) -> CCDData:
    """Subtract the overscan level from every row of a raw frame (still untrimmed, ADU).

    Parameters
    ----------
    raw : RawFrame or CCDData
        Raw frame in ADU.
    overscan, overscan_sigma, overscan_smooth, legacy
        As in :func:`process_ccd`.
    biassec, trimsec : str or (slice, slice), optional
        Override the header's sections (trimsec is only used by ``overscan="idl"``).

    Returns
    -------
    CCDData
        Float64 frame of the raw shape in ADU; rows outside BIASSEC are nan.
    """
    opt = _resolve("nres.calib.subtract_overscan", legacy, overscan=overscan)
    frame, _, name = _unpack_raw(raw)
    meta = frame.meta if frame.meta is not None else {}
    biassec = biassec if biassec is not None else meta.get("BIASSEC")
    if biassec is None:
        msg = f"{name}: missing BIASSEC; pass biassec="
        raise InvalidParameterError(msg)
    trimsec = trimsec if trimsec is not None else meta.get("TRIMSEC", meta.get("DATASEC"))
    data = np.asarray(frame.data, dtype=np.float64)
    rows = None if trimsec is None else parse_section(trimsec, name="trimsec")[0]
    level = overscan_level(
        data,
        parse_section(biassec, name="biassec"),
        overscan=opt["overscan"],
        sigma=overscan_sigma,
        smooth=overscan_smooth,
        data_rows=rows,
    )
    out = _new_frame(frame, data - level[:, None], unit=u.adu)
    record_provenance(
        out.meta,
        "nres.calib.subtract_overscan",
        overscan=opt["overscan"],
        overscan_sigma=overscan_sigma,
        overscan_smooth=overscan_smooth,
    )
    return out


def trim(frame, *, trimsec=None, last_column=None, legacy: bool = False) -> CCDData:
    """Trim a frame to TRIMSEC (header TRIMSEC, else DATASEC, unless given).

    Parameters
    ----------
    frame : CCDData
        Untrimmed frame (any unit); flags/mask/uncertainty are trimmed too.
    trimsec : str or (slice, slice), optional
    last_column : {"keep", "copy_previous"}, optional
        ``"copy_previous"``: the original's replacement of the last column (legacy).

    Returns
    -------
    CCDData
        The trimmed copy.
    """
    opt = _resolve("nres.calib.trim", legacy, last_column=last_column)
    frame, _, name = _unpack_raw(frame)
    meta = frame.meta if frame.meta is not None else {}
    trimsec = trimsec if trimsec is not None else meta.get("TRIMSEC", meta.get("DATASEC"))
    if trimsec is None:
        msg = f"{name}: missing TRIMSEC/DATASEC; pass trimsec="
        raise InvalidParameterError(msg)
    ys, xs = parse_section(trimsec, name="trimsec")
    _slice_len(ys, frame.data.shape[0], "trimsec", name)
    _slice_len(xs, frame.data.shape[1], "trimsec", name)

    def cut(a):
        if a is None:
            return None
        a = np.array(a[ys, xs])
        if opt["last_column"] == "copy_previous" and a.shape[1] > 1:
            a[:, -1] = a[:, -2]
        return a

    var = _variance(frame)
    out = CCDData(
        cut(np.asarray(frame.data)),
        unit=frame.unit,
        uncertainty=None if var is None else VarianceUncertainty(cut(var)),
        mask=cut(frame.mask),
        flags=cut(getattr(frame, "flags", None)),
        meta=meta.copy(),
    )
    record_provenance(out.meta, "nres.calib.trim", last_column=opt["last_column"])
    return out


def gain_correct(frame, *, gain=None) -> CCDData:
    """Multiply by the gain (e-/ADU; header GAIN unless given): ADU -> electrons."""
    frame, info, name = _unpack_raw(frame)
    if gain is None:
        gain = getattr(info, "gain", None) if info is not None else None
    if gain is None:
        gain = (frame.meta or {}).get("GAIN")
    if gain is None or float(gain) <= 0:
        msg = f"{name}: gain must be a positive number (header GAIN), got {gain!r}"
        raise InvalidParameterError(msg)
    g = float(gain)
    var = _variance(frame)
    out = CCDData(
        np.asarray(frame.data, dtype=np.float64) * g,
        unit=u.electron,
        uncertainty=None if var is None else VarianceUncertainty(var * (g * g)),
        mask=frame.mask,
        flags=getattr(frame, "flags", None),
        meta=frame.meta.copy(),
    )
    record_provenance(out.meta, "nres.calib.gain_correct", gain=g)
    return out


def _subtract_master(frame, master, scale, name, step):
    data = np.asarray(frame.data, dtype=np.float64)
    m, mvar, mmask = _master(master, data.shape, name)
    var = _variance(frame)
    if mvar is not None:
        add = mvar if scale == 1.0 else (scale * scale) * mvar
        var = add if var is None else var + add
    flags = getattr(frame, "flags", None)
    if mmask is not None:
        flags = _flags_or_new(frame, data.shape)
        flags[mmask] |= FLAG_DTYPE(Flag.BAD_PIXEL)
    out = _new_frame(frame, data - (m if scale == 1.0 else scale * m), unit=frame.unit, var=var, flags=flags)
    if flags is None:
        out.mask = frame.mask
    record_provenance(out.meta, step, scale=scale)
    return out


def subtract_bias(frame, bias) -> CCDData:
    """Subtract a master bias (electrons); its variance adds to the frame's (or starts it).

    A masked master pixel sets BAD_PIXEL in the output flags.
    """
    return _subtract_master(frame, bias, 1.0, "bias", "nres.calib.subtract_bias")


def subtract_dark(frame, dark, *, exptime=None) -> CCDData:
    """Subtract a master dark (e-/s) times the exposure time (header EXPTIME unless given).

    The dark's variance times exptime^2 adds to the frame's; a masked dark pixel sets BAD_PIXEL.
    """
    if exptime is None:
        exptime = (frame.meta or {}).get("EXPTIME")
    if exptime is None or float(exptime) < 0:
        msg = f"exptime: expected a non-negative exposure time (header EXPTIME), got {exptime!r}"
        raise InvalidParameterError(msg)
    return _subtract_master(frame, dark, float(exptime), "dark", "nres.calib.subtract_dark")


def make_variance(frame, *, read_noise=None, gain=None, variance_formula=None, legacy: bool = False):
    """Add the read-noise and Poisson variance to a bias-subtracted frame in electrons.

    Parameters
    ----------
    frame : CCDData
        Bias-subtracted (not yet dark-subtracted) frame in electrons; an existing variance (e.g.
        from :func:`subtract_bias`) is kept and added to.
    read_noise : float, optional
        Read noise in electrons (header RDNOISE unless given).
    gain : float, optional
        e-/ADU (header GAIN); only used by ``variance_formula="idl"``.
    variance_formula : {"poisson", "idl"}, optional
        See :func:`process_ccd`.

    Returns
    -------
    CCDData
        Copy with variance = previous + (read_noise^2 + max(data, 0)).
    """
    opt = _resolve("nres.calib.make_variance", legacy, variance_formula=variance_formula)
    meta = frame.meta or {}
    read_noise = meta.get("RDNOISE") if read_noise is None else read_noise
    gain = meta.get("GAIN", 1.0) if gain is None else gain
    if read_noise is None or float(read_noise) < 0:
        msg = f"read_noise: expected a non-negative read noise in electrons (RDNOISE), got {read_noise!r}"
        raise InvalidParameterError(msg)
    pf, const = _variance_terms(opt["variance_formula"], float(gain), float(read_noise))
    data = np.asarray(frame.data, dtype=np.float64)
    term = pf * np.maximum(data, 0.0) + const
    var = _variance(frame)
    out = _new_frame(
        frame,
        data.copy(),
        unit=frame.unit,
        var=term if var is None else var + term,
        flags=getattr(frame, "flags", None),
    )
    if getattr(frame, "flags", None) is None:
        out.mask = frame.mask
    record_provenance(out.meta, "nres.calib.make_variance", variance_formula=opt["variance_formula"])
    return out


def flag_pixels(
    frame, raw_trimmed, *, bpm=None, saturation=None, max_linear=None, bleed_level=None, bleed_pad: int = 2
) -> CCDData:
    """Set the pixel flags of a processed frame and derive its mask.

    Parameters
    ----------
    frame : CCDData
        Processed (trimmed) frame; existing flags are kept and added to.
    raw_trimmed : CCDData
        The raw frame in ADU trimmed the same way (``trim(raw)``); saturation is judged on it.
    bpm : array_like, optional
        Bad-pixel map (non-zero = bad) -> BAD_PIXEL.
    saturation, max_linear : float, optional
        Raw ADU levels (header SATURATE, MAXLIN). raw >= saturation -> SATURATED; saturation >
        raw > max_linear -> NONLINEAR.
    bleed_level : float, optional
        From every saturated pixel, the column is followed up and down while raw > bleed_level
        (default max_linear); those pixels and ``bleed_pad`` more beyond each end -> BLEED.
    bleed_pad : int

    Returns
    -------
    CCDData
        Copy with ``flags`` (uint16) and ``mask = flags_to_mask(flags)``; NONFINITE where data
        or variance is not finite.
    """
    data = np.asarray(frame.data)
    r = np.asarray(raw_trimmed.data, dtype=np.float64)
    if r.shape != data.shape:
        msg = f"raw_trimmed: expected shape {data.shape}, got {r.shape}"
        raise InvalidParameterError(msg)
    meta = raw_trimmed.meta or {}
    saturation = float(meta["SATURATE"] if saturation is None else saturation)
    max_linear = float(meta.get("MAXLIN", saturation) if max_linear is None else max_linear)
    bleed_level = max_linear if bleed_level is None else float(bleed_level)
    flags = _flags_or_new(frame, data.shape)
    bad = _bpm(bpm, data.shape)
    if bad is not None:
        flags[bad] |= FLAG_DTYPE(Flag.BAD_PIXEL)
    sat = r >= saturation
    flags[sat] |= FLAG_DTYPE(Flag.SATURATED)
    flags[~sat & (r > max_linear)] |= FLAG_DTYPE(Flag.NONLINEAR)
    flags[_bleed_mask(r, sat, bleed_level, int(bleed_pad))] |= FLAG_DTYPE(Flag.BLEED)
    var = _variance(frame)
    finite = np.isfinite(data) if var is None else np.isfinite(data) & np.isfinite(var)
    flags[~finite] |= FLAG_DTYPE(Flag.NONFINITE)
    out = _new_frame(frame, np.array(data), unit=frame.unit, var=var, flags=flags)
    record_provenance(
        out.meta,
        "nres.calib.flag_pixels",
        saturation=saturation,
        max_linear=max_linear,
        bleed_level=bleed_level,
        bleed_pad=int(bleed_pad),
    )
    return out


def _bleed_mask(r, sat, level, pad):
    """Bleed trails along columns (numpy/Python; loops only over columns with saturation)."""
    bleed = np.zeros(r.shape, dtype=bool)
    ny = r.shape[0]
    for x in np.flatnonzero(sat.any(axis=0)):
        col_sat = sat[:, x]
        above = r[:, x] > level
        for y in np.flatnonzero(col_sat):
            for step in (-1, 1):
                yy = y + step
                while 0 <= yy < ny and not col_sat[yy] and above[yy]:
                    bleed[yy, x] = True
                    yy += step
                for _ in range(pad):
                    if 0 <= yy < ny and not col_sat[yy]:
                        bleed[yy, x] = True
                        yy += step
                    else:
                        break
    return bleed
