"""Simulated frames written as raw NRES composite data products (``.fits.fz``), as ``read_raw`` reads them.

Layout (that of the real LCO files): an empty primary HDU; the image as the tile-compressed (RICE,
one tile per row) extension ``SPECTRUM``, uint16 stored as BITPIX 16 with BZERO 32768, carrying the
main header (keyword names, order and formats of a real ``LCOGT-HDR-1.3.0`` header); the binary
tables EXPOSURE_METER (the flux history the simulator used for its Doppler integration), AGU_1 and
AGU_2 (no rows: no guider images are simulated); the header-only extensions TELESCOPE_1/2 with the
target of fiber 0 / fiber 2. Checksums on every HDU; written atomically (temporary file + rename).

A *windowed* raw file (:func:`raw_window`) is a crop of the trimmed detector followed by 58
overscan columns: BIASSEC/TRIMSEC describe the small image, DETSIZE still the whole detector,
CCDSEC the region read, and NRESY0/NRESX0 (plus LTV1/LTV2) its origin (``nres.window``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, UnitSphericalRepresentation
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.time import Time

from ..errors import InvalidParameterError
from ..provenance import record_provenance
from ..window import window_origin, with_window_origin
from .truth import Truth

__all__ = ["write_raw", "raw_window", "raw_filename", "OBSTYPE_CODES", "OVERSCAN_COLUMNS"]

#: One-letter code of the file name per OBSTYPE (e science, w lamp flat, a arc, b bias, d dark).
OBSTYPE_CODES = {"TARGET": "e", "LAMPFLAT": "w", "DOUBLE": "a", "BIAS": "b", "DARK": "d"}
#: Overscan columns of an NRES raw frame (BIASSEC [4103:4160,...]).
OVERSCAN_COLUMNS = 58
#: Exposure-meter counts per sample at relative flux 1 (integers: 1e6 keeps the flux to 5e-7).
METER_COUNTS = 1.0e6
_FULL_SHAPE = (4108, 4160)
_RN_SEED = 0x0A5C

# Keywords of a real raw header (cptnrs03-fa13-20190405-0014-a00) in their order, with the value
# written when the simulation has nothing to say (the real files' own placeholders) and the comment.
_TEMPLATE = (
    ("DATADICV", "LCOGT-DIC.FITS-0.10.0", "Version number of the data dictionary"),
    ("HDRVER", "LCOGT-HDR-1.3.0", "Version number of the headers"),
    ("ORIGIN", "LCOGT", "Organization responsible for the data"),
    ("SITEID", None, "ID code of the Observatory site"),
    ("SITE", None, "Site name"),
    ("TELID", "igla", "ID code of the Telescope"),
    ("TELESCOP", None, "The Name of the Telescope"),
    ("OBSTYPE", None, "Observation type"),
    ("FRAMENUM", 1, "Running frame number"),
    ("MOLTYPE", "N/A", "Molecule type"),
    ("MOLNUM", 1, "Molecule number"),
    ("MOLFRNUM", 1, "Exposure number within molecule"),
    ("FRMTOTAL", 1, "Total number of exposures within molecule"),
    ("ORIGNAME", None, "Fname of Composite DP"),
    ("RAWIMAGE", "N/A", "Fname written by Sinistro"),
    ("OBSTELEM", "N/A", "Telemetry data"),
    ("TIMESYS", "UTC", "Time system used"),
    ("DATE", None, "[UTC] Date this FITS file was written"),
    ("DATE-OBS", None, "[UTC] Start date and time of observation"),
    ("DAY-OBS", None, "[UTC] Date at start of local observing night"),
    ("UTSTART", None, "Start time of the observation"),
    ("UTSTOP", None, "Finish time of the observation"),
    ("MJD-OBS", None, "Start date/time (Modified Julian Date)"),
    ("EXPTIME", None, "[s] Exposure length"),
    ("INSTRUME", None, "Instrument used"),
    ("INSSTATE", "OKAY", "The instrument status"),
    ("CONFMODE", "lco2_500kHz_1amp_DRH_B", "Camera mode configuration"),
    ("DETECTOR", "UNKNOWN", "Detector type"),
    ("GAIN", None, "[electrons/count] Pixel gain"),
    ("RDNOISE", None, "[electrons/pixel] Read noise"),
    ("DARKCURR", 0.0, "[electrons/pixel/s @ 200K] Dark current"),
    ("SATURATE", None, "[ADU] Saturation level"),
    ("MAXLIN", None, "[ADU] Non-linearity level"),
    ("RDSPEED", 75.0, "[kpix/s] Readout speed used"),
    ("DETSIZE", "[1:4160,1:4108]", "[pixel] Detector size"),
    ("AMPNAME", "default", "Amplifier name"),
    ("CCDSEC", "UNKNOWN", "[pixel] Region of CCD read"),
    ("CCDSUM", "1 1", "CCD on-chip summing/binning"),
    ("BIASSEC", None, "[binned pixel] Section of bias/overscan data"),
    ("DATASEC", None, "[binned pixel] Data section"),
    ("TRIMSEC", None, "[binned pixel] Section of useful data"),
    ("ROI", "UNKNOWN", "[binned pixel] Region of interest or MULTIPLE"),
    ("DETSEC", None, "[binned pixel] Section of useful data"),
    ("CCDXPIXE", 0.000015, "[m] Size of pixels"),
    ("CCDYPIXE", 0.000015, "[m] Size of pixels"),
    ("CCDSTEMP", -90.0, "[deg C] CCD required temperature"),
    ("CCDATEMP", -90.0, "[deg C] CCD actual temperature"),
    ("TAGID", "LCOGT", "Time Allocation Group ID"),
    ("USERID", "nres.sim", "User ID"),
    ("PROPID", "calibrate", "Proposal ID"),
    ("GROUPID", "N/A", "Group ID"),
    ("OBSID", "UNSPECIFIED", "Observation ID"),
    ("OBSNOTE", "UNSPECIFIED", "Observation Note"),
    ("SCHEDNAM", "POND", "Name of scheduler in control"),
    ("TRACKNUM", "UNSPECIFIED", "Request DB tracking number"),
    ("REQNUM", "UNSPECIFIED", "Request DB request number"),
    ("RA", "N/A", "[hours] RA where telescope is pointing"),
    ("DEC", "N/A", "[deg] Dec where telescope is pointing"),
    ("CAT-RA", "N/A", "[HH:MM:SS.sss] Catalog RA of the object"),
    ("CAT-DEC", "N/A", "[sDD:MM:SS.ss] Catalog Dec of the object"),
    ("CAT-EPOC", "N/A", "[Year] Catalog epoch of the coordinates"),
    ("PM-RA", "N/A", "[arcsec/yr] Proper motion in RA (x cos Dec)"),
    ("PM-DEC", "N/A", "[arcsec/yr] Proper motion in Dec"),
    ("PARALLAX", "N/A", "[arcsec] Parallax of the object"),
    ("RADESYS", "ICRS", "[ICRS] Fundamental coord. system of the object"),
    ("AGU1POSN", "CALIBRATION", "NRES AGU 1 wheel position"),
    ("AGU2POSN", "CALIBRATION", "NRES AGU 2 wheel position"),
    ("OBJECTS", None, "Concatenation of 3 fiber objects"),
    ("OBJECT", "", None),
    ("RLEVEL", 0, "Reduction level"),
)
_SKIP_FROM_FRAME = {"BUNIT", "EXTNAME"}


def raw_filename(site, instrument, camera, day_obs, frame_number, obstype, *, compress=True) -> str:
    """Archive-style name of a raw file, e.g. ``lscnrs01-fa09-20190405-0014-e00.fits.fz``.

    Parameters
    ----------
    site, instrument, camera : str
        Site code (``lsc``), NRES unit (``nres01``) and camera (``fa09``).
    day_obs : str
        ``YYYYMMDD`` or ``YYYY-MM-DD``.
    frame_number : int
        Running frame number of the night (0..9999).
    obstype : {"TARGET", "LAMPFLAT", "DOUBLE", "BIAS", "DARK"}
    compress : bool
        ``.fits.fz`` (True) or ``.fits``.
    """
    obstype = str(obstype).upper()
    if obstype not in OBSTYPE_CODES:
        msg = f"raw_filename: obstype must be one of {tuple(OBSTYPE_CODES)}, got {obstype!r}"
        raise InvalidParameterError(msg)
    unit = str(instrument).lower()
    if not (unit.startswith("nres") and unit[4:].isdigit()):
        msg = f"raw_filename: instrument must be an NRES unit nres01..nres04, got {instrument!r}"
        raise InvalidParameterError(msg)
    if not 0 <= int(frame_number) <= 9999:
        msg = f"raw_filename: frame_number must be in 0..9999, got {frame_number}"
        raise InvalidParameterError(msg)
    day = str(day_obs).replace("-", "")
    suffix = ".fits.fz" if compress else ".fits"
    code = OBSTYPE_CODES[obstype]
    return f"{site.lower()}nrs{unit[4:]}-{camera}-{day}-{int(frame_number):04d}-{code}00{suffix}"


def raw_window(frame, *, seed=0, bias_level=1000.0) -> CCDData:
    """A windowed raw frame (ADU, uint16, with overscan) from a windowed simulated frame.

    Parameters
    ----------
    frame : CCDData
        ``simulate(..., window=..., raw=False)`` output: electrons (read noise included), shape
        (ny, nx), header GAIN and RDNOISE, window origin NRESY0/NRESX0.
    seed : int
        Seed of the overscan read noise.
    bias_level : float
        Bias (ADU); like ``simulate(raw=True)`` it varies by +-1.5 ADU with full-detector row.

    Returns
    -------
    CCDData
        Shape (ny, nx + 58), uint16 ADU: ``frame / GAIN + bias`` rounded, then 58 overscan columns
        (bias + read noise). Header: BIASSEC ``[nx+1:nx+58,1:ny]``, TRIMSEC = DATASEC
        ``[1:nx,1:ny]``, CCDSEC the region read on the trimmed detector, the window origin kept.
        A window is statistically, not bit-for-bit, the crop of ``simulate(raw=True)``.
    """
    if not isinstance(frame, CCDData) or frame.ndim != 2 or frame.unit != u.electron:
        msg = "raw_window: frame must be a 2-D CCDData in electrons (simulate(..., raw=False))"
        raise InvalidParameterError(msg)
    meta = frame.meta
    gain, read_noise = float(meta["GAIN"]), float(meta["RDNOISE"])
    y0, x0 = window_origin(meta)
    ny, nx = frame.shape
    rows = (y0 + np.arange(ny, dtype=float))[:, None]
    bias = bias_level + 1.5 * np.sin(2.0 * np.pi * rows / 3000.0)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _RN_SEED]))
    overscan = bias + rng.normal(0.0, read_noise / gain, (ny, OVERSCAN_COLUMNS))
    adu = np.hstack([np.asarray(frame.data, dtype=float) / gain + bias, overscan])
    data = np.clip(np.round(adu), 0, 65535).astype(np.uint16)
    header = fits.Header()
    for card in fits.Header(meta).cards:
        if card.keyword not in _SKIP_FROM_FRAME:
            header.append(card, end=True)
    header["BIASSEC"] = f"[{nx + 1}:{nx + OVERSCAN_COLUMNS},1:{ny}]"
    header["TRIMSEC"] = header["DATASEC"] = f"[1:{nx},1:{ny}]"
    header["CCDSEC"] = header["DETSEC"] = f"[{x0 + 1}:{x0 + nx},{y0 + 1}:{y0 + ny}]"
    header = fits.Header(with_window_origin(header, y0, x0))
    record_provenance(header, "nres.sim.raw_window", seed=int(seed), bias_level=float(bias_level))
    return CCDData(data, unit=u.adu, meta=header)


def _check_frame(raw_frame, truth):
    if not isinstance(raw_frame, CCDData) or raw_frame.ndim != 2 or raw_frame.unit != u.adu:
        msg = "write_raw: raw_frame must be a 2-D CCDData in ADU (simulate(..., raw=True) or raw_window)"
        raise InvalidParameterError(msg)
    if not isinstance(truth, Truth):
        msg = f"write_raw: truth must be the Truth returned with the frame, got {type(truth).__name__}"
        raise InvalidParameterError(msg)
    obstype = str(raw_frame.meta.get("OBSTYPE", "")).upper()
    if obstype != truth.obstype:
        msg = f"write_raw: frame OBSTYPE {obstype!r} differs from truth.obstype {truth.obstype!r}"
        raise InvalidParameterError(msg)
    windowed = "NRESY0" in raw_frame.meta or "NRESX0" in raw_frame.meta
    if not windowed and raw_frame.shape != _FULL_SHAPE:
        msg = f"write_raw: a full raw frame must be {_FULL_SHAPE} (ny, nx), got {raw_frame.shape}"
        raise InvalidParameterError(msg)
    data = np.asarray(raw_frame.data)
    if data.dtype != np.uint16:
        if not np.all(np.isfinite(data)) or np.any(data < 0) or np.any(data > 65535) or np.any(data % 1):
            msg = "write_raw: raw_frame data must be integer ADU in 0..65535 (raw NRES data are uint16)"
            raise InvalidParameterError(msg)
        data = data.astype(np.uint16)
    return obstype, data


def _sexagesimal(angle, unit, precision):
    return angle.to_string(unit=unit, sep=":", precision=precision, pad=True, alwayssign=unit == u.deg)


def _target_cards(target, name, date_obs):
    """Main/TELESCOPE header cards of a target: pointing (at DATE-OBS) and catalogue position."""
    cards = {"OBJECT": name, "CAT-RA": _sexagesimal(target.ra, u.hourangle, 4)}
    cards["CAT-DEC"] = _sexagesimal(target.dec, u.deg, 3)
    epoch = target.obstime if target.obstime is not None else Time(2000.0, format="jyear")
    cards["CAT-EPOC"] = round(float(epoch.jyear), 6)
    has_pm = "s" in target.data.differentials
    if has_pm:
        cards["PM-RA"] = float(target.pm_ra_cosdec.to_value(u.arcsec / u.yr))
        cards["PM-DEC"] = float(target.pm_dec.to_value(u.arcsec / u.yr))
    has_distance = not isinstance(target.data, UnitSphericalRepresentation)
    if has_distance:
        cards["PARALLAX"] = float(target.distance.parallax.to_value(u.arcsec))
    pointing = target
    if has_pm and has_distance and target.obstime is not None:
        pointing = target.apply_space_motion(new_obstime=date_obs)
    cards["RA"] = _sexagesimal(pointing.ra, u.hourangle, 3)
    cards["DEC"] = _sexagesimal(pointing.dec, u.deg, 2)
    return cards


def _telescope_hdu(n, site, cards):
    from ..instrument.sites import get_site

    s = get_site(site)
    header = fits.Header()
    values = {
        "OBJECT": "N/A", "RA": "N/A", "DEC": "N/A", "CAT-RA": "N/A", "CAT-DEC": "N/A", "CAT-EPOC": "N/A",
        "PM-RA": "N/A", "PM-DEC": "N/A", "PARALLAX": "N/A", "RADESYS": "ICRS",
        "LONGITUD": s.longitude, "LATITUDE": s.latitude, "HEIGHT": s.height, "TELID": "N/A",
    }  # fmt: skip
    values.update(cards)
    for key, value in values.items():
        header[key] = value
    return fits.ImageHDU(header=header, name=f"TELESCOPE_{n}")


def _meter_hdu(truth, exptime, lit):
    """EXPOSURE_METER rows = the simulator's exposure-meter samples (mid-times in ``truth.mjd``)."""
    mjd = np.atleast_1d(np.asarray(truth.mjd if truth.mjd is not None else [], dtype=float))
    flux = np.atleast_1d(
        np.asarray(truth.flux_history if truth.flux_history is not None else [], dtype=float)
    )
    n = mjd.size
    dt = exptime / max(n, 1)
    counts = {}
    for fiber in (0, 1, 2):
        source = lit.get(fiber)
        if source == "star":
            counts[fiber] = np.round(flux * METER_COUNTS)
        elif source is not None:
            counts[fiber] = np.full(n, METER_COUNTS)  # lamps are steady
        else:
            counts[fiber] = np.zeros(n)
    columns = [
        fits.Column(name="MJD_START", format="D", array=mjd - 0.5 * dt / 86400.0),
        fits.Column(name="EXP_TIME", format="E", array=np.full(n, dt)),
        *(fits.Column(name=f"FIB{f}COUNTS", format="J", array=counts[f].astype(np.int32)) for f in (0, 1, 2)),
        fits.Column(name="EMFLAGS", format="J", array=np.zeros(n, dtype=np.int32)),
    ]
    hdu = fits.BinTableHDU.from_columns(columns, name="EXPOSURE_METER")
    hdu.header["EMCOUNTS"] = (METER_COUNTS, "counts per sample at relative flux 1")
    return hdu


def _agu_hdu(n):
    names = ("FILENAME", "JD_UTC", "N_SRCS", "SKYVAL", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")
    formats = ("30A", "D", "J", "E", "D", "D", "D", "D", "D", "D")
    cols = [fits.Column(name=c, format=f, array=np.zeros(0, dtype="U30" if f == "30A" else float))
            for c, f in zip(names, formats, strict=True)]  # fmt: skip
    hdu = fits.BinTableHDU.from_columns(cols, name=f"AGU_{n}", nrows=0)
    hdu.header["FILTER"] = ("N/A", "AGU filter")
    return hdu


def _lit(objects):
    out = {}
    for fiber, word in enumerate(objects.split("&")):
        w = word.strip().lower()
        if w in ("none", ""):
            continue
        out[fiber] = "thar" if w == "thar" else ("flat" if w == "tung" else "star")
    return out


def write_raw(
    raw_frame,
    truth,
    path,
    *,
    target=None,
    object_name=None,
    header=None,
    compress=True,
    overwrite=False,
) -> Path:
    """Write a simulated raw frame as a raw NRES composite data product.

    Parameters
    ----------
    raw_frame : CCDData
        ADU, shape (4108, 4160) from ``simulate(..., raw=True)``, or a windowed raw frame from
        :func:`raw_window`. Values must be integers in 0..65535 (stored as uint16).
    truth : Truth
        The truth returned with the frame: its exposure-meter times and flux history fill
        EXPOSURE_METER.
    path : str or os.PathLike
        Output file (``...-e00.fits.fz`` by convention; see :func:`raw_filename`).
    target : SkyCoord, optional
        The star of a TARGET frame (with proper motion, distance and ``obstime`` = catalogue epoch
        when known), written to the main header and to TELESCOPE_1 (star on fiber 0) or
        TELESCOPE_2 (fiber 2). Give the one passed to ``simulate``; default its default star
        (tau Ceti).
    object_name : str, optional
        Name of the star (replaces the star fiber's word in OBJECTS). Blanks are removed in
        OBJECTS as LCO does. Default: the name ``simulate`` wrote.
    header : dict, optional
        Extra or replacement main-header cards (e.g. ``{"FRAMENUM": 14, "DAY-OBS": "20190405"}``).
    compress : bool
        SPECTRUM as a RICE tile-compressed image (default, lossless on integers) or plain.
    overwrite : bool
        Replace an existing file (default: refuse).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    InvalidParameterError
        Not an ADU raw frame, shape or values wrong, OBSTYPE differs from the truth's, or the
        file exists and ``overwrite`` is False.
    """
    obstype, data = _check_frame(raw_frame, truth)
    path = Path(os.fspath(path))
    if path.exists() and not overwrite:
        msg = f"write_raw: {path} exists (pass overwrite=True to replace it)"
        raise InvalidParameterError(msg)
    meta = raw_frame.meta
    objects = str(meta.get("OBJECTS", "none&none&none"))
    lit = _lit(objects)
    star_fiber = next((f for f, s in lit.items() if s == "star"), None)
    cards = {key: meta[key] for key in meta if key not in ("", "COMMENT", "HISTORY")}
    cards.update(header or {})
    date_obs = Time(str(cards["DATE-OBS"]), format="isot", scale="utc")
    exptime = float(cards["EXPTIME"])
    name = path.name[: -len(".fz")] if path.name.endswith(".fz") else path.name
    from ..instrument.sites import get_site

    site = get_site(cards["SITEID"])
    stop = date_obs + exptime * u.s
    cards.update({
        "SITE": site.name, "ORIGNAME": name, "DATE": Time.now().strftime("%Y-%m-%d"),
        "UTSTART": date_obs.strftime("%H:%M:%S.%f")[:12], "UTSTOP": stop.strftime("%H:%M:%S.%f")[:12],
        "DETSEC": cards.get("DETSEC", cards.get("TRIMSEC")),
    })  # fmt: skip
    telescopes = {1: {}, 2: {}}
    if obstype == "TARGET" and star_fiber is not None:
        from .doppler import default_target

        target = default_target() if target is None else target
        if not isinstance(target, SkyCoord):
            msg = f"write_raw: target must be a SkyCoord, got {type(target).__name__}"
            raise InvalidParameterError(msg)
        words = objects.split("&")
        if object_name is not None:
            words[star_fiber] = str(object_name).replace(" ", "")
        star = words[star_fiber]
        cards["OBJECTS"] = "&".join(words)
        tcards = _target_cards(target, star if object_name is None else str(object_name), date_obs)
        telescopes[1 if star_fiber == 0 else 2] = tcards
        cards.update(tcards)
        cards["RA"] = float(target.ra.hour)  # main header: pointing RA in hours, Dec in degrees
        cards["DEC"] = float(target.dec.deg)
        cards["PROPID"], cards["AGU1POSN" if star_fiber == 0 else "AGU2POSN"] = "LCO2019A-000", "SKY"
    main = fits.Header()
    for key, default, comment in _TEMPLATE:
        value = cards.pop(key, default)
        value = value if value is not None else "N/A"
        width = max(len(value) + 2, 10) if isinstance(value, str) else 20  # FITS fixed-format value
        if comment is not None and 10 + width + 3 + len(comment) > 80:
            comment = None  # long values (site names) keep their card whole, without comment
        main[key] = (value, comment)
    for key, value in cards.items():  # simulator cards (NRESSIM, window origin, provenance...)
        if key.upper() not in main and key.upper() not in _SKIP_FROM_FRAME:
            main.append(fits.Card(key if len(key) <= 8 and " " not in key else f"HIERARCH {key}", value))
    image_cls = fits.CompImageHDU if compress else fits.ImageHDU
    kwargs = {"compression_type": "RICE_1"} if compress else {}
    spectrum = image_cls(data, header=main, name="SPECTRUM", **kwargs)
    hdus = fits.HDUList([
        fits.PrimaryHDU(), spectrum, _meter_hdu(truth, exptime, lit), _agu_hdu(1), _agu_hdu(2),
        _telescope_hdu(1, site.code, telescopes[1]), _telescope_hdu(2, site.code, telescopes[2]),
    ])  # fmt: skip
    return _atomic_write(hdus, path)


def _atomic_write(hdus, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        hdus.writeto(tmp, overwrite=True, checksum=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
