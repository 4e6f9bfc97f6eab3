"""Caches of the parts of a simulated frame that depend only on (site, mjd, config, exposure), not
on the window or the seed's noise: the moved traces, the site's physical model, z_B(t) of the
default target and the coarse scattered-light grid.

Only default inputs are cached (user-given traces, model, line list or target bypass the caches),
keys are the exact values the result depends on, and cached arrays are read-only, so a cached
result is bit-for-bit what the uncached code returns (tests/sim/test_sim_cache.py).
"""

from __future__ import annotations

import functools

import numpy as np

from .doppler import barycentric_z_samples, default_target
from .geometry import transform_traces
from .scattered import scattered_grid

__all__ = ["moved_traces", "site_model", "default_z_b", "default_scattered_grid", "clear"]


@functools.lru_cache(maxsize=8)
def moved_traces(site, shift, rotation, scale):
    """The site's reference traces moved by :func:`~nres.sim.geometry.transform_traces`."""
    from .. import instrument

    return transform_traces(instrument.reference_traces(site), shift=shift, rotation=rotation, scale=scale)


@functools.lru_cache(maxsize=8)
def site_model(site, mjd):
    """``PhysicalModel.for_site(site, mjd=mjd)`` (a frozen dataclass)."""
    from .. import instrument

    return instrument.PhysicalModel.for_site(site, mjd=mjd)


@functools.lru_cache(maxsize=64)
def _z_b(site, mjd_bytes):
    from .. import instrument

    mjd = np.frombuffer(mjd_bytes, dtype=np.float64)
    z = barycentric_z_samples(default_target(), mjd, instrument.site_location(site))
    z.setflags(write=False)
    return z


def default_z_b(site, mjd):
    """z_B of the default target (tau Ceti) at the UTC MJDs ``mjd`` (a new array)."""
    return _z_b(site, np.ascontiguousarray(mjd, dtype=np.float64).tobytes()).copy()


@functools.lru_cache(maxsize=8)
def default_scattered_grid(site, mjd, lit_items, cfg, scale):
    """Coarse scattered-light grid for the default traces, model and ThAr list (read-only)."""
    from .. import instrument

    lit = dict(lit_items)
    line_list = instrument.thar_lines("redman") if "thar" in lit.values() else None
    grid = scattered_grid(
        moved_traces(site, cfg.trace_shift, cfg.trace_rotation, cfg.trace_scale),
        lit,
        site_model(site, mjd),
        cfg,
        scale=scale,
        line_list=line_list,
        template_level=cfg.star_level,
    )
    grid.setflags(write=False)
    return grid


def clear():
    """Empty every cache of the simulator."""
    for f in (moved_traces, site_model, _z_b, default_scattered_grid):
        f.cache_clear()
