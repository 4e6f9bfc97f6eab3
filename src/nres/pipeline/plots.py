"""Summary figure of a reduced TARGET frame (PNG or PDF, by the file's extension).

Four panels: the normalised spectrum around Mg b (517.27 nm; the order nearest to it when the
frame does not reach it, e.g. a window), the CCF of the RV measurement, the S/N per order, and
the residuals of the wavelength solution's lines. :func:`summary_plot` builds the figure,
:func:`summary_figure` writes it to one or several files (``summary_format`` "png", "pdf" or
"both" of the TARGET recipe: :func:`summary_paths`).
"""

from __future__ import annotations

import os
from pathlib import Path

import astropy.units as u
import numpy as np

from ..errors import InvalidParameterError
from .products import atomic_path, product_path

__all__ = ["summary_figure", "summary_plot", "summary_paths", "SUMMARY_FORMATS", "MGB_NM"]

#: Mg b triplet centre (vacuum, nm): 516.891, 517.426, 518.519 (Mg I b4..b1); the panel centre
MGB_NM = 517.27
#: summary_format -> product kinds written (products.PRODUCT_SUFFIXES)
SUMMARY_FORMATS = {"png": ("summary_png",), "pdf": ("summary",), "both": ("summary_png", "summary")}


def summary_paths(raw, out_dir, summary_format="png") -> list:
    """Summary file paths of a raw frame for ``summary_format`` "png", "pdf" or "both"."""
    if summary_format not in SUMMARY_FORMATS:
        msg = f"summary_format: expected one of {', '.join(SUMMARY_FORMATS)}, got {summary_format!r}"
        raise InvalidParameterError(msg)
    return [product_path(raw, kind, out_dir) for kind in SUMMARY_FORMATS[summary_format]]


def _mgb_order(spec, fiber):
    fi = int(np.flatnonzero(np.asarray(spec.fibers) == fiber)[0])
    lam = spec.wavelength.to_value(u.nm)[fi]
    mid = np.nanmedian(lam, axis=1)
    covers = (np.nanmin(lam, axis=1) <= MGB_NM) & (np.nanmax(lam, axis=1) >= MGB_NM)
    j = int(np.flatnonzero(covers)[0]) if covers.any() else int(np.nanargmin(np.abs(mid - MGB_NM)))
    return fi, j, bool(covers.any())


def summary_plot(spec, *, fiber: int, rv=None, solution=None, snr=None, title: str = ""):
    """The summary figure of a TARGET frame (a ``matplotlib.figure.Figure``, 2 x 2 axes, no pyplot state).

    Parameters
    ----------
    spec : EchelleSpectrum
        Wavelength-calibrated spectrum (with blaze for the normalised panel).
    fiber : int
        Science fiber.
    rv : RVResult, optional
        Its CCF is drawn (and the RV in the title).
    solution : WavelengthSolution, optional
        Its line residuals (m/s) are drawn against wavelength.
    snr : dict of order -> float, optional
        S/N per order (:func:`nres.pipeline.qc.snr_per_order`).
    title : str
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7.5), layout="constrained")  # not registered with pyplot: nothing to close
    axes = fig.subplots(2, 2)
    ax = axes[0, 0]
    if spec.wavelength is not None:
        fi, j, covers = _mgb_order(spec, fiber)
        lam = spec.wavelength.to_value(u.nm)[fi, j]
        flux = np.asarray(spec.data[fi, j], float)
        if spec.blaze is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                flux = flux / np.asarray(spec.blaze[fi, j], float)
        flux = np.where(np.asarray(spec.mask[fi, j]), np.nan, flux)
        norm = np.nanpercentile(flux, 95) if np.isfinite(flux).any() else 1.0
        ax.plot(lam, flux / norm, lw=0.6, color="k")
        label = "Mg b" if covers else f"order {int(spec.orders[j])} (nearest to Mg b)"
        ax.set_title(f"fiber {fiber}: {label}")
        ax.set_xlabel("vacuum wavelength [nm]")
        ax.set_ylabel("flux / blaze (normalised)")
    ax = axes[0, 1]
    if rv is not None and len(rv.ccf):
        v = np.asarray(u.Quantity(rv.ccf["velocity"][0]).to_value(u.km / u.s))
        ax.plot(v, np.asarray(rv.ccf["ccf"][0], float), color="C0")
        ax.axvline(rv.rv_observed.to_value(u.km / u.s), color="C3", lw=0.8)
        ax.set_title(
            f"RV {rv.rv.to_value(u.km / u.s):.4f} km/s +- {rv.rv_err_photon.to_value(u.m / u.s):.2f} m/s"
        )
    ax.set_xlabel("velocity (observed) [km/s]")
    ax.set_ylabel("CCF")
    ax = axes[1, 0]
    if snr:
        orders = np.array([int(k) for k in snr])
        ax.plot(orders, [snr[k] for k in snr], "o-", ms=3)
    ax.set_xlabel("order m")
    ax.set_ylabel("median S/N per pixel")
    ax = axes[1, 1]
    if solution is not None and len(solution.lines):
        lines = solution.lines
        used = np.asarray(lines["used"], bool)
        lam = u.Quantity(lines["wavelength"]).to_value(u.nm)
        res = u.Quantity(lines["residual_m_s"]).to_value(u.m / u.s)
        ax.plot(lam[used], res[used], ".", ms=3, label="used")
        ax.plot(lam[~used], res[~used], "x", ms=3, color="0.6", label="rejected")
        ax.legend(fontsize=8)
        ax.set_title(f"wavelength solution: rms {solution.qc.get('rms_m_s', float('nan')):.1f} m/s")
    ax.set_xlabel("wavelength [nm]")
    ax.set_ylabel("line residual [m/s]")
    fig.suptitle(title)
    return fig


def summary_figure(path, spec, *, fiber: int, rv=None, solution=None, snr=None, title: str = ""):
    """Write the summary figure of a TARGET frame atomically (:func:`summary_plot`).

    Parameters
    ----------
    path : str, os.PathLike or sequence of them
        ``.png`` or ``.pdf`` (format by extension); a sequence writes the one figure to each.
    spec, fiber, rv, solution, snr, title :
        As :func:`summary_plot`.

    Returns
    -------
    pathlib.Path, or list of them when ``path`` is a sequence
    """
    single = isinstance(path, str | os.PathLike)
    paths = [Path(os.fspath(p)) for p in ([path] if single else path)]
    fig = summary_plot(spec, fiber=fiber, rv=rv, solution=solution, snr=snr, title=title)
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip(".") or "png", dpi=90)
    return paths[0] if single else paths
