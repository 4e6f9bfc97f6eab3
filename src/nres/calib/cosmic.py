"""Cosmic-ray flagging of single frames (L.A.Cosmic through astroscrappy).

Why astroscrappy rather than an own numba kernel: it is the maintained, astropy-affiliated C
implementation of van Dokkum's (2001) Laplacian edge detection, with the fine-structure
(``objlim``) test that keeps sharp but real features such as narrow echelle orders and ThAr
lines; it already runs parallel (OpenMP) and is validated on many instruments. A home-made
kernel would only reproduce it with less testing. The original pipeline never implemented
cosmic-ray rejection (idl-calib-trace-extract.md 16.15); BANZAI does none on single frames.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData, VarianceUncertainty

from ..errors import InvalidParameterError
from ..flags import FLAG_DTYPE, Flag, empty_flags, flags_to_mask
from ..provenance import record_provenance

__all__ = ["flag_cosmic_rays"]


def flag_cosmic_rays(
    frame,
    *,
    read_noise=None,
    sigclip: float = 4.5,
    sigfrac: float = 0.3,
    objlim: float = 5.0,
    niter: int = 4,
    dilate: bool = False,
) -> CCDData:
    """Flag cosmic-ray hits of one processed frame (electrons) with COSMIC_RAY.

    Parameters
    ----------
    frame : CCDData
        Processed frame in electrons (bias/dark subtracted), shape (ny, nx); its mask is
        excluded from the detection.
    read_noise : float, optional
        Read noise in electrons (header RDNOISE unless given).
    sigclip, sigfrac, objlim, niter
        L.A.Cosmic parameters (astroscrappy.detect_cosmics): detection limit in sigma, fraction
        of it for neighbours, contrast limit against fine structure, iterations.
    dilate : bool
        Also flag the 8 neighbours of every detected pixel.

    Returns
    -------
    CCDData
        Copy of ``frame`` (data unchanged) with COSMIC_RAY set in ``flags`` and the mask updated.
    """
    import astroscrappy  # heavy import, only when used

    meta = frame.meta or {}
    read_noise = meta.get("RDNOISE") if read_noise is None else read_noise
    if read_noise is None or not float(read_noise) >= 0:
        msg = f"read_noise: expected the read noise in electrons (header RDNOISE), got {read_noise!r}"
        raise InvalidParameterError(msg)
    data = np.asarray(frame.data, dtype=np.float32)
    if data.ndim != 2:
        raise InvalidParameterError(f"frame: expected a 2-D image, got shape {data.shape}")
    inmask = ~np.isfinite(data)
    if frame.mask is not None:
        inmask |= np.asarray(frame.mask, dtype=bool)
    crmask, _ = astroscrappy.detect_cosmics(
        np.where(inmask, 0.0, data).astype(np.float32),
        inmask=inmask,
        gain=1.0,  # data already in electrons
        readnoise=float(read_noise),
        satlevel=np.inf,
        sigclip=sigclip,
        sigfrac=sigfrac,
        objlim=objlim,
        niter=niter,
        verbose=False,
    )
    crmask = np.asarray(crmask, dtype=bool) & ~inmask
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
    unc = frame.uncertainty
    if unc is not None and not isinstance(unc, VarianceUncertainty):
        unc = unc.represent_as(VarianceUncertainty)
    out = CCDData(
        np.array(frame.data),
        unit=frame.unit,
        uncertainty=None if unc is None else VarianceUncertainty(unc.array.copy()),
        mask=flags_to_mask(flags),
        flags=flags,
        meta=meta.copy(),
    )
    record_provenance(
        out.meta,
        "nres.calib.flag_cosmic_rays",
        sigclip=sigclip,
        sigfrac=sigfrac,
        objlim=objlim,
        niter=niter,
        dilate=dilate,
        n_flagged=int(crmask.sum()),
    )
    return out
