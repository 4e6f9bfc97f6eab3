"""``RawInfo``: what the header of a raw NRES composite data product says, validated and typed.

Built from the main header (the SPECTRUM header of a raw file) and the headers of the TELESCOPE_1
and TELESCOPE_2 extensions by :meth:`RawInfo.from_header`; :func:`nres.io.read_raw` calls it.
Names and formats follow the real LCO headers (``LCOGT-HDR-1.3.0``): see ``docs/io.md``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field

import astropy.units as u
from astropy.coordinates import Angle, Distance, EarthLocation, Latitude, SkyCoord
from astropy.time import Time

from .. import legacy as _legacy
from ..errors import InvalidInputFileError, InvalidParameterError, NRESError, NRESWarning
from .sections import parse_section

__all__ = ["RawInfo", "TargetInfo", "OBSTYPES", "OBSTYPE_ALIASES", "FIBER_OF_TELESCOPE"]

#: OBSTYPE values a raw NRES file may carry (after alias resolution). SPECTRUM and EXPERIMENTAL are
#: test types the original accepted (idl-calib-trace-extract.md 3.2); they are read but no recipe
#: reduces them.
OBSTYPES = ("BIAS", "DARK", "LAMPFLAT", "DOUBLE", "TARGET", "SPECTRUM", "EXPERIMENTAL")
#: Older names the original also accepted, mapped to the canonical ones.
OBSTYPE_ALIASES = {"FLAT": "LAMPFLAT", "ARC": "DOUBLE"}
#: Which fiber each telescope feeds: telescope 1 -> fiber 0, telescope 2 -> fiber 2
#: (idl-rv-ops.md 2: the original's star-fibre index 0 = fibre 0 = telescope 1).
FIBER_OF_TELESCOPE = {1: 0, 2: 2}

#: Registered name of the legacy options shared by read_raw and RawInfo.from_header.
LEGACY_FUNCTION = "read_raw"
_legacy.register(
    LEGACY_FUNCTION,
    "target_coordinates",
    choices=("catalog", "pointing"),
    default="catalog",
    legacy="pointing",
    reference="idl-rv-ops.md 3",
    summary="target position from the telescope pointing RA/DEC; the catalogue only when those are missing",
)
_legacy.register(
    LEGACY_FUNCTION,
    "dec_sign",
    choices=("kept", "idl"),
    default="kept",
    legacy="idl",
    reference="idl-calib-trace-extract.md 3.2",
    summary="ingest combined sexagesimal words as floats, so '-00:30:00' became +0.5 deg",
)

#: Header strings that mean "no value" (case-insensitive, after stripping blanks).
_NULL_TOKENS = {"", "n/a", "na", "nan", "unknown", "undef", "undefined", "none", "null"}
_CALIBRATION_LAMP = "thar"
_DAY_OBS = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_NRES_UNIT = re.compile(r"^nres\d+$")


def _is_null(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in _NULL_TOKENS
    if isinstance(value, float):
        return not math.isfinite(value)
    return False


def _fail(path, problem):
    return InvalidInputFileError(path, problem)


def _string(header, key, path, *, where="", required=True):
    value = header.get(key)
    if _is_null(value) or isinstance(value, bool):
        if required:
            raise _fail(path, f"missing required keyword {key}{where} (got {value!r})")
        return None
    return str(value).strip()


def _number(header, key, path, *, where="", required=True):
    """A finite float from a numeric card or a numeric string; None if null and not required."""
    value = header.get(key)
    if _is_null(value):
        if required:
            raise _fail(path, f"missing required keyword {key}{where} (got {value!r})")
        return None
    if isinstance(value, bool):
        raise _fail(path, f"keyword {key}{where} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(path, f"keyword {key}{where} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise _fail(path, f"keyword {key}{where} must be finite, got {value!r}")
    return number


@dataclass(frozen=True, eq=False)
class TargetInfo:
    """The object a telescope fed into one science fiber, from a TELESCOPE_1/2 extension.

    Attributes
    ----------
    name : str
        OBJECT of the telescope extension (else the fiber's OBJECTS word).
    fiber : int
        Fiber id (0 for telescope 1, 2 for telescope 2).
    telescope : int
        1 or 2 (the extension TELESCOPE_<n>).
    coord : astropy.coordinates.SkyCoord
        ICRS position; proper motions (``pm_ra_cosdec``, ``pm_dec``) and distance (from a positive
        PARALLAX) when the header gives them; ``obstime`` is the epoch of the position (CAT-EPOC,
        J2000 if absent, for catalogue coordinates; DATE-OBS for pointing coordinates).
    coord_source : str
        ``"catalog"`` (CAT-RA/CAT-DEC, the requested position) or ``"pointing"`` (RA/DEC, where the
        telescope pointed; used only when the catalogue position is missing).
    location : astropy.coordinates.EarthLocation or None
        The telescope (LONGITUD east, LATITUDE, HEIGHT), None if the header has no position.
    """

    name: str
    fiber: int
    telescope: int
    coord: SkyCoord
    coord_source: str
    location: EarthLocation | None = None


@dataclass(frozen=True, eq=False)
class RawInfo:
    """Validated facts from the header of one raw NRES frame.

    Attributes
    ----------
    obstype : str
        Upper case, one of :data:`OBSTYPES` (FLAT is read as LAMPFLAT, ARC as DOUBLE).
    site : str
        SITEID, lower case (``lsc``, ``elp``, ``cpt``, ``tlv``, ``bpl``).
    instrument : str
        TELESCOP, the spectrograph unit, lower case (``nres01`` .. ``nres04``).
    camera : str
        INSTRUME, the CCD camera (``fa09``, ``fl13``...).
    day_obs : str
        DAY-OBS as ``YYYYMMDD`` (the local observing night).
    date_obs : astropy.time.Time
        DATE-OBS, start of the exposure, UTC.
    mjd_obs : float
        MJD-OBS as written by the camera (d); ``date_obs.mjd`` if the header has none. The two
        can differ by seconds in real headers; the original pipeline used MJD-OBS.
    exptime : float
        EXPTIME (s).
    gain : float
        GAIN (e-/ADU), else the camera table.
    read_noise : float
        RDNOISE (e-), else the camera table.
    saturation : float
        SATURATE (ADU), else the camera table.
    max_linear : float
        MAXLIN (ADU), the non-linearity level, else the camera table.
    biassec, trimsec : str
        BIASSEC and TRIMSEC (DATASEC if there is no TRIMSEC), FITS 1-based sections.
    bias_slices, trim_slices : (slice, slice)
        The same sections as 0-based numpy ``(y, x)`` slices of the raw image.
    fiber_objects : tuple of (str or None)
        OBJECTS split on ``&``: the object name on fibers 0, 1, 2, None where ``none``.
    lit_fibers : tuple of int
        Fibers with an object.
    thar_fibers : tuple of int
        Fibers lit by the ThAr lamp (word ``thar``); in TARGET frames the calibration fiber 1.
    science_fiber : int or None
        TARGET frames: the fiber (0 or 2) carrying the star, 0 when both do. None otherwise.
    targets : dict of int -> TargetInfo
        TARGET frames: per star fiber, the object and its position from TELESCOPE_1 (fiber 0) or
        TELESCOPE_2 (fiber 2). Fibers whose extension or coordinates are missing have no entry.
    """

    obstype: str
    site: str
    instrument: str
    camera: str
    day_obs: str
    date_obs: Time
    mjd_obs: float
    exptime: float
    gain: float
    read_noise: float
    saturation: float
    max_linear: float
    biassec: str
    trimsec: str
    bias_slices: tuple
    trim_slices: tuple
    fiber_objects: tuple
    lit_fibers: tuple
    thar_fibers: tuple
    science_fiber: int | None
    targets: dict = field(default_factory=dict)

    @property
    def fiber_state(self) -> str:
        """Lit fibers as three digits, fiber 0 first (``"011"`` = fibers 1 and 2 lit)."""
        return "".join("0" if name is None else "1" for name in self.fiber_objects)

    @classmethod
    def from_header(
        cls, header, *, telescopes=None, path=None, target_coordinates=None, dec_sign=None, legacy=False
    ) -> RawInfo:
        """Build a ``RawInfo`` from the main header of a raw frame.

        Parameters
        ----------
        header : astropy.io.fits.Header or dict-like
            Main header (the SPECTRUM header, merged with the primary header of fpacked files).
        telescopes : dict of int -> header, optional
            Headers of TELESCOPE_1 and TELESCOPE_2 by telescope number, for the target records.
        path : str or Path, optional
            The file, named in error messages.
        target_coordinates : {"catalog", "pointing"}, optional
            Which TELESCOPE position a target record takes first: the requested catalogue position
            CAT-RA/CAT-DEC (default) or, as the original did, the telescope pointing RA/DEC. Either
            falls back to the other when missing.
        dec_sign : {"kept", "idl"}, optional
            ``"kept"`` (default) parses declinations correctly; ``"idl"`` reproduces the original's
            loss of the sign of ``-00:MM:SS`` declinations.
        legacy : bool, optional
            Shorthand for the original's behaviour of both options above (explicit values win).

        Returns
        -------
        RawInfo

        Raises
        ------
        InvalidInputFileError
            A required keyword is missing or malformed, OBSTYPE is not an NRES type, OBJECTS is not
            three ``&``-separated names, or a TARGET frame has no star on fiber 0 or 2.
        """
        opts = _legacy.resolve(
            LEGACY_FUNCTION, legacy, target_coordinates=target_coordinates, dec_sign=dec_sign
        )
        obstype = _obstype(header, path)
        instrument = _string(header, "TELESCOP", path).lower()
        if not _NRES_UNIT.match(instrument):
            raise _fail(path, f"TELESCOP {instrument!r} is not an NRES unit (expected nres01..nres04)")
        date_obs = _date_obs(header, path)
        mjd = _number(header, "MJD-OBS", path, required=False)
        exptime = _number(header, "EXPTIME", path)
        if exptime < 0:
            raise _fail(path, f"EXPTIME must be >= 0 s, got {exptime}")
        camera = _string(header, "INSTRUME", path)
        detector = _detector_values(header, camera, path)
        biassec = _string(header, "BIASSEC", path)
        trim_key = "TRIMSEC" if not _is_null(header.get("TRIMSEC")) else "DATASEC"
        trimsec = _string(header, trim_key, path, where=" (nor TRIMSEC)" if trim_key == "DATASEC" else "")
        objects = _fiber_objects(header, obstype, path)
        science_fiber = _science_fiber(objects, obstype, header, path)
        lit = tuple(f for f, name in enumerate(objects) if name is not None)
        thar = tuple(f for f, name in enumerate(objects) if name is not None and name.lower() == "thar")
        targets = {}
        if obstype == "TARGET":
            for telescope, fiber in FIBER_OF_TELESCOPE.items():
                tel_header = (telescopes or {}).get(telescope)
                if fiber in _star_fibers(objects) and tel_header is not None:
                    record = _target(tel_header, telescope, fiber, objects[fiber], date_obs, path, **opts)
                    if record is not None:
                        targets[fiber] = record
        return cls(
            obstype=obstype,
            site=_string(header, "SITEID", path).lower(),
            instrument=instrument,
            camera=camera,
            day_obs=_day_obs(header, path),
            date_obs=date_obs,
            mjd_obs=float(date_obs.mjd) if mjd is None else mjd,
            exptime=exptime,
            **detector,
            biassec=biassec,
            trimsec=trimsec,
            bias_slices=_section(biassec, "BIASSEC", path),
            trim_slices=_section(trimsec, trim_key, path),
            fiber_objects=objects,
            lit_fibers=lit,
            thar_fibers=thar,
            science_fiber=science_fiber,
            targets=targets,
        )


def _obstype(header, path) -> str:
    raw = _string(header, "OBSTYPE", path).upper()
    obstype = OBSTYPE_ALIASES.get(raw, raw)
    if obstype not in OBSTYPES:
        accepted = ", ".join(OBSTYPES + tuple(OBSTYPE_ALIASES))
        raise _fail(path, f"unknown OBSTYPE {raw!r}; expected one of {accepted}")
    return obstype


def _date_obs(header, path) -> Time:
    text = _string(header, "DATE-OBS", path)
    try:
        return Time(text, format="isot", scale="utc")
    except ValueError:
        raise _fail(path, f"DATE-OBS {text!r} is not an ISO date-time (YYYY-MM-DDThh:mm:ss[.sss])") from None


def _day_obs(header, path) -> str:
    text = _string(header, "DAY-OBS", path)
    match = _DAY_OBS.match(text)
    if match is None:
        raise _fail(path, f"DAY-OBS {text!r} is not a date YYYYMMDD")
    return "".join(match.groups())


def _section(text, key, path):
    try:
        return parse_section(text, name=key)
    except InvalidParameterError as err:
        raise _fail(path, str(err)) from None


def _camera_facts(camera):
    """The camera table's entry for ``camera`` (nres.instrument), or None if it has none."""
    try:
        from ..instrument import camera_info

        return camera_info(camera)
    except (ImportError, AttributeError, LookupError, ValueError, NRESError):
        return None


#: RawInfo field -> (header keyword, CameraInfo attribute, smallest valid value, open bound?)
_DETECTOR_KEYS = {
    "gain": ("GAIN", "gain", 0.0, True),
    "read_noise": ("RDNOISE", "read_noise", 0.0, False),
    "saturation": ("SATURATE", "saturation", 0.0, True),
    "max_linear": ("MAXLIN", "max_linear", 0.0, True),
}


def _detector_values(header, camera, path) -> dict:
    """Header first; the camera table only for keywords the header lacks (or gives as 0/N/A)."""
    out, facts = {}, None
    for name, (key, attr, low, open_bound) in _DETECTOR_KEYS.items():
        value = _number(header, key, path, required=False)
        if value is not None and (value <= low if open_bound else value < low):
            value = None  # LCO headers write 0 for "not measured": fall back like a missing value
        if value is None:
            facts = _camera_facts(camera) if facts is None else facts
            fallback = getattr(facts, attr, None) if facts is not None else None
            if fallback is None:
                problem = f"missing required keyword {key} (camera table: no {attr} for {camera!r})"
                raise _fail(path, problem)
            value = float(fallback)
        out[name] = value
    return out


def _fiber_objects(header, obstype, path) -> tuple:
    value = header.get("OBJECTS")
    if _is_null(value) and obstype in ("BIAS", "DARK"):
        return (None, None, None)  # no light reaches the detector: OBJECTS carries nothing
    if not isinstance(value, str) or _is_null(value):
        raise _fail(path, f"missing required keyword OBJECTS (got {value!r})")
    words = [w.strip() for w in value.split("&")]
    if len(words) != 3 or any(w == "" for w in words):
        raise _fail(
            path,
            f"cannot parse OBJECTS {value!r}: expected three '&'-separated object names for fibers "
            "0, 1, 2 ('none' for a dark fiber), e.g. 'HD 1234&thar&none'",
        )
    return tuple(None if w.lower() == "none" else w for w in words)


def _star_fibers(objects) -> tuple:
    return tuple(f for f in (0, 2) if objects[f] is not None and objects[f].lower() != _CALIBRATION_LAMP)


def _science_fiber(objects, obstype, header, path):
    if obstype != "TARGET":
        return None
    stars = _star_fibers(objects)
    if not stars:
        raise _fail(
            path,
            f"TARGET frame with OBJECTS {header.get('OBJECTS')!r}: no star on fiber 0 or 2 "
            "(expected an object name other than 'none'/'thar' in the first or last word)",
        )
    return stars[0]


def _normalise_name(name: str) -> str:
    # the original compared names upper-cased, blanks removed, truncated at '_' (idl-rv-ops.md 2)
    return name.split("_")[0].replace(" ", "").upper()


_POSITION_KEYS = {"catalog": ("CAT-RA", "CAT-DEC"), "pointing": ("RA", "DEC")}


def _target(tel, telescope, fiber, fiber_name, date_obs, path, *, target_coordinates, dec_sign):
    where = f" in TELESCOPE_{telescope}"
    order = ("catalog", "pointing") if target_coordinates == "catalog" else ("pointing", "catalog")
    usable = [s for s in order if not any(_is_null(tel.get(k)) for k in _POSITION_KEYS[s])]
    if not usable:
        return None  # no usable position: no target record, not a crash (the original's bug)
    source = usable[0]
    ra_key, dec_key = _POSITION_KEYS[source]
    ra = _angle(tel[ra_key], u.hourangle, ra_key + where, path)
    if dec_sign == "idl" and isinstance(tel[dec_key], str):
        dec = _idl_declination(tel[dec_key], dec_key + where, path)
    else:
        dec = _angle(tel[dec_key], u.deg, dec_key + where, path)
    try:
        dec = Latitude(dec)
    except ValueError:
        raise _fail(path, f"{dec_key}{where} = {tel[dec_key]!r} is outside -90..+90 deg") from None
    kwargs = {}
    pm_ra = _number(tel, "PM-RA", path, where=where, required=False)
    pm_dec = _number(tel, "PM-DEC", path, where=where, required=False)
    if pm_ra is not None and pm_dec is not None:
        # LCO headers give proper motions in arcsec/yr, the RA one already times cos(Dec)
        kwargs["pm_ra_cosdec"] = pm_ra * 1000.0 * u.mas / u.yr
        kwargs["pm_dec"] = pm_dec * 1000.0 * u.mas / u.yr
    parallax = _number(tel, "PARALLAX", path, where=where, required=False)
    if parallax is not None and parallax > 0:
        kwargs["distance"] = Distance(parallax=parallax * u.arcsec)
    if source == "catalog":
        epoch = _number(tel, "CAT-EPOC", path, where=where, required=False)
        obstime = Time(2000.0 if epoch is None else epoch, format="jyear")
    else:
        obstime = date_obs
    coord = SkyCoord(ra=ra, dec=dec, frame="icrs", obstime=obstime, **kwargs)
    name = _string(tel, "OBJECT", path, required=False) or fiber_name
    if _normalise_name(name) != _normalise_name(fiber_name):
        msg = (
            f"{path}: TELESCOPE_{telescope} OBJECT {name!r} differs from fiber {fiber}'s OBJECTS word "
            f"{fiber_name!r}; telescope {telescope} is taken to feed fiber {fiber}"
        )
        warnings.warn(msg, NRESWarning, stacklevel=4)
    return TargetInfo(name, fiber, telescope, coord, source, _location(tel, where, path))


def _angle(value, unit, key, path) -> Angle:
    """Sexagesimal string (sign kept, even for '-00:30:00') or a number (RA in hours, Dec in deg)."""
    try:
        if isinstance(value, str):
            return Angle(value.strip(), unit=unit)
        return Angle(float(value), unit=unit)
    except (ValueError, TypeError, u.UnitsError):
        raise _fail(path, f"{key} = {value!r} is not an angle (sexagesimal or a number)") from None


def _idl_declination(text, key, path) -> Angle:
    """The original's reading: each ':' word as a float, negative only if a word is < 0 (so the
    sign of '-00:30:00' is lost, since float('-00') is -0.0, which is not < 0)."""
    try:
        words = [float(w) for w in text.strip().split(":")]
    except ValueError:
        raise _fail(path, f"{key} = {text!r} is not a sexagesimal angle") from None
    value = sum(abs(w) / 60.0**i for i, w in enumerate(words))
    return Angle(-value if any(w < 0 for w in words) else value, unit=u.deg)


def _location(tel, where, path) -> EarthLocation | None:
    lon = _number(tel, "LONGITUD", path, where=where, required=False)
    lat = _number(tel, "LATITUDE", path, where=where, required=False)
    height = _number(tel, "HEIGHT", path, where=where, required=False)
    if lon is None or lat is None:
        return None
    try:
        return EarthLocation.from_geodetic(lon * u.deg, lat * u.deg, (height or 0.0) * u.m)
    except ValueError:
        raise _fail(path, f"LATITUDE{where} = {lat!r} is outside -90..+90 deg") from None
