"""The result of an RV measurement."""

from __future__ import annotations

from dataclasses import dataclass, field

import astropy.units as u
from astropy.table import QTable
from astropy.time import Time

__all__ = ["RVResult"]


@dataclass(frozen=True)
class RVResult:
    """Radial velocity of one fiber of one spectrum.

    Attributes
    ----------
    rv : Quantity (m/s)
        Barycentric RV ``c z`` with ``1 + z = (1 + z_obs)(1 + z_B)`` (NaN when no barycentric
        correction was asked for a topocentric spectrum).
    rv_observed : Quantity (m/s)
        ``c z_obs`` in the spectrum's frame, relative to the template/mask rest frame.
    rv_err_photon : Quantity (m/s)
        Error from the data variance alone.
    rv_err_empirical : Quantity (m/s)
        Error from the scatter of the per-order RVs (weighted; NaN with fewer than 3 orders).
    barycentric_correction : Quantity (m/s)
        ``c z_B`` (NaN if not applied).
    bjd_tdb : Time or None
    orders : QTable
        ``order``, ``rv`` (m/s, observed frame), ``rv_err`` (m/s), ``weight`` (normalised), ``flags``
        (uint16 bits of :class:`nres.flags.Flag`: OUTLIER = rejected, NO_WEIGHT = not measured).
    ccf : QTable
        One row: ``velocity`` (m/s grid, observed frame), ``ccf`` (normalised summed CCF), ``fwhm``,
        ``contrast``, ``bisector_span`` (m/s).
    flags : int
        OR of the per-order flags.
    meta : dict
        Method, fiber, conversions applied to the template/mask, z values.
    """

    rv: u.Quantity
    rv_observed: u.Quantity
    rv_err_photon: u.Quantity
    rv_err_empirical: u.Quantity
    barycentric_correction: u.Quantity
    bjd_tdb: Time | None
    orders: QTable
    ccf: QTable
    flags: int = 0
    meta: dict = field(default_factory=dict)
