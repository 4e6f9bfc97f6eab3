"""RV references for the TARGET recipe: what ``options["template"]`` may name, resolved in the worker.

- ``"simulated"``: the noiseless star of :mod:`nres.sim` for the frame's target: the
  :class:`~nres.sim.StellarSpectrum` that :func:`nres.sim.simulate_night` gives every star
  (``seed = crc32(name)``), sampled 6x finer than the pixels over each order (+-0.5 nm), rest
  frame (barycentric), vacuum. For simulated nights only: it is the exact star.
- a path to a line mask (``.mas`` text, CERES/HARPS; or an ESPRESSO-style FITS ``MASK_TABLE``):
  :meth:`nres.rv.LineMask.read` with ``options["mask_medium"]`` (default ``"air"``), method ``"mask"``.

ZERO templates built from observed spectra (``Template.from_spectra``) come later; until then a
real night needs a mask.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import astropy.units as u
import numpy as np

from ..errors import InvalidParameterError, MissingCalibrationError

__all__ = ["resolve_reference", "simulated_template"]


def simulated_template(name: str, spec, *, fiber=None, oversample: int = 6, margin_nm: float = 0.5):
    """The simulator's noiseless star called ``name`` as a :class:`~nres.rv.Template` over ``spec``'s
    orders: one segment per order of ``fiber`` (default every fiber) whose wavelengths are finite
    and strictly monotonic."""
    from ..rv import Template

    seed = zlib.crc32(str(name).encode())
    lam = spec.wavelength.to_value(u.nm)
    if fiber is not None:
        lam = lam[np.flatnonzero(np.asarray(spec.fibers) == fiber)]
    lam = lam.reshape(-1, spec.shape[-1])
    with np.errstate(invalid="ignore"):
        step = np.diff(lam, axis=1)
        ok = (np.isfinite(lam) & (lam > 0)).all(axis=1) & ((step > 0).all(axis=1) | (step < 0).all(axis=1))
    if not ok.any():
        raise InvalidParameterError("spec: no order with finite wavelengths to build a template over")
    grids = np.array(
        [np.linspace(w.min() - margin_nm, w.max() + margin_nm, oversample * w.size) for w in lam[ok]]
    )
    return Template(
        grids * u.nm, _cached_flux(seed, grids), wavelength_medium="vacuum", wavelength_frame="barycentric"
    )


_FLUX_CACHE: OrderedDict = OrderedDict()
_FLUX_CACHE_SIZE = 4
_FLUX_LOCK = threading.Lock()


def _cached_flux(seed: int, grids: np.ndarray) -> np.ndarray:
    """``StellarSpectrum(seed).flux(grids)`` (read-only), kept per (seed, grid) in this process.

    A night's frames share their wavelength solution, hence the grid: the ~0.9 s evaluation of
    the star's lines is done once per worker (a few entries, least recently used dropped).
    """
    from ..sim import StellarSpectrum

    key = (
        int(seed),
        grids.shape,
        hashlib.blake2b(np.ascontiguousarray(grids).tobytes(), digest_size=16).digest(),
    )
    with _FLUX_LOCK:
        hit = _FLUX_CACHE.get(key)
        if hit is not None:
            _FLUX_CACHE.move_to_end(key)
            return hit
    flux = np.asarray(StellarSpectrum(seed=int(seed)).flux(grids * u.nm))
    flux.setflags(write=False)
    with _FLUX_LOCK:
        _FLUX_CACHE[key] = flux
        while len(_FLUX_CACHE) > _FLUX_CACHE_SIZE:
            _FLUX_CACHE.popitem(last=False)
    return flux


def resolve_reference(option, *, target_name: str, spec, fiber=None, mask_medium: str = "air"):
    """``(reference, method, description)`` for ``measure`` from the ``template`` option.

    Raises
    ------
    MissingCalibrationError
        No template given (``None``).
    InvalidParameterError
        A value that is neither ``"simulated"`` nor an existing mask file.
    """
    if option is None:
        raise MissingCalibrationError(
            "no RV template for this frame: pass template='simulated' (simulated nights) or a line-mask path"
        )
    if str(option) == "simulated":
        reference = simulated_template(target_name, spec, fiber=fiber)
        return reference, "template", f"simulated star {target_name}"
    path = Path(str(option))
    if not path.exists():
        raise InvalidParameterError(
            f"template: expected 'simulated' or an existing mask file, got {option!r}"
        )
    from ..rv import LineMask

    return LineMask.read(path, wavelength_medium=mask_medium), "mask", path.name
