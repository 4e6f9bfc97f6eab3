"""Barycentric correction (z_B) and BJD_TDB with astropy, offline.

The correction follows Wright & Eastman (2014) as implemented by astropy's
``SkyCoord.radial_velocity_correction(kind="barycentric")``: astropy returns ``v_corr = c z_B`` where
``1 + z_B`` is the barycentric Doppler factor, so that the barycentric redshift of a measured
topocentric ``z_obs`` is ``(1 + z_obs)(1 + z_B) - 1`` (:mod:`nres.doppler`). The target's proper
motion, parallax and radial velocity are applied from its catalogue epoch to the observation
(``SkyCoord.apply_space_motion``). IERS data come from the package ``astropy-iers-data``; nothing is
downloaded (``astropy.utils.iers.conf.auto_download`` is set to False while computing).

The original pipeline (idl-rv-ops.md 7) ignored proper motion and parallax, fed a West longitude to
an East-longitude routine and used the exposure end as "centre"; here the time is an argument and
:func:`flux_weighted_correction` gives the flux-weighted mean of z_B over an exposure-meter record.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.table import Table
from astropy.time import Time
from astropy.utils import iers

from ..doppler import C_M_S
from ..errors import InvalidParameterError

__all__ = ["BarycentricCorrection", "barycentric_correction", "flux_weighted_correction", "resolve_location"]


@dataclass(frozen=True)
class BarycentricCorrection:
    """Barycentric redshift(s) and BJD_TDB at given time(s).

    Attributes
    ----------
    z : float or ndarray
        ``z_B = v_corr / c`` (dimensionless); scalar for a scalar time.
    bjd_tdb : `~astropy.time.Time`
        Barycentric Julian date in TDB (light travel time to the barycentre applied).
    """

    z: float | np.ndarray
    bjd_tdb: Time

    @property
    def velocity(self) -> u.Quantity:
        """``v_corr = c z_B`` in m/s (astropy's convention: add it to a measured RV, to first order)."""
        return np.asarray(self.z) * C_M_S * (u.m / u.s)


@contextlib.contextmanager
def _offline_iers():
    # astropy would try to fetch a newer IERS-A table for recent dates; the packaged one is used
    old = iers.conf.auto_download
    iers.conf.auto_download = False
    try:
        yield
    finally:
        iers.conf.auto_download = old


def resolve_location(location) -> EarthLocation:
    """An `~astropy.coordinates.EarthLocation` from itself or from an NRES site code ("lsc", ...)."""
    if isinstance(location, EarthLocation):
        return location
    if isinstance(location, str):
        from ..instrument import site_location

        return site_location(location)
    msg = f"location: expected an EarthLocation or an NRES site code, got {type(location).__name__}"
    raise InvalidParameterError(msg)


def _check_target(target) -> SkyCoord:
    if not isinstance(target, SkyCoord):
        msg = f"target: expected a SkyCoord, got {type(target).__name__}"
        raise InvalidParameterError(msg)
    return target


def _moved_target(target: SkyCoord, obstime: Time) -> SkyCoord:
    """The target propagated to ``obstime`` when it has proper motion (and catalogue epoch)."""
    has_motion = "s" in target.data.differentials
    if not has_motion:
        return target
    if target.obstime is None:
        msg = "target: a SkyCoord with proper motion needs obstime= (its catalogue epoch)"
        raise InvalidParameterError(msg)
    with _offline_iers():
        return target.apply_space_motion(new_obstime=obstime)


def barycentric_correction(target, obstime, location) -> BarycentricCorrection:
    """Barycentric redshift ``z_B`` and BJD_TDB of a target seen from a site.

    Parameters
    ----------
    target : `~astropy.coordinates.SkyCoord`
        ICRS position. For cm/s work give ``pm_ra_cosdec``, ``pm_dec``, ``distance`` (from the
        parallax), ``radial_velocity`` and ``obstime`` = the catalogue epoch; the target is then
        propagated to the observation time before the correction.
    obstime : `~astropy.time.Time`
        Time(s) of observation (UTC; scalar or array).
    location : `~astropy.coordinates.EarthLocation` or str
        Observatory, or an NRES site code.

    Returns
    -------
    BarycentricCorrection
        ``z`` (shape of ``obstime``) and ``bjd_tdb``.
    """
    target = _check_target(target)
    location = resolve_location(location)
    if not isinstance(obstime, Time):
        msg = f"obstime: expected an astropy Time, got {type(obstime).__name__}"
        raise InvalidParameterError(msg)
    moved = _moved_target(target, obstime)
    with _offline_iers():
        # astropy moves the target to obstime itself and, from the catalogue-epoch direction, adds
        # W&E's stellar-motion term (the secular change of the projected space velocity, ~4.5 m/s/yr
        # for Barnard's star): give it the catalogue-epoch coordinate, not the moved one
        v_corr = target.radial_velocity_correction(kind="barycentric", obstime=obstime, location=location)
        t = Time(obstime, location=location)
        ltt = t.light_travel_time(moved, kind="barycentric")
        bjd = t.tdb + ltt
    z = v_corr.to_value(u.m / u.s) / C_M_S
    return BarycentricCorrection(z=float(z) if np.ndim(z) == 0 else np.asarray(z), bjd_tdb=bjd)


def _meter_times(table: Table) -> Time:
    """Mid-times of the exposure-meter samples (start + exposure / 2)."""
    if "JD_START" in table.colnames:
        start = Time(np.asarray(table["JD_START"], dtype=float), format="jd", scale="utc")
    elif "MJD_START" in table.colnames:
        start = Time(np.asarray(table["MJD_START"], dtype=float), format="mjd", scale="utc")
    elif "time" in table.colnames and isinstance(table["time"], Time):
        start = table["time"]
    else:
        msg = "exposure_meter_table: expected a JD_START, MJD_START or Time 'time' column"
        raise InvalidParameterError(msg)
    if "EXP_TIME" not in table.colnames:
        msg = "exposure_meter_table: expected an EXP_TIME column (seconds per sample)"
        raise InvalidParameterError(msg)
    exptime = table["EXP_TIME"]
    exptime = exptime.to_value(u.s) if isinstance(exptime, u.Quantity) else np.asarray(exptime, dtype=float)
    return start + 0.5 * exptime * u.s


def flux_weighted_correction(
    target, exposure_meter_table, location, *, fiber: int = 0, flux_column=None
) -> BarycentricCorrection:
    """Flux-weighted mean barycentric redshift over an exposure-meter record.

    ``z_B = sum(F_i z_B(t_i)) / sum(F_i)`` over the unflagged samples, with ``t_i`` the middle of
    sample i (the mean of z_B over the flux history, not z_B at a flux-weighted time; the two differ
    at second order in time). ``bjd_tdb`` is the flux-weighted mean BJD_TDB of the samples.

    Parameters
    ----------
    target : `~astropy.coordinates.SkyCoord`
        As for :func:`barycentric_correction`.
    exposure_meter_table : `~astropy.table.Table`
        The raw file's EXPOSURE_METER table: a start time ``JD_START`` (JD UTC), ``MJD_START`` or a
        Time column ``time``; ``EXP_TIME`` (s); counts ``FIB<fiber>COUNTS``; optional ``EMFLAGS``
        (samples with non-zero flags are skipped).
    location : `~astropy.coordinates.EarthLocation` or str
        Observatory, or an NRES site code.
    fiber : int
        Fiber whose counts weight the samples (the science fiber), default 0.
    flux_column : str, optional
        Name of the counts column, overriding ``FIB<fiber>COUNTS``.

    Returns
    -------
    BarycentricCorrection
        Scalar ``z`` and ``bjd_tdb``.
    """
    table = Table(exposure_meter_table)
    column = flux_column if flux_column is not None else f"FIB{int(fiber)}COUNTS"
    if column not in table.colnames:
        msg = f"exposure_meter_table: no counts column {column!r} (columns: {table.colnames})"
        raise InvalidParameterError(msg)
    flux = np.asarray(table[column], dtype=float)
    good = np.isfinite(flux) & (flux > 0)
    if "EMFLAGS" in table.colnames:
        good &= np.asarray(table["EMFLAGS"]) == 0
    if not good.any():
        msg = f"exposure_meter_table: no unflagged sample with positive {column}"
        raise InvalidParameterError(msg)
    times = _meter_times(table[good])
    each = barycentric_correction(target, times, location)
    w = flux[good] / flux[good].sum()
    z = float(np.sum(w * np.atleast_1d(each.z)))
    jd0 = each.bjd_tdb.jd1[0]
    bjd = Time(jd0, np.sum(w * (each.bjd_tdb.jd1 - jd0 + each.bjd_tdb.jd2)), format="jd", scale="tdb")
    return BarycentricCorrection(z=z, bjd_tdb=bjd)
