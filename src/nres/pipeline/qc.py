"""Quality-control numbers of a reduced frame: S/N per order, arc line counts and rms, RV, trace shift.

Every function returns plain Python numbers (JSON-ready for the database's ``qc`` column and the
product headers); none of them changes its input.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np

__all__ = ["snr_per_order", "spectrum_qc", "solution_qc", "rv_qc", "trace_shift"]


def snr_per_order(spec, fiber: int) -> dict:
    """Median S/N per pixel of each order of one fiber: ``{order: snr}`` (NaN without good pixels).

    S/N = flux / sqrt(variance) over unmasked pixels with positive variance.
    """
    fi = int(np.flatnonzero(np.asarray(spec.fibers) == fiber)[0])
    data = np.asarray(spec.data[fi], np.float64)
    var = (
        np.asarray(spec.variance[fi], np.float64) if spec.variance is not None else np.full_like(data, np.nan)
    )
    good = ~np.asarray(spec.mask[fi], bool) & np.isfinite(data) & (var > 0)
    out = {}
    for j, order in enumerate(np.asarray(spec.orders).tolist()):
        g = good[j]
        out[int(order)] = float(np.median(data[j, g] / np.sqrt(var[j, g]))) if g.any() else float("nan")
    return out


def trace_shift(spec, fiber: int | None = None) -> float:
    """Median offset (px) of the light from the profile centres (``meta["EXTRACTION"]["dy"]``).

    The extraction records, per (fiber, order), the median light centroid minus the profile's;
    its median over the orders (of ``fiber`` when given) is how far the traces of the flat are
    from this frame's light. NaN when the extraction recorded nothing.
    """
    table = spec.meta.get("EXTRACTION") if hasattr(spec.meta, "get") else None
    if table is None or "dy" not in table.colnames:
        return float("nan")
    dy = np.asarray(u.Quantity(table["dy"]).value if hasattr(table["dy"], "unit") else table["dy"], float)
    if fiber is not None:
        dy = dy[np.asarray(table["fiber"]) == fiber]
    dy = dy[np.isfinite(dy)]
    return float(np.median(dy)) if dy.size else float("nan")


def spectrum_qc(spec, fiber: int) -> dict:
    """S/N per order of ``fiber`` (``snr_per_order`` as ``{"<m>": snr}``), its median and maximum,
    and the trace shift."""
    snr = snr_per_order(spec, fiber)
    values = np.array([v for v in snr.values() if np.isfinite(v)])
    return {
        "snr_per_order": {str(k): v for k, v in snr.items()},
        "snr_median": float(np.median(values)) if values.size else float("nan"),
        "snr_max": float(values.max()) if values.size else float("nan"),
        "trace_shift_px": trace_shift(spec, fiber),
    }


def solution_qc(solution) -> dict:
    """Line counts and rms of a :class:`~nres.wavecal.WavelengthSolution` (from its ``qc``)."""
    qc = solution.qc
    keys = ("n_found", "n_matched", "n_used", "rms_nm", "rms_m_s", "noise_floor_m_s", "chi2_dof")
    return {f"wavecal_{k}": (float(qc[k]) if k in qc and qc[k] is not None else float("nan")) for k in keys}


def rv_qc(rv) -> dict:
    """RV, errors, barycentric correction (m/s), BJD_TDB and orders used of an ``RVResult``."""
    ms = u.m / u.s
    return {
        "rv_m_s": float(rv.rv.to_value(ms)),
        "rv_err_m_s": float(rv.rv_err_photon.to_value(ms)),
        "rv_err_empirical_m_s": float(rv.rv_err_empirical.to_value(ms)),
        "rv_observed_m_s": float(rv.rv_observed.to_value(ms)),
        "barycentric_correction_m_s": float(rv.barycentric_correction.to_value(ms)),
        "bjd_tdb": float("nan") if rv.bjd_tdb is None else float(rv.bjd_tdb.tdb.jd),
        "rv_n_orders_used": int(rv.meta.get("n_orders_used", 0)),
        "rv_fiber": int(rv.meta.get("fiber", -1)),
    }
