"""Benchmark of the original's end-to-end ThAr fit (nres.wavecal.idl_fit; GDL took ~25 s).

Cases: ``fit_idl`` on GDL's catalogue (tests/data/wavecal_thar_fit_gdl.npz) with the legacy options
and with the defaults, and ``thar_fitall_legacy`` (data check + thar_catalog + fit) on a noiseless
synthetic 67 x 4096 arc. No timing target in the issue for this legacy path; the recorded
``nfev`` is the number of objective evaluations (GDL: 57). If ``../shared/idl_reference/thar`` is
present, also the end-to-end run from GDL's input spectrum (nres's own thar_catalog) and its
agreement with GDL's lam_c. Writes results/wavecal_idl.json.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import astropy.units as u
import numpy as np

from _common import time_cold_warm, write_results
from nres.instrument import PhysicalModel, thar_lines
from nres.wavecal.idl_fit import fit_idl, thar_fitall_legacy

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared" / "idl_reference" / "thar" / "data.npz"


def _synthetic(start):
    grinc = math.degrees(math.asin(start.sinalp)) + 0.0005
    truth = dataclasses.replace(
        start, sinalp=math.sin(math.radians(grinc)), fl=start.fl + 0.005, y0=start.y0 + 0.002
    )
    grid = truth.wavelength_grid()[1].to_value(u.nm)
    lines = thar_lines("redman")
    lam, bright = lines["wavelength"].to_value(u.nm), np.asarray(lines["intensity"])
    k = np.arange(start.nx, dtype=np.float64)
    flux = np.full((start.nord, start.nx), 30.0)
    for i, row in enumerate(grid):
        s = (lam > row[0]) & (lam < row[-1])
        xl = np.interp(lam[s], row, k)
        peak = 0.5 * np.minimum(bright[s], 60000.0)
        flux[i] += (peak[:, None] * np.exp(-0.5 * ((k[None] - xl[:, None]) / 1.75) ** 2)).sum(axis=0)
    return flux


def main() -> None:
    start = PhysicalModel.for_site("lsc", mjd=58200, legacy=True)
    gdl = np.load(ROOT / "tests" / "data" / "wavecal_thar_fit_gdl.npz")
    c = gdl["catalog"].astype(np.float64)
    cat = {"order_index": c[:, 0], "x": c[:, 1], "amp": c[:, 2], "wid": c[:, 3]}
    flux = _synthetic(start)
    cases = {}
    for name, func in {
        "fit_idl_gdl_catalog_legacy": lambda: fit_idl(cat, model=start, legacy=True),
        "fit_idl_gdl_catalog_default": lambda: fit_idl(cat, model=start),
        "thar_fitall_legacy_synthetic": lambda: thar_fitall_legacy(flux, model=start, legacy=True),
    }.items():
        case = time_cold_warm(func, repeat=3)
        case["nfev"] = func().qc["nfev"]
        cases[name] = case
    if SHARED.exists():
        d = np.load(SHARED)
        fit = thar_fitall_legacy(d["in_tharspec"].astype(np.float64), model=start, legacy=True)
        case = time_cold_warm(
            lambda: thar_fitall_legacy(d["in_tharspec"].astype(np.float64), model=start, legacy=True),
            repeat=2,
        )
        dl = fit.wavelength_grid().to_value(u.nm) - d["out_lam_c"]
        case.update(
            nfev=fit.qc["nfev"],
            nmatch=fit.qc["nmatch"],
            nmatch_gdl=int(d["out_scalars"][0]),
            lam_c_max_abs_diff_nm=float(np.abs(dl).max()),
            lam_c_rms_diff_nm=float(np.sqrt(np.mean(dl**2))),
            coefs_max_abs_diff_nm=float(np.abs(np.asarray(fit.model.coefs) - d["out_coefs_c"]).max()),
        )
        cases["thar_fitall_legacy_gdl_spectrum"] = case
    write_results("wavecal_idl", cases)


if __name__ == "__main__":
    main()
