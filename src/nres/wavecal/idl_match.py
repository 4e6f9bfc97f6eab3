"""The original's pair-voting line matcher (``lineseg`` + ``matchline`` + ``uniqixg``), for parity.

Ported from idl-wavecal.md 6 (not from the IDL source). Every unordered pair of observed lines and
every pair of list lines is described by its mean wavelength and separation (float32, as IDL); a
list pair votes for the observed pairs whose mean agrees within ``dw`` and separation within
``ds``, one vote to (lower, lower) and one to (upper, upper). Cells with at least
max(5, 2/3 of the order's maximum) votes are accepted, and each observed line keeps the accepted
list line nearest to its predicted wavelength. nres's own matcher (:func:`match_lines`) is the
default; this one reproduces the original's choices.
"""

from __future__ import annotations

import numpy as np

__all__ = ["line_pairs", "pair_votes", "vote_matches"]


def line_pairs(lam):
    """(mean, separation) float32 (n(n-1)/2, 2) and indices (j, k), j < k, in IDL's order."""
    lam = np.asarray(lam, dtype=np.float64)
    j, k = np.triu_indices(lam.size, 1)
    parm = np.empty((j.size, 2), dtype=np.float32)
    parm[:, 0] = (lam[j] + lam[k]) / 2.0
    parm[:, 1] = np.abs(lam[k] - lam[j])
    return parm, np.stack([j, k], axis=1).astype(np.int32)


def pair_votes(lam_obs, lam_ref, *, dw=0.3, ds=0.015):
    """Vote matrix (n_ref, n_obs), int32, of the original's ``matchline``.

    Parameters
    ----------
    lam_obs : ndarray
        Predicted wavelengths of the observed lines of one order, nm, sorted.
    lam_ref : ndarray
        List wavelengths in the order's window, nm, sorted.
    dw, ds : float
        Tolerances on the pair mean and separation, nm (the original: 0.3, 0.015).
    """
    po, io = line_pairs(lam_obs)
    pr, ir = line_pairs(lam_ref)
    votes = np.zeros((np.size(lam_ref), np.size(lam_obs)), dtype=np.int32)
    if po.shape[0] == 0 or pr.shape[0] == 0:
        return votes
    dmean = np.abs(po[None, :, 0] - pr[:, None, 0])
    dsep = np.abs(po[None, :, 1] - pr[:, None, 1])
    r, o = np.nonzero((dmean <= np.float32(dw)) & (dsep <= np.float32(ds)))
    np.add.at(votes, (ir[r, 0], io[o, 0]), 1)
    np.add.at(votes, (ir[r, 1], io[o, 1]), 1)
    return votes


def vote_matches(lam_obs, lam_ref, *, dw=0.3, ds=0.015, min_votes=5):
    """Index into ``lam_ref`` of each observed line's match (-1 = none), by the voting rule."""
    lam_obs = np.asarray(lam_obs, dtype=np.float64)
    lam_ref = np.asarray(lam_ref, dtype=np.float64)
    out = np.full(lam_obs.size, -1, dtype=np.int64)
    if lam_ref.size <= 2 or lam_obs.size < 2:
        return out
    votes = pair_votes(lam_obs, lam_ref, dw=dw, ds=ds)
    accept = votes >= max(min_votes, 2.0 / 3.0 * votes.max())
    for i in np.flatnonzero(accept.any(axis=0)):
        cand = np.flatnonzero(accept[:, i])
        out[i] = cand[np.argmin(np.abs(lam_obs[i] - lam_ref[cand]))]
    return out
