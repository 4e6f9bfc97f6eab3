"""The pipeline database: processed frames, master calibrations, targets, ZERO templates, RV results.

SQL through SQLAlchemy 2 (ORM, declarative models). An SQLite file is the embedded default and any
SQLAlchemy URL (``postgresql://...``) is accepted. It replaces the original's CSV tables
(``standards.csv``, ``zeros.csv``, ``targets.csv``, ``rv.csv``; idl-rv-ops.md 24) and its one-table
``processingstate`` database (idl-rv-ops.md 21), and imports/exports the CSV tables
(:mod:`nres.pipeline.legacy_csv`).

Only the driver process writes: batch tasks are pure functions (paths in, product paths + QC out)
and the driver records their results (:mod:`nres.pipeline.batch`). A :class:`Database` therefore
refuses to be pickled, so it cannot be shipped to a worker by mistake.

Calibration *choice* is not made here: :meth:`Database.select_calibration` hands
:meth:`Database.calibrations_table` to :func:`nres.calib.select.select_calibration`.
"""

from __future__ import annotations

import math
import numbers
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .._version import __version__
from ..errors import InvalidParameterError, MissingCalibrationError, NRESError

__all__ = [
    "Database",
    "Base",
    "Frame",
    "Calibration",
    "Target",
    "ZeroTemplate",
    "RVRecord",
    "DEFAULT_URL",
    "normalise_target_name",
    "jsonable",
]

#: Default database: an SQLite file in the current directory (created on first use).
DEFAULT_URL = "sqlite:///nres.sqlite"


class Base(DeclarativeBase):
    """Declarative base of the nres tables."""


class Frame(Base):
    """One attempt history per raw file content (checksum): the last attempt's outcome."""

    __tablename__ = "frames"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255), index=True)
    #: md5 of the file's bytes (as the original): a changed file is a new frame
    checksum: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    obstype: Mapped[str | None] = mapped_column(String(32), index=True)
    site: Mapped[str | None] = mapped_column(String(16))
    instrument: Mapped[str | None] = mapped_column(String(16))
    camera: Mapped[str | None] = mapped_column(String(16))
    date_obs: Mapped[datetime | None] = mapped_column(DateTime)
    mjd_obs: Mapped[float | None] = mapped_column(Float)
    day_obs: Mapped[str | None] = mapped_column(String(8))
    fiber_state: Mapped[str | None] = mapped_column(String(3))
    stage: Mapped[str | None] = mapped_column(String(32))
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    products: Mapped[list] = mapped_column(JSON, default=list)
    qc: Mapped[dict] = mapped_column(JSON, default=dict)
    nres_version: Mapped[str] = mapped_column(String(32), default=__version__)
    processed_at: Mapped[datetime] = mapped_column(DateTime)


class Calibration(Base):
    """A calibration product (single frame or master) usable by later frames."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: BIAS, DARK, LAMPFLAT, DOUBLE, TRACE, TRIPLE, BLAZE... (upper case)
    obstype: Mapped[str] = mapped_column(String(32), index=True)
    site: Mapped[str] = mapped_column(String(16))
    instrument: Mapped[str] = mapped_column(String(16))
    camera: Mapped[str] = mapped_column(String(16))
    #: MJD of the first and last input frame; ``mjd_obs`` = their mean (used for selection)
    mjd_start: Mapped[float] = mapped_column(Float)
    mjd_end: Mapped[float] = mapped_column(Float)
    mjd_obs: Mapped[float] = mapped_column(Float, index=True)
    fiber_state: Mapped[str] = mapped_column(String(3), default="")
    is_bad: Mapped[bool] = mapped_column(Boolean, default=False)
    path: Mapped[str] = mapped_column(Text)
    nframes: Mapped[int] = mapped_column(Integer, default=1)
    binning: Mapped[str] = mapped_column(String(8), default="1 1")
    #: the original's 4-character standards.csv flags when imported from it (kept for export)
    flags: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Target(Base):
    """A star of the target list (the original's targets.csv)."""

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    #: :func:`normalise_target_name` of ``name``: the lookup key
    #: not unique: the original's list names 31 stars twice (with different magnitudes)
    key: Mapped[str] = mapped_column(String(64), index=True)
    ra: Mapped[float] = mapped_column(Float)  # deg, ICRS
    dec: Mapped[float] = mapped_column(Float)  # deg
    vmag: Mapped[float | None] = mapped_column(Float)
    bmag: Mapped[float | None] = mapped_column(Float)
    gmag: Mapped[float | None] = mapped_column(Float)
    rmag: Mapped[float | None] = mapped_column(Float)
    imag: Mapped[float | None] = mapped_column(Float)
    jmag: Mapped[float | None] = mapped_column(Float)
    kmag: Mapped[float | None] = mapped_column(Float)
    pmra: Mapped[float | None] = mapped_column(Float)  # mas/yr, times cos(dec)
    pmdec: Mapped[float | None] = mapped_column(Float)  # mas/yr
    parallax: Mapped[float | None] = mapped_column(Float)  # mas
    rv: Mapped[float | None] = mapped_column(Float)  # catalogue RV, km/s
    teff: Mapped[float | None] = mapped_column(Float)  # K
    logg: Mapped[float | None] = mapped_column(Float)  # cgs dex
    #: path of the ZERO template assigned by hand (the original's ZERO column; None = "NULL")
    zero: Mapped[str | None] = mapped_column(Text)


class ZeroTemplate(Base):
    """A ZERO (stellar template) file (the original's zeros.csv)."""

    __tablename__ = "zero_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text)
    nframes: Mapped[int] = mapped_column(Integer, default=1)
    site: Mapped[str] = mapped_column(String(16))
    camera: Mapped[str] = mapped_column(String(16))
    mjd_obs: Mapped[float] = mapped_column(Float)
    target: Mapped[str] = mapped_column(String(64), index=True)
    teff: Mapped[float | None] = mapped_column(Float)
    logg: Mapped[float | None] = mapped_column(Float)
    b_v: Mapped[float | None] = mapped_column(Float)
    j_k: Mapped[float | None] = mapped_column(Float)
    is_bad: Mapped[bool] = mapped_column(Boolean, default=False)
    #: vetted "blind" RV standard (flag character 1 of zeros.csv)
    is_standard: Mapped[bool] = mapped_column(Boolean, default=False)
    flags: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class RVRecord(Base):
    """One radial velocity (one star fiber of one TARGET frame).

    nres's own quantities (``rv``, ``rv_err``, ``rv_observed``, ``barycentric_correction``, m/s)
    and the original's rv.csv columns (idl-rv-ops.md 12.2), each nullable.
    """

    __tablename__ = "rv_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checksum: Mapped[str | None] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(64), index=True)
    mjd_obs: Mapped[float] = mapped_column(Float)
    bjd_tdb: Mapped[float | None] = mapped_column(Float)
    site: Mapped[str | None] = mapped_column(String(16))
    instrument: Mapped[str | None] = mapped_column(String(16))
    camera: Mapped[str | None] = mapped_column(String(16))
    fiber: Mapped[int | None] = mapped_column(Integer)
    exptime: Mapped[float | None] = mapped_column(Float)
    orgname: Mapped[str | None] = mapped_column(String(255))
    specfile: Mapped[str | None] = mapped_column(Text)
    rv: Mapped[float | None] = mapped_column(Float)  # barycentric, m/s
    rv_err: Mapped[float | None] = mapped_column(Float)  # m/s
    rv_observed: Mapped[float | None] = mapped_column(Float)  # m/s, no barycentric correction
    barycentric_correction: Mapped[float | None] = mapped_column(Float)  # c z_B, m/s
    # --- the original's rv.csv fields (idl-rv-ops.md 12.2)
    n_lines: Mapped[int | None] = mapped_column(Integer)  # Nmatch
    amoeba_error: Mapped[float | None] = mapped_column(Float)  # Amoerr, nm
    wavelength_rms: Mapped[float | None] = mapped_column(Float)  # RMSgood, nm
    mgb_dispersion: Mapped[float | None] = mapped_column(Float)  # Mgbdisp, nm
    rv_ccf: Mapped[float | None] = mapped_column(Float)  # RVkm/s: c rcc, km/s, no barycentric corr.
    ccf_amplitude: Mapped[float | None] = mapped_column(Float)  # AmpCC
    ccf_fwhm: Mapped[float | None] = mapped_column(Float)  # WidCC, km/s
    lambda_mid: Mapped[float | None] = mapped_column(Float)  # Lammid, nm
    z_barycentric: Mapped[float | None] = mapped_column(Float)  # Baryshift
    z_block_mean: Mapped[float | None] = mapped_column(Float)  # Rshiftavg
    z_block_median: Mapped[float | None] = mapped_column(Float)  # RshiftMed
    z_block_error: Mapped[float | None] = mapped_column(Float)  # RshiftErr
    qc: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)


def normalise_target_name(name) -> str:
    """The lookup key of a target name: upper case, blanks removed, cut at the first ``_``.

    The original compared names this way (idl-rv-ops.md 2), so ``"HD 1461"``, ``"hd1461"`` and
    ``"HD1461_B"`` are the same target.
    """
    return str(name).split("_")[0].replace(" ", "").strip().upper()


def jsonable(value):
    """``value`` as plain JSON data: numpy scalars/arrays to Python, Quantities to their value,
    non-finite floats to None, tuples to lists, dict keys to str."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "unit") and hasattr(value, "value"):  # astropy Quantity
        return jsonable(value.value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _datetime(value):
    """astropy Time, datetime or ISO string -> naive UTC datetime (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if hasattr(value, "to_datetime"):  # astropy Time
        return value.utc.to_datetime()
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidParameterError(f"date_obs: expected an ISO date-time, got {value!r}") from None


def _row(obj) -> dict:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


def _url(url) -> str:
    """A SQLAlchemy URL; a plain file path means an SQLite file."""
    if isinstance(url, os.PathLike) or "://" not in str(url):
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return str(url)


class Database:
    """The nres pipeline database (driver process only).

    Parameters
    ----------
    url : str or os.PathLike
        Any SQLAlchemy URL (default :data:`DEFAULT_URL`, an SQLite file in the current directory);
        a plain path means an SQLite file. The SQLite file (and its directory) is created on first
        use, not by the constructor.
    echo : bool
        Log every SQL statement (SQLAlchemy's ``echo``).

    Examples
    --------
    >>> db = Database("sqlite:///:memory:")
    >>> db.add_calibration("BIAS", "bias.fits", site="lsc", instrument="nres01", camera="fa09",
    ...                    mjd_start=58000.1, nframes=5)  # doctest: +ELLIPSIS
    {...}
    >>> db.select_calibration("BIAS", mjd_obs=58000.5, instrument="nres01", camera="fa09")["path"]
    'bias.fits'
    """

    def __init__(self, url=DEFAULT_URL, *, echo: bool = False):
        self.url = _url(url)
        try:
            parsed = make_url(self.url)
        except Exception as err:  # sqlalchemy.exc.ArgumentError
            raise InvalidParameterError(f"url: not an SQLAlchemy database URL: {url!r} ({err})") from None
        self._sqlite_file = None
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
            self._sqlite_file = Path(parsed.database)
        self._echo = bool(echo)
        self._engine = None

    # ----- engine and sessions -----------------------------------------------------------------
    @property
    def engine(self):
        """The SQLAlchemy engine; the first access creates the tables (and the SQLite file)."""
        if self._engine is None:
            if self._sqlite_file is not None:
                self._sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, echo=self._echo)
            Base.metadata.create_all(engine)
            self._engine = engine
        return self._engine

    def session(self) -> Session:
        """A new ORM session (``with db.session() as s, s.begin(): ...``)."""
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Release the engine's connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    def __getstate__(self):
        msg = (
            "Database: only the driver process writes to the database; pass paths to batch tasks "
            "and let nres.pipeline.batch.run_stage record their results"
        )
        raise NRESError(msg)

    # ----- processed frames --------------------------------------------------------------------
    def record_frame(
        self,
        path,
        *,
        checksum: str,
        success: bool,
        reason: str | None = None,
        qc: dict | None = None,
        products=(),
        obstype: str | None = None,
        site: str | None = None,
        instrument: str | None = None,
        camera: str | None = None,
        date_obs=None,
        mjd_obs: float | None = None,
        day_obs: str | None = None,
        fiber_state: str | None = None,
        stage: str | None = None,
    ) -> dict:
        """Record the outcome of processing one raw file (insert, or update the row of its checksum).

        Parameters
        ----------
        path : str or os.PathLike
            The raw file.
        checksum : str
            md5 hex digest of its bytes (:func:`nres.pipeline.batch.file_checksum`).
        success : bool
            True when every product was written.
        reason : str, optional
            Why it failed (``"ExceptionClass: message"``); None on success.
        qc : dict, optional
            QC numbers (converted with :func:`jsonable`).
        products : sequence of path
            Products written.
        obstype, site, instrument, camera, date_obs, mjd_obs, day_obs, fiber_state, stage
            What the header said (None when it could not be read) and the batch stage.

        Returns
        -------
        dict
            The stored row; ``tries`` counts the attempts of this checksum.
        """
        if not checksum:
            raise InvalidParameterError("record_frame: checksum must be a non-empty string")
        values = {
            "path": os.fspath(path),
            "filename": Path(os.fspath(path)).name,
            "obstype": obstype,
            "site": site,
            "instrument": instrument,
            "camera": camera,
            "date_obs": _datetime(date_obs),
            "mjd_obs": None if mjd_obs is None else float(mjd_obs),
            "day_obs": day_obs,
            "fiber_state": fiber_state,
            "stage": stage,
            "success": bool(success),
            "reason": None if success else (reason or "failed (no reason given)"),
            "products": [os.fspath(p) for p in products],
            "qc": jsonable(dict(qc or {})),
            "nres_version": __version__,
            "processed_at": _now(),
        }
        with self.session() as s, s.begin():
            row = s.scalars(select(Frame).where(Frame.checksum == checksum)).first()
            if row is None:
                row = Frame(checksum=checksum, tries=0)
                s.add(row)
            for key, value in values.items():
                if value is None and key in ("obstype", "site", "instrument", "camera", "mjd_obs"):
                    continue  # keep what an earlier attempt learnt from the header
                setattr(row, key, value)
            row.tries = (row.tries or 0) + 1
            s.flush()
            return _row(row)

    def frame(self, checksum: str) -> dict | None:
        """The row of a checksum, or None if it was never processed."""
        with self.session() as s:
            row = s.scalars(select(Frame).where(Frame.checksum == checksum)).first()
            return None if row is None else _row(row)

    def frame_done(self, checksum: str) -> bool:
        """True if the file with this checksum was processed successfully."""
        row = self.frame(checksum)
        return bool(row is not None and row["success"])

    def frames_table(self, *, success: bool | None = None):
        """Processed frames as an astropy ``Table`` (``success`` filters when given)."""
        with self.session() as s:
            query = select(Frame).order_by(Frame.id)
            if success is not None:
                query = query.where(Frame.success == bool(success))
            rows = [_row(r) for r in s.scalars(query)]
        return _table(rows, Frame)

    # ----- calibrations ------------------------------------------------------------------------
    def add_calibration(
        self,
        obstype: str,
        path,
        *,
        site: str,
        instrument: str,
        camera: str,
        mjd_start: float,
        mjd_end: float | None = None,
        fiber_state: str = "",
        nframes: int = 1,
        binning: str = "1 1",
        is_bad: bool = False,
        flags: str | None = None,
    ) -> dict:
        """Register a calibration product (a new row, or the row of the same path replaced).

        Parameters
        ----------
        obstype : str
            BIAS, DARK, LAMPFLAT, DOUBLE, TRACE, TRIPLE, BLAZE... (stored upper case).
        path : str or os.PathLike
            The product.
        site, instrument, camera : str
            SITEID, TELESCOP (nres01..), INSTRUME (fa09...).
        mjd_start, mjd_end : float
            MJD of the first and last input frame (``mjd_end`` defaults to ``mjd_start``).
        fiber_state : str
            Lit fibers ``"110"``/``"011"``/``"111"``; ``""`` when irrelevant (BIAS, DARK).
        nframes : int
            Frames combined (1 = single frame).
        binning : str
            CCDSUM.
        is_bad : bool
            Marked unusable.
        flags : str, optional
            The original's standards.csv flags, kept for export.

        Returns
        -------
        dict
            The stored row.
        """
        values = calibration_values(
            obstype,
            site=site,
            instrument=instrument,
            camera=camera,
            mjd_start=mjd_start,
            mjd_end=mjd_end,
            fiber_state=fiber_state,
            nframes=nframes,
            binning=binning,
            is_bad=is_bad,
            flags=flags,
        )
        return self._store(Calibration, "path", [(os.fspath(path), {"path": os.fspath(path), **values})])[0]

    def mark_calibration_bad(self, path, *, bad: bool = True) -> None:
        """Flag (or unflag) the calibration at ``path``; raises MissingCalibrationError if unknown."""
        with self.session() as s, s.begin():
            row = s.scalars(select(Calibration).where(Calibration.path == os.fspath(path))).first()
            if row is None:
                raise MissingCalibrationError(f"mark_calibration_bad: no calibration with path {path}")
            row.is_bad = bool(bad)

    def calibrations_table(
        self,
        *,
        obstype: str | None = None,
        site: str | None = None,
        instrument: str | None = None,
        camera: str | None = None,
        as_pandas: bool = False,
    ):
        """The calibrations in the columns :mod:`nres.calib.select` expects.

        Columns: ``obstype, instrument, camera, fiber_state, mjd_obs, is_bad, path, nframes,
        binning`` plus ``id, site, mjd_start, mjd_end, flags``. Bad rows are included (the selection
        rules drop them). The filters are exact matches (obstype upper case, site/instrument lower).

        Returns
        -------
        astropy.table.Table or pandas.DataFrame
        """
        with self.session() as s:
            query = select(Calibration).order_by(Calibration.mjd_obs, Calibration.id)
            if obstype is not None:
                query = query.where(Calibration.obstype == str(obstype).strip().upper())
            if site is not None:
                query = query.where(Calibration.site == str(site).strip().lower())
            if instrument is not None:
                query = query.where(Calibration.instrument == str(instrument).strip().lower())
            if camera is not None:
                query = query.where(Calibration.camera == str(camera).strip())
            rows = [_row(r) for r in s.scalars(query)]
        table = _table(rows, Calibration, drop=("created_at",))
        return table.to_pandas() if as_pandas else table

    def select_calibration(
        self, obstype: str, *, mjd_obs: float, instrument: str, camera: str, site: str | None = None, **rules
    ) -> dict:
        """The calibration to use for a frame, chosen by :func:`nres.calib.select.select_calibration`.

        Parameters
        ----------
        obstype : str
            Calibration type wanted.
        mjd_obs : float
            MJD of the frame being calibrated.
        instrument, camera : str
            The frame's TELESCOP and INSTRUME.
        site : str, optional
            Restrict to a site (instrument already implies it).
        **rules
            Passed on: ``fiber_state``, ``binning``, ``only_older``, ``max_age``, ``rule``, ``legacy``.

        Returns
        -------
        dict
            The chosen row (``path``, ``mjd_obs``, ``dt_days``...).

        Raises
        ------
        MissingCalibrationError
            Nothing usable.
        """
        from ..calib.select import select_calibration

        table = self.calibrations_table(obstype=obstype, site=site)
        return select_calibration(
            table, obstype=obstype, mjd_obs=mjd_obs, instrument=instrument, camera=camera, **rules
        )

    # ----- targets -----------------------------------------------------------------------------
    def add_target(self, name: str, *, ra: float, dec: float, **fields) -> dict:
        """Add or replace a target (matched by :func:`normalise_target_name`).

        Parameters
        ----------
        name : str
            Object name.
        ra, dec : float
            ICRS position, degrees.
        **fields
            Any of ``vmag bmag gmag rmag imag jmag kmag`` (mag), ``pmra pmdec`` (mas/yr, RA one
            times cos dec), ``parallax`` (mas), ``rv`` (km/s), ``teff`` (K), ``logg``, ``zero``
            (path of an assigned ZERO); None = unknown.
        """
        values = target_values(name, ra=ra, dec=dec, **fields)
        return self._store(Target, "key", [(values["key"], values)])[0]

    def target(self, name: str) -> dict:
        """The target called ``name`` (compared as the original did: :func:`normalise_target_name`).

        Raises
        ------
        MissingCalibrationError
            No such target (a ``LookupError``).
        """
        with self.session() as s:
            query = select(Target).where(Target.key == normalise_target_name(name)).order_by(Target.id)
            row = s.scalars(query).first()
            if row is None:
                raise MissingCalibrationError(f"target {name!r} is not in the target list of {self.url}")
            return _row(row)

    def nearest_target(self, ra: float, dec: float, *, radius_arcsec: float = 60.0) -> dict:
        """The target nearest to (ra, dec) in degrees, within ``radius_arcsec``.

        Returns the row with ``separation_arcsec`` added. Raises MissingCalibrationError if none is
        that close. Proper motion is not applied (targets.csv positions are J2000 catalogue ones),
        so keep the radius above a high-proper-motion star's drift (~10" over 20 years).
        """
        table = self.targets_table()
        if len(table) == 0:
            raise MissingCalibrationError(f"nearest_target: the target list of {self.url} is empty")
        ra0, dec0 = np.radians(float(ra)), np.radians(float(dec))
        ra1, dec1 = np.radians(np.asarray(table["ra"], float)), np.radians(np.asarray(table["dec"], float))
        # haversine: accurate at small separations, where the cosine formula loses digits
        h = np.sin((dec1 - dec0) / 2) ** 2 + np.cos(dec0) * np.cos(dec1) * np.sin((ra1 - ra0) / 2) ** 2
        sep = np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))) * 3600.0
        i = int(np.argmin(sep))
        if sep[i] > radius_arcsec:
            msg = (
                f"nearest_target: no target within {radius_arcsec} arcsec of ({ra}, {dec}) deg "
                f"(nearest: {sep[i]:.1f} arcsec)"
            )
            raise MissingCalibrationError(msg)
        with self.session() as s:
            row = _row(s.get(Target, int(table["id"][i])))
        row["separation_arcsec"] = float(sep[i])
        return row

    def targets_table(self):
        """All targets as an astropy ``Table`` sorted by RA (the original kept targets.csv so)."""
        with self.session() as s:
            rows = [_row(r) for r in s.scalars(select(Target).order_by(Target.ra, Target.id))]
        return _table(rows, Target)

    # ----- ZERO templates ----------------------------------------------------------------------
    def add_zero(
        self,
        path,
        *,
        target: str,
        site: str,
        camera: str,
        mjd_obs: float,
        nframes: int = 1,
        teff: float | None = None,
        logg: float | None = None,
        b_v: float | None = None,
        j_k: float | None = None,
        is_bad: bool = False,
        is_standard: bool = False,
        flags: str | None = None,
    ) -> dict:
        """Register a ZERO template (or replace the row of the same path); fields as zeros.csv."""
        values = zero_values(
            target=target,
            site=site,
            camera=camera,
            mjd_obs=mjd_obs,
            nframes=nframes,
            teff=teff,
            logg=logg,
            b_v=b_v,
            j_k=j_k,
            is_bad=is_bad,
            is_standard=is_standard,
            flags=flags,
        )
        return self._store(ZeroTemplate, "path", [(os.fspath(path), {"path": os.fspath(path), **values})])[0]

    def zeros_table(self, *, target: str | None = None):
        """ZERO templates as an astropy ``Table`` sorted by MJD (``target`` filters by normalised name)."""
        with self.session() as s:
            rows = [
                _row(r)
                for r in s.scalars(select(ZeroTemplate).order_by(ZeroTemplate.mjd_obs, ZeroTemplate.id))
            ]
        if target is not None:
            key = normalise_target_name(target)
            rows = [r for r in rows if normalise_target_name(r["target"]) == key]
        return _table(rows, ZeroTemplate, drop=("created_at",))

    # ----- RV results --------------------------------------------------------------------------
    def add_rv(self, *, target: str, mjd_obs: float, **fields) -> dict:
        """Store one RV result; ``fields`` are :class:`RVRecord` columns (m/s for nres's own RVs)."""
        return self._store(RVRecord, None, [(None, rv_values(target=target, mjd_obs=mjd_obs, **fields))])[0]

    def rv_table(self, *, target: str | None = None):
        """RV results as an astropy ``Table`` sorted by MJD (``target`` filters by normalised name)."""
        with self.session() as s:
            rows = [_row(r) for r in s.scalars(select(RVRecord).order_by(RVRecord.mjd_obs, RVRecord.id))]
        if target is not None:
            key = normalise_target_name(target)
            rows = [r for r in rows if normalise_target_name(r["target"]) == key]
        return _table(rows, RVRecord, drop=("created_at",))

    # ----- bulk storage ------------------------------------------------------------------------
    def _store(self, model, key_column, items) -> list[dict]:
        """Insert or update rows of ``model`` in one transaction.

        ``items`` is a sequence of ``(key, values)``: the first row whose ``key_column`` equals
        ``key`` is updated, else (or when ``key`` is None) a row is inserted.
        """
        stored = []
        with self.session() as s, s.begin():
            for key, values in items:
                row = None
                if key is not None:
                    column = getattr(model, key_column)
                    row = s.scalars(select(model).where(column == key).order_by(model.id)).first()
                if row is None:
                    row = model()
                    s.add(row)
                for name, value in values.items():
                    setattr(row, name, value)
                stored.append(row)
            s.flush()
            return [_row(r) for r in stored]

    def _clear(self, model) -> None:
        from sqlalchemy import delete

        with self.session() as s, s.begin():
            s.execute(delete(model))

    # ----- the original's CSV tables -----------------------------------------------------------
    def import_csv(self, kind: str, path, **options) -> int:
        """Import one of the original's CSV tables; see :func:`nres.pipeline.legacy_csv.import_csv`."""
        from .legacy_csv import import_csv

        return import_csv(self, kind, path, **options)

    def export_csv(self, kind: str, path, **options) -> int:
        """Export a table in the original's CSV format; see :func:`nres.pipeline.legacy_csv.export_csv`."""
        from .legacy_csv import export_csv

        return export_csv(self, kind, path, **options)


def calibration_values(
    obstype,
    *,
    site,
    instrument,
    camera,
    mjd_start,
    mjd_end=None,
    fiber_state="",
    nframes=1,
    binning="1 1",
    is_bad=False,
    flags=None,
) -> dict:
    """Validated column values of a :class:`Calibration` (see :meth:`Database.add_calibration`)."""
    mjd_start = float(mjd_start)
    mjd_end = mjd_start if mjd_end is None else float(mjd_end)
    if not (math.isfinite(mjd_start) and math.isfinite(mjd_end)) or mjd_end < mjd_start:
        msg = f"add_calibration: need finite mjd_start <= mjd_end, got {mjd_start}, {mjd_end}"
        raise InvalidParameterError(msg)
    fiber_state = "" if fiber_state is None else str(fiber_state)
    if fiber_state and (len(fiber_state) != 3 or set(fiber_state) - {"0", "1"}):
        msg = f"add_calibration: fiber_state must be '' or three 0/1 digits, got {fiber_state!r}"
        raise InvalidParameterError(msg)
    if int(nframes) < 1:
        raise InvalidParameterError(f"add_calibration: nframes must be >= 1, got {nframes}")
    return {
        "obstype": str(obstype).strip().upper(),
        "site": str(site).strip().lower(),
        "instrument": str(instrument).strip().lower(),
        "camera": str(camera).strip(),
        "mjd_start": mjd_start,
        "mjd_end": mjd_end,
        "mjd_obs": 0.5 * (mjd_start + mjd_end),
        "fiber_state": fiber_state,
        "is_bad": bool(is_bad),
        "nframes": int(nframes),
        "binning": str(binning),
        "flags": flags,
        "created_at": _now(),
    }


_TARGET_FIELDS = (
    "vmag",
    "bmag",
    "gmag",
    "rmag",
    "imag",
    "jmag",
    "kmag",
    "pmra",
    "pmdec",
    "parallax",
    "rv",
    "teff",
    "logg",
    "zero",
)


def target_values(name, *, ra, dec, **fields) -> dict:
    """Validated column values of a :class:`Target` (see :meth:`Database.add_target`)."""
    unknown = set(fields) - set(_TARGET_FIELDS)
    if unknown:
        msg = f"add_target: unknown field(s) {sorted(unknown)}; allowed {list(_TARGET_FIELDS)}"
        raise InvalidParameterError(msg)
    ra, dec = float(ra), float(dec)
    if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
        msg = f"add_target {name!r}: need 0 <= ra < 360 and |dec| <= 90 deg, got ra={ra}, dec={dec}"
        raise InvalidParameterError(msg)
    key = normalise_target_name(name)
    if not key:
        raise InvalidParameterError("add_target: name must not be empty")
    values = {"name": str(name).strip(), "key": key, "ra": ra, "dec": dec}
    for column in _TARGET_FIELDS:
        value = fields.get(column)
        values[column] = value if column == "zero" or value is None else float(value)
    return values


def zero_values(
    *,
    target,
    site,
    camera,
    mjd_obs,
    nframes=1,
    teff=None,
    logg=None,
    b_v=None,
    j_k=None,
    is_bad=False,
    is_standard=False,
    flags=None,
) -> dict:
    """Validated column values of a :class:`ZeroTemplate` (see :meth:`Database.add_zero`)."""
    if not str(target).strip():
        raise InvalidParameterError("add_zero: target must not be empty")
    return {
        "target": str(target).strip(),
        "site": str(site).strip().lower(),
        "camera": str(camera).strip(),
        "mjd_obs": float(mjd_obs),
        "nframes": int(nframes),
        **{
            k: None if v is None else float(v)
            for k, v in (("teff", teff), ("logg", logg), ("b_v", b_v), ("j_k", j_k))
        },
        "is_bad": bool(is_bad),
        "is_standard": bool(is_standard),
        "flags": flags,
        "created_at": _now(),
    }


def rv_values(*, target, mjd_obs, **fields) -> dict:
    """Validated column values of an :class:`RVRecord` (see :meth:`Database.add_rv`)."""
    allowed = {c.key for c in RVRecord.__table__.columns} - {"id", "target", "mjd_obs", "created_at"}
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidParameterError(f"add_rv: unknown field(s) {sorted(unknown)}; allowed {sorted(allowed)}")
    if not str(target).strip():
        raise InvalidParameterError("add_rv: target must not be empty")
    values = {k: (jsonable(v) if k == "qc" else _plain(v)) for k, v in fields.items()}
    values["qc"] = values.get("qc") or {}
    return {"target": str(target).strip(), "mjd_obs": float(mjd_obs), "created_at": _now(), **values}


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "unit") and hasattr(value, "value"):
        return float(value.value)
    if value is np.ma.masked:
        return None
    return value


def _table(rows: list[dict], model, *, drop=()):
    """Rows of ``model`` as an astropy Table with one column per table column (typed even if empty);
    JSON columns become JSON text, NULL numbers NaN (NULL integers -1), NULL strings ''."""
    import json

    from astropy.table import Table

    table = Table()
    for column in model.__table__.columns:
        name = column.key
        if name in drop:
            continue
        values = [r[name] for r in rows]
        kind = type(column.type)
        if kind is JSON:
            table[name] = np.array([json.dumps(v) for v in values], dtype=str) if values else np.zeros(0, str)
        elif kind is Float:
            table[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        elif kind is Integer:
            table[name] = np.array([-1 if v is None else v for v in values], dtype=np.int64)
        elif kind is Boolean:
            table[name] = np.array([bool(v) for v in values], dtype=bool)
        elif kind is DateTime:
            table[name] = np.array(["" if v is None else v.isoformat() for v in values], dtype=str)
        else:
            table[name] = np.array(["" if v is None else str(v) for v in values], dtype=str)
    return table
