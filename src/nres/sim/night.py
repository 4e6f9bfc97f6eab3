"""``simulate_night``: a whole simulated NRES night on disk, laid out like the LCO archive.

``<out_dir>/<site>/<nres0N>/<DAY-OBS>/raw/`` receives one raw file per frame
(``lscnrs01-fa09-20190405-0003-b00.fits.fz``...), and ``<out_dir>/<site>/<nres0N>/<DAY-OBS>/
night_truth.ecsv`` lists every file with what was injected (obstype, fibers, target, RV, z_B...).
Frames are simulated and written one at a time, so memory stays that of one frame.

Timing follows a real night at the site: calibrations (bias, dark, lamp flats of both fiber
pairs, ThAr arcs of both pairs) split between dusk (from 17:00 local mean solar time) and dawn
(from 06:00), science exposures from 19:00, 45 s of readout and overheads between frames.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Distance, SkyCoord
from astropy.table import Table
from astropy.time import Time

from ..doppler import z_from_velocity
from ..errors import InvalidParameterError
from .config import DEFAULT_EXPTIME, SITE_INSTRUMENTS, SimConfig
from .raw_file import raw_filename, raw_window, write_raw

__all__ = ["simulate_night", "NightTarget", "DEFAULT_TARGETS", "TRUTH_NAME"]

#: Name of the truth table written beside the ``raw/`` directory.
TRUTH_NAME = "night_truth.ecsv"
#: Seconds between the end of one exposure and the start of the next (readout, overheads).
OVERHEAD_S = 45.0
_DUSK_H, _SCIENCE_H, _DAWN_H = -7.0, -5.0, 6.0  # hours from local mean midnight
_J2000 = Time(2000.0, format="jyear", scale="tdb")


@dataclass(frozen=True)
class NightTarget:
    """A star observed during a simulated night.

    Attributes
    ----------
    name : str
        Object name (OBJECTS and TELESCOPE_n OBJECT; blanks removed in OBJECTS).
    coord : SkyCoord
        ICRS catalogue position with proper motion, distance (parallax) and epoch (``obstime``).
    rv : Quantity
        Barycentric radial velocity injected (``z_star = rv / c``).
    n_exposures : int
        Exposures taken during the night.
    exptime : float
        Seconds per exposure.
    fiber : {0, 2}
        Science fiber (0: telescope 1, 2: telescope 2).
    standard : bool
        A radial-velocity standard (the star a ZERO template is built from).
    """

    name: str
    coord: SkyCoord
    rv: u.Quantity
    n_exposures: int = 3
    exptime: float = 600.0
    fiber: int = 0
    standard: bool = False


def _star(ra, dec, pm_ra, pm_dec, plx):
    return SkyCoord(
        ra=ra * u.deg,
        dec=dec * u.deg,
        pm_ra_cosdec=pm_ra * u.mas / u.yr,
        pm_dec=pm_dec * u.mas / u.yr,
        distance=Distance(parallax=plx * u.mas),
        obstime=_J2000,
    )


#: Default stars: tau Ceti (standard) and two nearby dwarfs; astrometry rounded from Hipparcos
#: (van Leeuwen 2007), RVs rounded literature values. The truth table records exactly what was used.
DEFAULT_TARGETS = (
    NightTarget("HD 10700", _star(26.0170, -15.9375, -1721.05, 854.16, 273.96), -16.6 * u.km / u.s,
                standard=True),
    NightTarget("HD 20794", _star(49.9818, -43.0698, 3038.34, 726.58, 165.47), 87.9 * u.km / u.s),
    NightTarget("HD 85512", _star(147.7794, -43.5028, 461.28, -472.87, 89.67), -9.5 * u.km / u.s,
                fiber=2),
)  # fmt: skip


def _check(site, day_obs, counts, targets, window):
    site = str(site).lower()
    if site not in SITE_INSTRUMENTS:
        msg = f"simulate_night: site must be one of {tuple(SITE_INSTRUMENTS)}, got {site!r}"
        raise InvalidParameterError(msg)
    try:
        day = Time(str(day_obs).replace("/", "-"), format="iso", scale="utc")
    except ValueError:
        day = None
    if day is None or len(str(day_obs).replace("-", "")) != 8:
        msg = f"simulate_night: day_obs must be a date 'YYYY-MM-DD' or 'YYYYMMDD', got {day_obs!r}"
        raise InvalidParameterError(msg)
    for name, n in counts.items():
        if int(n) != n or n < 0:
            msg = f"simulate_night: {name} must be an integer >= 0, got {n!r}"
            raise InvalidParameterError(msg)
    for t in targets:
        if not isinstance(t, NightTarget) or t.fiber not in (0, 2) or t.n_exposures < 0 or t.exptime <= 0:
            msg = f"simulate_night: targets must be NightTarget with fiber 0 or 2, exptime > 0; got {t!r}"
            raise InvalidParameterError(msg)
    if window is not None and not isinstance(window, dict) and len(tuple(window)) != 4:
        msg = f"simulate_night: window must be None, (y0, y1, x0, x1) or a dict of orders, got {window!r}"
        raise InvalidParameterError(msg)
    return site, day


def _plan(day, longitude, counts, targets):
    """Ordered list of frames: (obstype, fibers, exptime, target or None, mjd start)."""
    midnight = day.mjd + 1.0 - longitude / 360.0  # local mean solar midnight, as UTC MJD
    halves = {}
    for name, n in counts.items():
        halves[name] = (math.ceil(n / 2), n - math.ceil(n / 2))  # dusk, dawn
    calib = []
    for part in (0, 1):
        calib.append(
            [("BIAS", (0, 1), None)] * halves["n_bias"][part]
            + [("DARK", (0, 1), None)] * halves["n_dark"][part]
            + [("LAMPFLAT", pair, None) for pair in ((0, 1), (1, 2)) for _ in range(halves["n_flat"][part])]
            + [("DOUBLE", pair, None) for pair in ((0, 1), (1, 2)) for _ in range(halves["n_arc"][part])]
        )
    science = []
    rounds = max((t.n_exposures for t in targets), default=0)
    for k in range(rounds):  # stars visited in turn, as a queue scheduler would interleave them
        science += [("TARGET", (0, 1) if t.fiber == 0 else (1, 2), t) for t in targets if k < t.n_exposures]
    plan = []
    t = midnight + _DUSK_H / 24.0
    for blocks, start in ((calib[0], None), (science, _SCIENCE_H), (calib[1], _DAWN_H)):
        if start is not None:
            t = max(t, midnight + start / 24.0)
        for obstype, fibers, target in blocks:
            exptime = target.exptime if target is not None else DEFAULT_EXPTIME[obstype]
            plan.append((obstype, fibers, exptime, target, t))
            t += (exptime + OVERHEAD_S) / 86400.0
    return plan


def simulate_night(
    site,
    day_obs,
    out_dir,
    *,
    n_bias=5,
    n_dark=3,
    n_flat=2,
    n_arc=2,
    targets=DEFAULT_TARGETS,
    window=None,
    seed=0,
    compress=True,
    overwrite=False,
    config=None,
    progress=True,
) -> Path:
    """Simulate a night of raw NRES files in the archive layout, with a truth table.

    Parameters
    ----------
    site : {"lsc", "elp", "cpt"}
        NRES site (unit and camera from :data:`~nres.sim.config.SITE_INSTRUMENTS`).
    day_obs : str
        DAY-OBS of the night, ``"2019-04-05"`` or ``"20190405"`` (the local date at its start).
    out_dir : str or os.PathLike
        Root: files go to ``<out_dir>/<site>/<nres0N>/<YYYYMMDD>/raw/``.
    n_bias, n_dark : int
        Bias and dark frames (half at dusk, half at dawn).
    n_flat, n_arc : int
        Lamp flats and ThAr arcs (DOUBLE) *per fiber pair* (0, 1) and (1, 2).
    targets : sequence of NightTarget
        Stars, their RVs and exposures (default :data:`DEFAULT_TARGETS`: tau Ceti as the standard
        plus two stars, 3 exposures each). Each star keeps one stellar template all night.
    window : (y0, y1, x0, x1) or dict or None
        Full-size frames (None, 4108 x 4160 with overscan) or windowed raw files (see
        :func:`~nres.sim.raw_window`); same forms as ``simulate(window=...)``.
    seed : int
        Master seed; each frame's seed derives from it and the frame number.
    compress : bool
        ``.fits.fz`` (default) or plain ``.fits``.
    overwrite : bool
        Replace existing files of the same names.
    config : SimConfig, optional
        Simulator parameters for every frame.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    pathlib.Path
        The truth table ``<out_dir>/<site>/<nres0N>/<YYYYMMDD>/night_truth.ecsv``: one row per file
        (``filename``, ``obstype``, ``frame_number``, ``mjd_obs``, ``exptime``, ``objects``,
        ``fibers`` (lit fibers as "011"), ``science_fiber`` (-1 if none), ``target``,
        ``standard``, ``ra``/``dec`` (deg), ``pm_ra_cosdec``/``pm_dec`` (mas/yr), ``parallax``
        (mas), ``rv`` (m/s), ``z_star``, ``z_b`` (flux-weighted), ``z_obs``, ``seed``,
        ``window`` (y0, y1, x0, x1)); the night's parameters in its meta.
    """
    from tqdm.auto import tqdm

    from ..instrument.sites import get_site
    from .core import simulate
    from .star import StellarSpectrum

    targets = tuple(targets)
    counts = {"n_bias": n_bias, "n_dark": n_dark, "n_flat": n_flat, "n_arc": n_arc}
    site, day = _check(site, day_obs, counts, targets, window)
    cfg = config or SimConfig()
    unit, camera = SITE_INSTRUMENTS[site]
    camera = cfg.camera or camera
    day_text = day.strftime("%Y%m%d")
    night_dir = Path(out_dir) / site / unit / day_text
    raw_dir = night_dir / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(day, get_site(site).longitude, counts, targets)
    templates = {}
    rows = []
    bar = tqdm(plan, desc=f"{site} {day_text}", unit="frame", disable=not progress)
    for number, (obstype, fibers, exptime, target, mjd) in enumerate(bar, start=1):
        frame_seed = int(np.random.SeedSequence([int(seed), number]).generate_state(1)[0] >> 1)
        kwargs = {}
        if target is not None:
            if target.name not in templates:  # one stellar spectrum per star, fixed by its name
                templates[target.name] = StellarSpectrum(seed=zlib.crc32(target.name.encode()))
            kwargs = {"rv": target.rv, "target": target.coord, "template": templates[target.name]}
        frame, truth = simulate(
            obstype, site=site, seed=frame_seed, window=window, raw=window is None, mjd=mjd,
            exptime=exptime, fibers=fibers, config=cfg, **kwargs,
        )  # fmt: skip
        if window is not None:
            frame = raw_window(frame, seed=frame_seed, bias_level=cfg.bias_level)
        name = raw_filename(site, unit, camera, day_text, number, obstype, compress=compress)
        extra = {"DAY-OBS": day_text, "FRAMENUM": number, "MOLNUM": number}
        write_raw(
            frame, truth, raw_dir / name, target=None if target is None else target.coord,
            object_name=None if target is None else target.name, header=extra, compress=compress,
            overwrite=overwrite,
        )  # fmt: skip
        rows.append(_row(name, number, obstype, fibers, exptime, mjd, target, truth, frame_seed))
        del frame, truth  # one frame in memory at a time
    table = Table(rows=rows) if rows else Table()
    _units(table)
    table.meta.update({
        "site": site, "instrument": unit, "camera": camera, "day_obs": day_text, "seed": int(seed),
        "window": None if window is None else (dict(window) if isinstance(window, dict) else list(window)),
        **counts, "raw_dir": "raw", "z_convention": "1 + z_obs = (1 + z_star) / (1 + z_b)",
    })  # fmt: skip
    out = night_dir / TRUTH_NAME
    table.write(out, format="ascii.ecsv", overwrite=True)
    return out


def _row(name, number, obstype, fibers, exptime, mjd, target, truth, frame_seed):
    lit = {"BIAS": (), "DARK": ()}.get(obstype, fibers)
    star_fiber = -1
    if target is not None:
        star_fiber = target.fiber
    c = target.coord if target is not None else None
    return {
        "filename": name,
        "frame_number": number,
        "obstype": obstype,
        "mjd_obs": float(mjd),
        "exptime": float(exptime),
        "fibers": "".join("1" if f in lit else "0" for f in (0, 1, 2)),
        "science_fiber": star_fiber,
        "target": "" if target is None else target.name,
        "standard": bool(target is not None and target.standard),
        "ra": np.nan if c is None else float(c.ra.deg),
        "dec": np.nan if c is None else float(c.dec.deg),
        "pm_ra_cosdec": np.nan if c is None else float(c.pm_ra_cosdec.to_value(u.mas / u.yr)),
        "pm_dec": np.nan if c is None else float(c.pm_dec.to_value(u.mas / u.yr)),
        "parallax": np.nan if c is None else float(c.distance.parallax.to_value(u.mas)),
        "rv": 0.0 if target is None else float(target.rv.to_value(u.m / u.s)),
        "z_star": 0.0 if target is None else float(z_from_velocity(target.rv)),
        "z_b": float(truth.z_b),
        "z_obs": float(truth.z_obs),
        "seed": frame_seed,
        "window": np.asarray(truth.window, dtype=np.int64),
    }


_UNITS = {"exptime": u.s, "ra": u.deg, "dec": u.deg, "pm_ra_cosdec": u.mas / u.yr, "pm_dec": u.mas / u.yr,
          "parallax": u.mas, "rv": u.m / u.s, "mjd_obs": u.d}  # fmt: skip


def _units(table):
    for col, unit in _UNITS.items():
        if col in table.colnames:
            table[col].unit = unit
