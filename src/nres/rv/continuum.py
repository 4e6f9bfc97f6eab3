"""Continuum normalisation of spectra and templates for RV work: one rule for both.

The rule (:func:`continuum`), per order:

1. divide by the blaze when there is one (``data / blaze``), so what is left is the star's own
   continuum times a slowly varying residual;
2. fit a Legendre polynomial of ``degree`` in the normalised pixel coordinate t in [-1, 1] to the good
   points, then refit ``iterations`` times to the points that lie above ``fit - 0.5 * std`` of the
   residuals (an upper envelope: absorption lines fall below and are rejected) and below
   ``fit + 3 * std`` (cosmic rays, emission).

A template is normalised by the same function on its own samples, so data and template are divided
by continua built the same way. ``measure(method="template")`` fits this continuum jointly with the
shift (a Legendre polynomial times the blaze) instead of dividing by it; ``ccf`` and ``blocks`` divide.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError
from . import _kernels

__all__ = ["continuum", "continuum_rows", "normalize", "CONTINUUM_DEGREE"]

#: Default Legendre degree of the continuum of one order (after blaze division).
CONTINUUM_DEGREE = 3


def continuum(flux, good=None, *, degree=CONTINUUM_DEGREE, iterations=6, lower=0.5, upper=3.0, stride=1):
    """The smooth upper-envelope continuum of one order (the rule of this module).

    Parameters
    ----------
    flux : array_like (n,)
        Blaze-divided flux (any scale).
    good : array_like of bool (n,), optional
        Points that may be used (default: finite ones).
    degree : int
        Legendre degree.
    iterations : int
        Refits after the first.
    lower, upper : float
        Points more than ``lower`` std below or ``upper`` std above the fit are left out of the next fit.
    stride : int
        Fit every stride-th point only (a cheap continuum; evaluated at every point).

    Returns
    -------
    ndarray (n,)
        The continuum (the median of the good points if fewer than degree + 3 are usable).
    """
    y = np.asarray(flux, dtype=np.float64)
    if y.ndim != 1:
        msg = f"continuum: flux must be 1-D, got shape {y.shape}"
        raise InvalidParameterError(msg)
    ok = np.isfinite(y) if good is None else np.asarray(good, dtype=bool) & np.isfinite(y)
    if int(degree) < 0 or int(stride) < 1:
        msg = f"continuum: degree must be >= 0 and stride >= 1, got {degree}, {stride}"
        raise InvalidParameterError(msg)
    return _kernels.continuum_row(
        np.ascontiguousarray(y),
        np.ascontiguousarray(ok),
        int(degree),
        int(iterations),
        float(lower),
        float(upper),
        int(stride),
    )


def continuum_rows(flux, good, *, degree=CONTINUUM_DEGREE, iterations=6, lower=0.5, upper=3.0, stride=1):
    """:func:`continuum` of every row of a (n_row, n) array in one jitted call (``prange`` over rows)."""
    y = np.ascontiguousarray(flux, dtype=np.float64)
    ok = np.ascontiguousarray(np.asarray(good, dtype=bool) & np.isfinite(y))
    if y.ndim != 2 or y.shape[1] < 1:
        msg = f"continuum_rows: flux must be 2-D (n_row, n), got shape {y.shape}"
        raise InvalidParameterError(msg)
    if int(degree) < 0 or int(stride) < 1:
        msg = f"continuum: degree must be >= 0 and stride >= 1, got {degree}, {stride}"
        raise InvalidParameterError(msg)
    return _kernels.continuum_rows(
        y, ok, int(degree), int(iterations), float(lower), float(upper), int(stride)
    )


def normalize(data, variance=None, blaze=None, good=None, *, degree=CONTINUUM_DEGREE):
    """Continuum-normalised flux (and variance) of orders by :func:`continuum`.

    Parameters
    ----------
    data : array_like (n_order, n) or (n,)
    variance : array_like, same shape, optional
    blaze : array_like, same shape, optional
    good : array_like of bool, same shape, optional
    degree : int

    Returns
    -------
    flux : ndarray
        ``data / (blaze * continuum)``.
    variance : ndarray or None
        ``variance / (blaze * continuum)^2``.
    norm : ndarray
        The divisor ``blaze * continuum``.
    """
    d = np.atleast_2d(np.asarray(data, dtype=np.float64))
    b = np.ones_like(d) if blaze is None else np.atleast_2d(np.asarray(blaze, dtype=np.float64))
    g = np.isfinite(d) if good is None else np.atleast_2d(np.asarray(good, dtype=bool))
    with np.errstate(divide="ignore", invalid="ignore"):
        y = d / b
        g = g & np.isfinite(y) & (b > 0)
    norm = b * continuum_rows(y, g, degree=degree)
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = d / norm
        var = None if variance is None else np.atleast_2d(np.asarray(variance, dtype=np.float64)) / norm**2
    shape = np.shape(data)
    return flux.reshape(shape), (None if var is None else var.reshape(shape)), norm.reshape(shape)
