"""The original's Stage B block fit, literal port (``blockfit2``/``lsqblkfit2``, idl-rv-ops.md 9-10).

Every order is cut into ``nblock`` equal pixel blocks; the ZERO (pre-shifted by the Stage A
redshift) is fitted to each star block by an iterated linear least squares for an additive level
``aa``, a scale ``bb`` and a shift ``rr``; the blocks are combined by a quartile clip and an
inverse-variance mean. These functions reproduce the original, defects included (the sign of
``rr``, the offset variance reported as the redshift error): they are the ``legacy`` engine of
``measure(..., method="blocks")``, whose default fit (:mod:`nres.rv.blocks`) fixes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..doppler import C_M_S
from . import _idl

__all__ = [
    "BlockFit",
    "block_starts",
    "TAPER",
    "lsqblkfit2",
    "blockfit2",
    "combine_blocks",
    "pldp",
]

#: Weights of the first 10 non-zero data pixels of a block (mirrored at its end).
TAPER = np.array([0.0, 0.02, 0.10, 0.21, 0.35, 0.50, 0.65, 0.79, 0.90, 0.98])
_DR_TOL = 3e-10  # convergence on the shift (about 10 cm/s)
_R_MAX = 1e-3  # abort beyond 300 km/s
_MAX_ITER = 10
_C_KM_S = C_M_S / 1e3


@dataclass(frozen=True)
class BlockFit:
    """One block's fit in the original's terms.

    Attributes
    ----------
    rr : float
        Fitted shift with ``data(lambda) ~ Z(lambda (1 + rr))`` (so ``rr ~ -z``).
    aa, bb : float
        Additive level and scale.
    cov : ndarray (3, 3)
        Inverse of the unscaled weighted normal matrix of the last iteration, basis order
        [offset, scale, pixel shift].
    pldp : float
        Photon-limited precision of the block (km/s).
    model, resid : ndarray (n,)
    iterations : int
    """

    rr: float
    aa: float
    bb: float
    cov: np.ndarray
    pldp: float
    model: np.ndarray
    resid: np.ndarray
    iterations: int


def block_starts(nx, nblock):
    """First pixel of each block and the block length: ``floor(k * (nx / nblock))`` with the ratio in
    single precision, length ``floor(nx / nblock)`` (nx=4096, nblock=12: 0, 341, 682, 1024, ...)."""
    ratio = np.float32(nx) / np.float32(nblock)
    starts = np.floor(np.arange(nblock, dtype=np.float32) * ratio).astype(np.int64)
    return starts, int(nx // nblock)


def pldp(lam, data):
    """The original's per-block photon-limited precision (km/s), data in ADU treated as photons:
    ``sigma_lambda = 1 / sqrt(sum max(I'^2 / max(I, 1), 1e-20))`` with ``I' = deriv(I) / (dlambda/dx)``."""
    lam = np.asarray(lam, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    dldx = (lam.max() - lam.min()) / (lam.size - 1)
    lmid = 0.5 * (lam.max() + lam.min())
    ip = _idl.deriv(data) / dldx
    sig = 1.0 / np.sqrt(np.sum(np.maximum(ip * ip / np.maximum(data, 1.0), 1e-20)))
    return float(_C_KM_S * sig / lmid)


def lsqblkfit2(lam, zblock, data, weight):
    """The original's iterated linear fit of ``bb (Z(lambda (1 + rr)) - aa) + aa`` to one block.

    Parameters
    ----------
    lam, zblock, data, weight : array_like (n,)
        Wavelengths (nm), template on those wavelengths, data, weights (they multiply both the basis
        and the data, so chi^2 uses weight^2).

    Returns
    -------
    (rr, aa, bb, cov, model, resid, iterations)
    """
    lam, z, d, w = (np.asarray(a, dtype=np.float64) for a in (lam, zblock, data, weight))
    zbar = np.sum(w * z) / np.sum(w)
    u0 = z - zbar
    aa = np.sum(w * d) / np.sum(w)
    bb = np.sum((d - aa) * u0 * w) / np.sum(u0 * u0 * w)
    rr = 0.0
    cov = np.zeros((3, 3))
    it = 0
    for it in range(1, _MAX_ITER + 1):  # noqa: B007 - the count is returned
        lt = lam * (1.0 + rr)
        zt = _idl.interpol_quadratic(z, lam, lt)
        uu = zt - aa
        m = bb * uu + aa
        g = _idl.deriv(m)
        res = d - m
        basis = np.stack([np.ones_like(d), uu, g]) * w
        a = basis @ basis.T
        b = basis @ (res * w)
        try:
            c = np.linalg.solve(a, b)
            cov = np.linalg.inv(a)
        except np.linalg.LinAlgError:
            c = np.zeros(3)
            cov = np.zeros((3, 3))
        if not np.any(zt):
            c = np.zeros(3)
        aa += c[0]
        bb += c[1]
        dr = c[2] * np.mean(_idl.deriv(lt) / lt)
        rr += dr
        if abs(dr) <= _DR_TOL or abs(rr) >= _R_MAX:
            break
    # the model at the final parameters (what the GDL run returns, to ~1e-6 relative)
    model = bb * (_idl.interpol_quadratic(z, lam, lam * (1.0 + rr)) - aa) + aa
    resid = d - model
    return rr, aa, bb, cov, model, resid, it


def blockfit2(lam, zblock, data) -> BlockFit:
    """The original's ``blockfit2``: taper weights on the non-zero data, PLDP, then :func:`lsqblkfit2`.

    With 20 or fewer non-zero data pixels every output is 0.
    """
    lam, z, d = (np.asarray(a, dtype=np.float64) for a in (lam, zblock, data))
    nz = np.flatnonzero(d != 0)
    n = d.size
    if nz.size <= 20:
        return BlockFit(0.0, 0.0, 0.0, np.zeros((3, 3)), 0.0, np.zeros(n), np.zeros(n), 0)
    w = np.ones(n)
    w[nz[:10]] = TAPER
    w[nz[-10:]] = TAPER[::-1]
    pl = pldp(lam, d)
    rr, aa, bb, cov, model, resid, it = lsqblkfit2(lam, z, d, w)
    return BlockFit(rr, aa, bb, cov, pl, model, resid, it)


def combine_blocks(rr, err):
    """The original's block combination: quartile clip at ``4 dq / 1.35`` about the (upper) median,
    then ``(inverse-variance mean, median, 1 / sqrt(sum 1/err^2))`` of the kept cells; cells with
    ``rr == 0`` or ``err == 0`` are not candidates; (0, 0, 0) if nothing is kept."""
    rr = np.asarray(rr, dtype=np.float64).ravel()
    err = np.asarray(err, dtype=np.float64).ravel()
    cand = (rr != 0) & (err != 0)
    if not cand.any():
        return 0.0, 0.0, 0.0
    vals, errs = rr[cand], err[cand]
    med, _, _, dq = _idl.quartile(vals)
    keep = np.abs(vals - med) <= 4.0 * dq / 1.35
    if not keep.any():
        return 0.0, 0.0, 0.0
    w = 1.0 / errs[keep] ** 2
    return float(np.sum(vals[keep] * w) / np.sum(w)), _idl.median(vals[keep]), float(1.0 / np.sqrt(np.sum(w)))
