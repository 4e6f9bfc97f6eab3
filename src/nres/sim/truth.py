"""``Truth``: everything the simulator knows about a frame or spectrum it made."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

__all__ = ["Truth"]


@dataclass(frozen=True, eq=False)
class Truth:
    """The known answer of a simulated frame (``simulate``) or spectrum (``simulate_extracted``).

    Arrays use full-detector coordinates: ``x`` are the full-detector columns of the frame (of
    the window if windowed), ``centers`` are y in full-detector rows. Fields that do not apply to
    a product are ``None`` (e.g. ``cosmic_rays`` of an extracted spectrum).

    Attributes
    ----------
    obstype, site, seed : str, str, int
    window : tuple of int, (y0, y1, x0, x1)
        Full-detector rows ``y0:y1`` and columns ``x0:x1`` of the frame (the full detector if not
        windowed).
    x : ndarray of int, shape (nx,)
        Full-detector column of each pixel of ``expected`` / ``centers``.
    orders, fibers : ndarray of int, shape (n_traces,)
        Physical order and fiber of each row of ``centers`` / ``profile_sigma``.
    centers : ndarray, shape (n_traces, nx)
        Per-column flux centroid (full-detector y, px) of each trace's rendered profile.
    profile_sigma : ndarray, shape (n_traces, nx)
        Gaussian-core sigma (px) of the cross-dispersion profile; ``profile`` holds the other
        parameters (asymmetry, wing fraction and sigma).
    spectrum_fibers, spectrum_orders : ndarray of int, shapes (n_fiber,), (n_order,)
        Axes of ``expected``, ``wavelength`` and ``blaze``.
    expected : ndarray, shape (n_fiber, n_order, nx)
        Expected electrons per (fiber, order, pixel) before noise, detector effects and scattered
        light (unlit fibers are zero).
    wavelength : Quantity, shape (n_fiber, n_order, nx)
        True vacuum wavelength (nm) at each pixel centre (with distortion and drift).
    blaze : ndarray, shape (n_fiber, n_order, nx)
        Blaze function (peak 1) at each pixel.
    line_list : QTable or None
        The packaged line list used for ThAr.
    lines_used : QTable or None
        ThAr lines rendered: fiber, order, wavelength, x (true position), electrons, saturated.
    z_star, z_b, z_obs : float
        Star redshift, flux-weighted barycentric ``z_B`` and the resulting flux-weighted observed
        redshift ``(1 + z_star) / (1 + z_B) - 1``.
    mjd, z_b_samples, flux_history : ndarray, shape (n_samples,)
        Exposure-meter sample times (MJD UTC), ``z_B(t)`` and relative flux of each sample.
    template : StellarSpectrum or None
        The noiseless stellar template.
    cosmic_rays, bleed : ndarray of bool, shape (ny, nx)
        Pixels hit by cosmic rays / filled by charge bleeding.
    scattered_light : ndarray, shape (ny, nx)
        Scattered light added (electrons).
    drift : tuple of float
        ``(dx0, dx1)``: the spectrum is shifted by ``dx0 + dx1 * t`` px along x,
        ``t = (x - 2047.5) / 2047.5``.
    geometry : dict
        Trace transform (shift, rotation, scale), wavelength distortion and profile parameters.
    meta : dict
        Anything else (gain, read noise, exposure time...).
    """

    obstype: str
    site: str
    seed: int
    window: tuple = (0, 4096, 0, 4096)
    x: np.ndarray | None = None
    orders: np.ndarray | None = None
    fibers: np.ndarray | None = None
    centers: np.ndarray | None = None
    profile_sigma: np.ndarray | None = None
    profile: dict = field(default_factory=dict)
    spectrum_fibers: np.ndarray | None = None
    spectrum_orders: np.ndarray | None = None
    expected: np.ndarray | None = None
    wavelength: u.Quantity | None = None
    blaze: np.ndarray | None = None
    line_list: QTable | None = None
    lines_used: QTable | None = None
    z_star: float = 0.0
    z_b: float = 0.0
    z_obs: float = 0.0
    mjd: np.ndarray | None = None
    z_b_samples: np.ndarray | None = None
    flux_history: np.ndarray | None = None
    template: object = None
    cosmic_rays: np.ndarray | None = None
    bleed: np.ndarray | None = None
    scattered_light: np.ndarray | None = None
    drift: tuple = (0.0, 0.0)
    geometry: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def write(self, path) -> list[Path]:
        """Write the truth next to a frame: ``<path>.npz`` (arrays and scalars) and ECSV tables.

        Parameters
        ----------
        path : str or Path
            Output stem, e.g. ``out/sim_target_truth``; ``.npz`` is appended, and each table
            goes to ``<stem>_<name>.ecsv``. The template is written as its line list
            (``<stem>_template_lines.ecsv``). Wavelengths are stored in nm.

        Returns
        -------
        list of Path
            Files written.
        """
        stem = Path(path)
        arrays, scalars, written = {}, {}, []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, QTable):
                out = stem.with_name(f"{stem.name}_{f.name}.ecsv")
                value.write(out, format="ascii.ecsv", overwrite=True)
                written.append(out)
            elif f.name == "template":
                out = stem.with_name(f"{stem.name}_template_lines.ecsv")
                value.lines.write(out, format="ascii.ecsv", overwrite=True)
                written.append(out)
            elif isinstance(value, u.Quantity):
                arrays[f.name] = value.to_value(u.nm)
            elif isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                scalars[f.name] = value
        arrays["scalars_json"] = np.array(json.dumps(scalars, default=_jsonable))
        out = stem.with_name(stem.name + ".npz")
        np.savez_compressed(out, **arrays)
        return [out] + written


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, u.Quantity):
        return str(value)
    return repr(value)
