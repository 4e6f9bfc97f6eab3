"""Cosmic-ray flagging of single frames, and filling flagged pixels of a master with a local estimate.

Two detectors (:func:`flag_cosmic_rays`):

- ``method="contrast"`` (own numba kernels, ``_kernels.contrast_cosmics``): a pixel is a hit when
  it exceeds the brighter of its two neighbours along the row, or the brighter of its two along the
  column, by ``sigclip`` sigma *and* by ``contrast`` times that neighbour's level. Echelle frames
  vary smoothly along at least one of the two directions at every pixel (the spectrum along an
  order; a line's cross-dispersion profile along y; a ThAr line is >= 2 px wide), so a real feature
  is never many times brighter than both its neighbours there -- a hit is, and a track along a
  column (which optimal extraction, fitting a profile per column, cannot reject) is against its row.
  Neighbours of hits are grown with lower limits. ~0.15 s per full frame, so the pipeline runs it
  on every TARGET and calibration frame.
  Hits fainter than ``contrast`` x the local level (a 1500 e- hit on a 15000 e- order core) are left
  to the extraction's per-column rejection, which handles single-pixel outliers.
- ``method="lacosmic"``: L.A.Cosmic (van Dokkum 2001) through astroscrappy, the maintained
  astropy-affiliated C/OpenMP implementation with the fine-structure test (``objlim``). On NRES
  frames it takes 8-24 s per full frame and flags bright order cores where a frame (or a window)
  cuts an order; kept for frames of other instruments and for comparison.

The original pipeline never implemented cosmic-ray rejection (idl-calib-trace-extract.md 16.15);
BANZAI does none on single frames.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData, VarianceUncertainty

from ..errors import InvalidParameterError
from ..flags import FLAG_DTYPE, Flag, empty_flags, flags_to_mask
from ..provenance import record_provenance
from . import _kernels
from .ccd import _variance

__all__ = ["flag_cosmic_rays", "fill_masked", "COSMIC_METHODS"]

#: Detectors of :func:`flag_cosmic_rays`.
COSMIC_METHODS = ("lacosmic", "contrast")
#: Most growth rounds of the contrast method (each reaches one pixel further along a track).
GROW_ROUNDS = 3


def _read_noise(meta, read_noise):
    read_noise = meta.get("RDNOISE") if read_noise is None else read_noise
    if read_noise is None or not float(read_noise) >= 0:
        msg = f"read_noise: expected the read noise in electrons (header RDNOISE), got {read_noise!r}"
        raise InvalidParameterError(msg)
    return float(read_noise)


def _lacosmic(data, inmask, read_noise, sigclip, sigfrac, objlim, niter):
    import astroscrappy  # heavy import, only when used

    crmask, _ = astroscrappy.detect_cosmics(
        np.where(inmask, 0.0, data).astype(np.float32),
        inmask=inmask,
        gain=1.0,  # data already in electrons
        readnoise=read_noise,
        satlevel=np.inf,
        sigclip=sigclip,
        sigfrac=sigfrac,
        objlim=objlim,
        niter=niter,
        verbose=False,
    )
    return np.asarray(crmask, dtype=bool)


def flag_cosmic_rays(
    frame,
    *,
    method: str = "lacosmic",
    read_noise=None,
    sigclip: float | None = None,
    sigfrac: float = 0.3,
    objlim: float = 5.0,
    niter: int = 4,
    contrast: float = 3.0,
    grow_sigma: float = 3.0,
    grow_contrast: float = 0.5,
    grow_from: int = 0,
    dilate: bool = False,
) -> CCDData:
    """Flag cosmic-ray hits of one processed frame (electrons) with COSMIC_RAY.

    Parameters
    ----------
    frame : CCDData
        Processed frame in electrons (bias/dark subtracted), shape (ny, nx); its masked and
        non-finite pixels are neither flagged nor used as neighbours.
    method : {"lacosmic", "contrast"}
        Detector (module docstring). The pipeline uses "contrast".
    read_noise : float, optional
        Read noise in electrons (header RDNOISE unless given). "contrast" uses the frame's variance
        when it has one (the neighbours' median variance), else read noise + Poisson.
    sigclip : float, optional
        Detection limit in sigma: L.A.Cosmic's Laplacian-to-noise limit (default 4.5), or the
        contrast method's excess over the reference neighbour (default 6; sigma^2 = the pixel's
        variance plus the neighbour's, so Gaussian noise crosses it at ~1e-9 per pixel and
        direction: ~0.03 pixels of a full frame).
    sigfrac, objlim, niter
        L.A.Cosmic only (astroscrappy.detect_cosmics): fraction of ``sigclip`` for neighbours,
        contrast limit against fine structure, iterations.
    contrast : float
        Contrast method: a hit exceeds its reference neighbour by more than ``contrast`` times that
        neighbour's level (3: four times as bright; the sharpest real NRES feature, a ThAr line's
        peak against the brighter of its row neighbours, is at most ~2 times as bright).
    grow_sigma, grow_contrast : float
        Contrast method: limits for the 8 neighbours of a hit (up to :data:`GROW_ROUNDS` rounds),
        against the second brightest of their usable neighbours at -+1, -+2 along the row or the
        column (the brightest with fewer than three; the hits left out), so a track two pixels
        thick and its partially hit edges are flagged; ``grow_sigma=0`` turns the growth off.
    grow_from : int
        Contrast method: flag bits (:class:`nres.flags.Flag`) of pixels whose neighbours are grown
        like a hit's: ``Flag.SATURATED`` flags the partially hit, unsaturated neighbours of a
        track's saturated pixels (and, in frames with light, the bright wings of saturated lines).
    dilate : bool
        Also flag the 8 neighbours of every detected pixel.

    Returns
    -------
    CCDData
        Copy of ``frame`` (data unchanged) with COSMIC_RAY set in ``flags`` and the mask updated;
        provenance records the method, its parameters and ``n_flagged``.
    """
    if method not in COSMIC_METHODS:
        raise InvalidParameterError(f"method: expected one of {COSMIC_METHODS}, got {method!r}")
    meta = frame.meta or {}
    rn = _read_noise(meta, read_noise)
    data = np.asarray(frame.data, dtype=np.float64)
    if data.ndim != 2:
        raise InvalidParameterError(f"frame: expected a 2-D image, got shape {data.shape}")
    inmask = ~np.isfinite(data)
    if frame.mask is not None:
        inmask |= np.asarray(frame.mask, dtype=bool)
    var = _variance(frame)
    if method == "lacosmic":
        sigclip = 4.5 if sigclip is None else float(sigclip)
        crmask = _lacosmic(data, inmask, rn, sigclip, sigfrac, objlim, niter)
        options = {"sigclip": sigclip, "sigfrac": sigfrac, "objlim": objlim, "niter": niter}
    else:
        sigclip = 6.0 if sigclip is None else float(sigclip)
        if not (sigclip > 0 and contrast >= 0 and grow_sigma >= 0 and grow_contrast >= 0):
            msg = (
                "flag_cosmic_rays: expected sigclip > 0 and contrast, grow_sigma, grow_contrast >= 0; got "
                f"{sigclip}, {contrast}, {grow_sigma}, {grow_contrast}"
            )
            raise InvalidParameterError(msg)
        use_var = var is not None
        fflags = getattr(frame, "flags", None)
        seed = np.zeros(data.shape, dtype=np.bool_)
        if grow_from and fflags is not None:
            seed = (np.asarray(fflags) & FLAG_DTYPE(grow_from)) != 0
        crmask = np.empty(data.shape, dtype=np.bool_)
        bad = np.ascontiguousarray(inmask)
        noise = (var if use_var else np.zeros((1, 1)), use_var, rn * rn)
        _kernels.contrast_cosmics(np.ascontiguousarray(data), *noise, bad, sigclip, float(contrast), crmask)
        if grow_sigma > 0:
            # rounds of growth from the hits (and seeds) found so far: a track's partially hit edges
            # and its second pixel where it is two pixels thick; each round's references leave out
            # every pixel flagged before it
            skip = bad | crmask | seed
            ys, xs = _kernels.true_coords(crmask, seed)
            for _ in range(GROW_ROUNDS):
                ys, xs = _kernels._grow_cosmics(
                    np.ascontiguousarray(data), *noise, skip, ys, xs, float(grow_sigma), float(grow_contrast),
                    crmask,
                )  # fmt: skip
                if ys.size == 0:
                    break
                skip[ys, xs] = True
        options = {"sigclip": sigclip, "contrast": contrast, "grow_sigma": grow_sigma}
        options |= {"grow_contrast": grow_contrast, "grow_from": int(grow_from)}
    crmask &= ~inmask
    if dilate:
        grown = crmask.copy()
        grown[1:] |= crmask[:-1]
        grown[:-1] |= crmask[1:]
        g2 = grown.copy()
        g2[:, 1:] |= grown[:, :-1]
        g2[:, :-1] |= grown[:, 1:]
        crmask = g2
    flags = getattr(frame, "flags", None)
    flags = empty_flags(data.shape) if flags is None else np.array(flags, dtype=FLAG_DTYPE)
    flags[crmask] |= FLAG_DTYPE(Flag.COSMIC_RAY)
    out = CCDData(
        np.array(frame.data),
        unit=frame.unit,
        uncertainty=None if var is None else VarianceUncertainty(var.copy(), copy=False),
        mask=flags_to_mask(flags),
        flags=flags,
        meta=meta.copy(),
    )
    record_provenance(
        out.meta,
        "nres.calib.flag_cosmic_rays",
        method=method,
        **options,
        dilate=dilate,
        n_flagged=int(crmask.sum()),
    )
    return out


def fill_masked(frame, *, flags=Flag.COSMIC_RAY | Flag.NO_WEIGHT, max_half: int = 32) -> CCDData:
    """Replace the values of flagged pixels by a local estimate; the pixels stay flagged and masked.

    For a master (or a single frame used as one): a pixel left without a value by the stack (NaN,
    NO_WEIGHT) or holding a cosmic ray would otherwise reach every frame it calibrates as NaN or
    as a hole; its mask already makes those pixels BAD_PIXEL there (:func:`process_ccd`), and a
    finite, typical value keeps the subtracted frames clean for steps that look at values only.

    Parameters
    ----------
    frame : CCDData
        Frame with ``flags`` (uint16) or a mask.
    flags : int
        Bits (:class:`nres.flags.Flag`) whose pixels are filled; without a flags array, every masked
        pixel.
    max_half : int
        Largest half-width (columns) searched along the row for unmasked pixels.

    Returns
    -------
    CCDData
        Copy with data (and variance) of the selected pixels = the median of the unmasked, finite
        pixels of the same row within +-2, 4, 8, ... columns (the first with at least 2; along the
        row because an echelle frame varies smoothly along its orders); flags and mask unchanged.
        Pixels with no such neighbour keep their value. Provenance records ``n_filled``.
    """
    if int(max_half) < 2:
        raise InvalidParameterError(f"max_half: expected an integer >= 2, got {max_half!r}")
    data = np.ascontiguousarray(frame.data, dtype=np.float64)
    fflags = getattr(frame, "flags", None)
    mask = np.zeros(data.shape, bool) if frame.mask is None else np.asarray(frame.mask, dtype=bool)
    select = mask.copy() if fflags is None else (np.asarray(fflags) & FLAG_DTYPE(flags)) != 0
    usable = ~mask & np.isfinite(data)
    var = _variance(frame)
    use_var = var is not None
    if use_var:
        usable &= np.isfinite(var)
    out = data.copy()
    out_var = var.copy() if use_var else np.zeros((1, 1))
    _kernels._fill_rows(
        data, var if use_var else np.zeros((1, 1)), use_var, np.ascontiguousarray(select),
        np.ascontiguousarray(usable), int(max_half), out, out_var,
    )  # fmt: skip
    meta = (frame.meta or {}).copy()
    record_provenance(meta, "nres.calib.fill_masked", flags=int(flags), n_filled=int(select.sum()))
    return CCDData(
        out,
        unit=frame.unit,
        uncertainty=VarianceUncertainty(out_var, copy=False) if use_var else None,
        mask=None if frame.mask is None else mask.copy(),
        flags=None if fflags is None else np.array(fflags, dtype=FLAG_DTYPE),
        meta=meta,
    )
