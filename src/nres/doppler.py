"""The Doppler rule of nres: Doppler factors combine multiplicatively; velocities are never added.

A star with redshift ``z_star`` (its barycentric radial velocity is ``c * z_star``) observed from a
telescope with barycentric correction ``v_corr`` (astropy's convention: ``v_corr`` is *added* to a
measured RV; ``z_B = v_corr / c``) is seen at

    1 + z_obs = (1 + z_star) / (1 + z_B)

so the barycentric redshift of a measured ``z_obs`` is ``(1 + z_obs) * (1 + z_B) - 1``, which
differs from ``z_obs + z_B`` by ``z_obs * z_B`` (``c z_obs z_B`` is ~10 m/s for a 100 km/s star
at the largest |v_corr| of ~30 km/s). A wavelength
emitted at ``lam0`` is observed at ``lam0 * (1 + z)``. Radial velocities are reported as
``c * z`` (the "spectroscopic radial velocity" of IAU 2000 Resolution C1), not the
relativistic velocity.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.constants import c as _c

__all__ = [
    "C_M_S",
    "z_from_velocity",
    "velocity_from_z",
    "combine_z",
    "observed_z",
    "barycentric_z",
    "doppler_shift",
]

#: Speed of light in m/s (exact).
C_M_S = float(_c.to_value(u.m / u.s))


def z_from_velocity(v):
    """Redshift ``z = v / c`` of a velocity (Quantity, or float in m/s)."""
    if isinstance(v, u.Quantity):
        return (v / _c).to_value(u.dimensionless_unscaled)
    return np.asarray(v, dtype=float) / C_M_S


def velocity_from_z(z):
    """Velocity ``c z`` as a Quantity in m/s."""
    return np.asarray(z, dtype=float) * C_M_S * (u.m / u.s)


def combine_z(*zs):
    """Combined redshift of successive Doppler factors: ``prod(1 + z_i) - 1``."""
    total = 1.0
    for z in zs:
        total = total * (1.0 + np.asarray(z, dtype=float))
    return total - 1.0


def observed_z(z_star, z_b):
    """Topocentric redshift seen at the telescope: ``(1 + z_star) / (1 + z_B) - 1``."""
    return (1.0 + np.asarray(z_star, dtype=float)) / (1.0 + np.asarray(z_b, dtype=float)) - 1.0


def barycentric_z(z_obs, z_b):
    """Barycentric redshift of a measured topocentric ``z_obs``: ``(1 + z_obs)(1 + z_B) - 1``."""
    return combine_z(z_obs, z_b)


def doppler_shift(wavelength, z):
    """Wavelength ``lam * (1 + z)`` seen from a source with redshift ``z`` (units preserved)."""
    return wavelength * (1.0 + np.asarray(z, dtype=float))
