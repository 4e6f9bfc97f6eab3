"""The original pipeline's TRACE FITS files (idl-calib-trace-extract.md 13) to and from
:class:`~nres.traces.Traces` and :class:`~nres.extract.profiles.Profiles`.

Layout: primary HDU, float32, numpy shape ``(NBLOCK + 1, NFIB, NORD, NC)`` with
``NC = max(COWID, NPOLY)``. Plane 0 holds the Legendre coefficients ``[0, f, i, :NPOLY]`` of order
index i (m = 52 + i) and fiber f in ``X = (x - NX/2) / (NX/2)``; planes 1..NBLOCK hold the block
profiles ``[1 + b, f, i, :COWID]`` (sum 1, peak near index (COWID - 1) / 2).

Conventions converted here, once: the original's trace y is the flux centroid + 0.5 px (its rows
span [j, j + 1)); nres puts pixel centres at integers, so 0.5 is subtracted on reading and added
on writing. ``X`` is nres's Legendre variable with ``x_domain = (0, NX)``. Block b of the padded
(NBLOCK x ceil-width) grid covers columns ``width b - pad .. width (b + 1) - 1 - pad``; its profile
is attributed to the block's centre column.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.io import fits
from numpy.polynomial import legendre

from ..errors import InvalidInputFileError, InvalidParameterError
from ..traces import Traces

__all__ = ["read_idl_trace", "write_idl_trace", "IDL_TRACE_OFFSET", "ORD0"]

#: y of the original's traces minus nres's y (px).
IDL_TRACE_OFFSET = 0.5
#: physical order of order index 0.
ORD0 = 52


def _blocks(nx, nblock):
    """(block width, left padding, block centre columns) of the original's block grid."""
    width = math.ceil(nx / nblock)
    pad = (nblock * width - nx) // 2
    centres = np.arange(nblock) * width - pad + (width - 1) / 2.0
    return width, pad, centres


def read_idl_trace(path, *, ord0=ORD0):
    """Read a TRACE file of the original pipeline.

    Parameters
    ----------
    path : str or Path
        TRACE FITS file (``TRAC<site><date>.fits``, possibly fpacked: the first image HDU is used).
    ord0 : int
        Physical order of order index 0 (52 on NRES).

    Returns
    -------
    traces : Traces
        One trace per (fiber, order) with non-zero coefficients, in nres's pixel convention,
        ``x_domain = (0, NX)``, ``box_height = ORDWIDTH``; ``meta`` has SITEID, INSTRUME, FILE_IN.
    profiles : Profiles
        Block profiles (n_fiber, n_order, NBLOCK, COWID) at ``dy = k - (COWID - 1) / 2``, linear
        interpolation between block centres.

    Raises
    ------
    InvalidInputFileError
        Missing file, no image, or a header/shape that does not match the TRACE layout.
    """
    try:
        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.data is not None and h.data.ndim == 4), None)
            if hdu is None:
                raise InvalidInputFileError(path, "no 4-D TRACE image (NBLOCK+1, NFIB, NORD, NC)")
            data = np.asarray(hdu.data, dtype=np.float64)
            hdr = hdu.header.copy()
    except FileNotFoundError as err:
        raise InvalidInputFileError(path, "file does not exist") from err
    except OSError as err:
        if isinstance(err, InvalidInputFileError):
            raise
        raise InvalidInputFileError(path, f"not a FITS file ({err})") from err
    nplane, nfib, nord, nc = data.shape
    try:
        nx = int(hdr["NX"])
        npoly = int(hdr["NPOLY"])
        ordwidth = float(hdr["ORDWIDTH"])
    except KeyError as err:
        raise InvalidInputFileError(path, f"TRACE header lacks {err.args[0]}") from err
    cowid = int(hdr.get("COWID", math.ceil(ordwidth)))
    nblock = int(hdr.get("NBLOCK", nplane - 1))
    if nplane != nblock + 1 or npoly > nc or cowid > nc:
        msg = f"shape {data.shape} does not fit NBLOCK={nblock}, NPOLY={npoly}, COWID={cowid}"
        raise InvalidInputFileError(path, msg)
    coef = data[0, :, :, :npoly].reshape(nfib * nord, npoly).copy()
    fibers = np.repeat(np.arange(nfib), nord)
    orders = np.tile(ord0 + np.arange(nord), nfib)
    keep = np.any(coef != 0, axis=1)
    coef[:, 0] -= IDL_TRACE_OFFSET
    meta = {k: hdr[k] for k in ("SITEID", "INSTRUME", "FILE_IN", "OUTNAME") if k in hdr}
    traces = Traces(
        coef[keep],
        orders[keep],
        fibers[keep],
        x_domain=(0.0, float(nx)),
        x_valid=np.tile([0.0, nx - 1.0], (int(keep.sum()), 1)),
        box_height=ordwidth,
        meta=meta,
    )
    from ..extract.profiles import Profiles  # lazy: nres.io stays importable without numba

    prof = np.moveaxis(data[1:, :, :, :cowid], 0, 2)  # (nfib, nord, nblock, cowid)
    _, _, centres = _blocks(nx, nblock)
    profiles = Profiles(
        prof,
        np.arange(nfib),
        ord0 + np.arange(nord),
        centres,
        np.arange(cowid) - (cowid - 1) / 2.0,
        block_width=float(math.ceil(nx / nblock)),
        meta=dict(meta),
    )
    return traces, profiles


def write_idl_trace(
    path,
    traces,
    profiles=None,
    *,
    nx=4096,
    nord=67,
    nfib=3,
    nblock=12,
    ord0=ORD0,
    header=None,
    overwrite=False,
) -> None:
    """Write traces (and block profiles) in the original's TRACE layout.

    Parameters
    ----------
    path : str or Path
    traces : Traces
        Any x domain (refitted exactly to ``X = (x - nx/2) / (nx/2)``); orders must lie in
        ord0 .. ord0 + nord - 1 and fibers in 0 .. nfib - 1. Missing (fiber, order) are zeros.
    profiles : Profiles, optional
        Resampled to the ``COWID = ceil(box_height)`` offsets and to the block centres, then
        normalised to unit sum; default a flat 1/COWID profile (as the original's trace0).
    nx, nord, nfib, nblock, ord0 : int
        Layout of the file (NRES: 4096, 67, 3, 12, 52).
    header : dict-like, optional
        Extra cards (SITEID, INSTRUME, DAY-OBS...).
    overwrite : bool

    Raises
    ------
    InvalidParameterError
        An order or fiber outside the layout.
    """
    if not isinstance(traces, Traces):
        msg = f"traces: expected nres.traces.Traces, got {type(traces).__name__}"
        raise InvalidParameterError(msg)
    oi = traces.orders - ord0
    if np.any((oi < 0) | (oi >= nord)) or np.any((traces.fibers < 0) | (traces.fibers >= nfib)):
        msg = f"traces: orders must be in {ord0}..{ord0 + nord - 1} and fibers in 0..{nfib - 1}"
        raise InvalidParameterError(msg)
    cowid = math.ceil(traces.box_height)
    npoly = traces.degree + 1
    nc = max(cowid, npoly)
    out = np.zeros((nblock + 1, nfib, nord, nc))
    # the same polynomials in X: sample, then solve (exact, both variables are linear in x)
    xs = np.linspace(0.0, nx, 4 * npoly)
    big_x = 2.0 * xs / nx - 1.0
    coef = np.linalg.lstsq(legendre.legvander(big_x, traces.degree), traces.center(xs).T, rcond=None)[0].T
    coef[:, 0] += IDL_TRACE_OFFSET
    out[0, traces.fibers, oi, :npoly] = coef
    _, _, centres = _blocks(nx, nblock)
    dy = np.arange(cowid) - (cowid - 1) / 2.0
    for f, o in zip(traces.fibers.tolist(), traces.orders.tolist(), strict=True):
        if profiles is None:
            block = np.full((nblock, cowid), 1.0 / cowid)
        else:
            p = profiles.at(f, o, centres)
            block = np.array([np.interp(dy, profiles.dy, row, left=0.0, right=0.0) for row in p])
            block /= np.maximum(block.sum(axis=1, keepdims=True), 1e-300)
        out[1:, f, o - ord0, :cowid] = block
    hdr = fits.Header()
    for key, value in (
        ("NX", nx),
        ("NORD", nord),
        ("NFIB", nfib),
        ("NPOLY", npoly),
        ("ORDWIDTH", traces.box_height),
        ("COWID", cowid),
        ("NBLOCK", nblock),
        ("OBSTYPE", "TRACE"),
        ("RLEVEL", 91),
    ):
        hdr[key] = value
    for key, value in dict(header or {}).items():
        hdr[key] = value
    fits.PrimaryHDU(out.astype(np.float32), header=hdr).writeto(path, overwrite=overwrite)
