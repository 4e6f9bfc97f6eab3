"""ZERO templates from a night's products: co-add the 1-D spectra of one star, write, register.

:func:`make_zero_from_products` is the database-driven form of ``nres make-zero``: it picks the
star's reduced TARGET frames from the database (successful frames whose QC ``target`` is the star,
compared by :func:`~nres.pipeline.db.normalise_target_name`, optionally in an MJD range and at one
site/camera), reads their ``-1d.fits`` products (:func:`~nres.pipeline.spectrum1d.read_echelle_spectrum_1d`),
co-adds them in the star's rest frame with :meth:`nres.rv.Template.from_spectra`, writes the ZERO
with :func:`nres.rv.write_zero` and registers it in the ``zeros`` table, where
:func:`nres.pipeline.night.best_zero` finds it for the star's later TARGET frames.

The barycentric redshift of every epoch is the one the pipeline used for that frame's RV (the
product's QC ``barycentric_correction_m_s``, flux-weighted when the raw file had an exposure
meter), so the ZERO and the RVs measured against it share one z_B convention; frames reduced
without an RV fall back to the header computation of ``Template.from_spectra``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import astropy.units as u
import numpy as np

from ..doppler import C_M_S
from ..errors import InvalidParameterError, MissingCalibrationError
from .db import normalise_target_name

__all__ = ["make_zero_from_products", "star_products"]

log = logging.getLogger("nres.pipeline.zeros")


def _qc(row) -> dict:
    qc = row["qc"]
    if isinstance(qc, str | np.str_):  # JSON text in the table view
        qc = json.loads(str(qc) or "{}")
    return dict(qc or {})


def _products(row) -> list:
    products = row["products"]
    if isinstance(products, str | np.str_):
        products = json.loads(str(products) or "[]")
    return list(products or [])


def star_products(db, *, target, start=None, end=None, site=None, camera=None) -> list[dict]:
    """The reduced TARGET frames of a star in ``db`` whose 1-D product exists, sorted by MJD.

    Parameters
    ----------
    db : nres.pipeline.Database
    target : str
        Star name (compared normalised: ``"HD 10700"`` == ``"hd10700"``).
    start, end : float, optional
        MJD range (inclusive) of the frames.
    site, camera : str, optional
        Only frames of this site / camera.

    Returns
    -------
    list of dict
        ``{"path": 1-D product, "mjd_obs", "site", "camera", "fiber", "z_b" (float or None)}``.
    """
    key = normalise_target_name(target)
    out = []
    for row in db.frames_table(success=True):
        if str(row["obstype"]) != "TARGET":
            continue
        qc = _qc(row)
        if normalise_target_name(qc.get("target", "")) != key:
            continue
        mjd = float(row["mjd_obs"])
        if (start is not None and mjd < start) or (end is not None and mjd > end):
            continue
        if site is not None and str(row["site"]).lower() != str(site).lower():
            continue
        if camera is not None and str(row["camera"]) != str(camera):
            continue
        product = next((p for p in _products(row) if str(p).endswith("-1d.fits")), None)
        if product is None or not Path(product).exists():
            continue
        bc = qc.get("barycentric_correction_m_s")
        z_b = float(bc) / C_M_S if bc is not None and np.isfinite(float(bc)) else None
        fiber = qc.get("science_fiber")
        out.append(
            {
                "path": str(product),
                "mjd_obs": mjd,
                "site": str(row["site"]),
                "camera": str(row["camera"]),
                "fiber": None if fiber is None else int(fiber),
                "z_b": z_b,
            }
        )
    return sorted(out, key=lambda r: r["mjd_obs"])


def _catalogue_rv(db, target):
    """The star's catalogue RV (km/s) from the target list, or None."""
    try:
        row = db.target(target)
    except MissingCalibrationError:
        return None, {}
    rv = row.get("rv")
    extra = {k: row.get(k) for k in ("teff", "logg") if row.get(k) is not None}
    return (None if rv is None else float(rv)), extra


def make_zero_from_products(
    db,
    *,
    target,
    out_dir,
    rv=None,
    start=None,
    end=None,
    site=None,
    camera=None,
    is_standard=False,
    iterations=3,
    knot_step=None,
    overwrite=True,
) -> dict:
    """Build a ZERO of ``target`` from the night's 1-D products, write it and register it in ``db``.

    Parameters
    ----------
    db : nres.pipeline.Database
        Where the frames were recorded (by :func:`~nres.pipeline.night.reduce_night`) and where the
        ZERO is registered (:meth:`~nres.pipeline.Database.add_zero`).
    target : str
        The star.
    out_dir : str or os.PathLike
        Directory of the ZERO file ``zero_<STAR>_<site>_<camera>_<MJD>.fits`` (created).
    rv : Quantity, optional
        The star's catalogue RV: the ZERO's zero point. Default: the target list's ``rv`` (km/s),
        else the 1-D header ``RADVEL`` (km/s), else 0 (logged: RVs against the ZERO are then
        relative).
    start, end : float, optional
        MJD range of the frames used.
    site, camera : str, optional
        Frames of one site / camera only (default: those of the first frame).
    is_standard : bool
        Register the ZERO as a vetted RV standard (:func:`~nres.pipeline.night.best_zero` prefers
        those).
    iterations, knot_step
        Of :func:`nres.rv.zero.build_zero` (``knot_step`` None: its default).
    overwrite : bool
        Replace an existing ZERO file of the same name.

    Returns
    -------
    dict
        The registered ``zeros`` row (``path``, ``target``, ``nframes``, ``mjd_obs`` = mean MJD, ...).

    Raises
    ------
    MissingCalibrationError
        No reduced frame of ``target`` with an existing 1-D product in the range.
    InvalidParameterError
        ``rv`` not a velocity.
    """
    from ..rv import Template, write_zero
    from .spectrum1d import read_echelle_spectrum_1d

    frames = star_products(db, target=target, start=start, end=end, site=site, camera=camera)
    if frames:
        site = frames[0]["site"] if site is None else site
        camera = frames[0]["camera"] if camera is None else camera
        frames = [f for f in frames if f["site"].lower() == str(site).lower() and f["camera"] == camera]
    if not frames:
        raise MissingCalibrationError(
            f"target={target!r}: no reduced TARGET frame with a 1-D product in {db.url} "
            f"(MJD {start}..{end}, site {site}, camera {camera})"
        )
    spectra = [read_echelle_spectrum_1d(f["path"]) for f in frames]
    cat_rv, extra = _catalogue_rv(db, target)
    if rv is None:
        if cat_rv is None and "RADVEL" in spectra[0].meta:
            cat_rv = float(spectra[0].meta["RADVEL"])
        if cat_rv is None:
            log.warning("%s: no catalogue RV; the ZERO's zero point is 0 (RVs relative)", target)
        rv = (cat_rv or 0.0) * u.km / u.s
    if not isinstance(rv, u.Quantity) or not rv.unit.is_equivalent(u.m / u.s):
        raise InvalidParameterError(f"rv: expected a velocity Quantity, got {rv!r}")
    fibers = {f["fiber"] for f in frames}
    fiber = fibers.pop() if len(fibers) == 1 else None  # mixed fibers: each spectrum's own star fiber
    z_b = [f["z_b"] for f in frames]
    zero = Template.from_spectra(
        spectra,
        fiber=fiber,
        z_b=None if any(z is None for z in z_b) else z_b,
        rv=rv,
        iterations=iterations,
        **({} if knot_step is None else {"knot_step": knot_step}),
    )
    mjd = float(np.mean([f["mjd_obs"] for f in frames]))
    out_dir = Path(os.fspath(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    star = normalise_target_name(target)
    path = out_dir / f"zero_{star}_{str(site).lower()}_{camera}_{mjd:.4f}.fits"
    meta0 = spectra[0].meta
    header = {"OBJECT": str(target), "MJD-OBS": mjd, "NRESCMD": "make_zero_from_products"}
    for key in ("SITEID", "INSTRUME", "TELESCOP"):
        if key in meta0:
            header[key] = meta0[key]
    write_zero(zero, path, header=header, overwrite=overwrite)
    log.info("%s: ZERO of %s from %d spectra", path, target, len(spectra))
    return db.add_zero(
        path,
        target=str(target),
        site=str(site),
        camera=str(camera),
        mjd_obs=mjd,
        nframes=len(spectra),
        is_standard=bool(is_standard),
        **extra,
    )
