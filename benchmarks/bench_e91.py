"""The original's e91 layout on a full-size spectrum (2 fibers x 67 orders x 4096 columns, with blaze and RV).

Cases:
- ``write_e91``: the 10-HDU file, plain ``.fits`` (what ``reduce_target(e91=True)`` writes; ~10 MB).
- ``write_e91_fz``: the same, tile-compressed (lossless GZIP per order, ``.fits.fz``).
- ``read_e91`` / ``read_e91_fz``: back into EchelleSpectrum objects.
- ``compare_e91``: against the frame's ``-1d.fits`` product (134 fiber-order rows).
- ``summary_pdf``: the 4-panel summary figure written as PDF (``summary_format="pdf"``).
Target: writing the e91 file adds at most 0.5 s to a TARGET reduction (2.3 s warm to the RV,
docs/pipeline.md). Run ``python benchmarks/bench_e91.py``; writes ``benchmarks/results/e91.json``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_cold_warm, write_results


def _inputs():
    import astropy.units as u
    import numpy as np
    from astropy.nddata import VarianceUncertainty
    from astropy.table import QTable

    from nres.instrument import PhysicalModel
    from nres.rv import RVResult
    from nres.spectrum import EchelleSpectrum

    model = PhysicalModel.for_site("lsc", mjd=58600.0)
    x = np.arange(4096.0)
    orders = np.arange(52, 119)
    lam = np.stack([model.wavelength(x[None, :], orders[:, None], f).to_value(u.nm) for f in (0, 1)])
    rng = np.random.default_rng(1)
    blaze = np.broadcast_to(np.exp(-0.5 * ((x - 2048.0) / 1200.0) ** 2), lam.shape).copy()
    data = 5e4 * blaze + rng.normal(0.0, 100.0, lam.shape)
    spec = EchelleSpectrum(
        data, uncertainty=VarianceUncertainty(np.abs(data) + 49.0), wavelength=lam * u.nm, orders=orders,
        fibers=[0, 1], blaze=blaze, meta={"OBJECTS": "star&thar&none", "GAIN": 3.2},
    )  # fmt: skip
    v = np.linspace(-50e3, 50e3, 401)
    ccf = QTable(
        {"velocity": [v] * u.m / u.s, "ccf": [np.exp(-0.5 * (v / 4e3) ** 2)], "fwhm": [9.4e3] * u.m / u.s}
    )
    ms = u.m / u.s
    rv = RVResult(rv=1e3 * ms, rv_observed=0.0 * ms, rv_err_photon=1.0 * ms, rv_err_empirical=1.0 * ms,
                  barycentric_correction=1e3 * ms, bjd_tdb=None, orders=QTable({"order": orders}), ccf=ccf,
                  meta={"method": "template"})  # fmt: skip
    return spec, rv


def main() -> None:
    from nres.pipeline.e91 import compare_e91, read_e91, write_e91
    from nres.pipeline.plots import summary_figure
    from nres.pipeline.spectrum1d import write_spectrum_1d

    spec, rv = _inputs()
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain, packed = tmp / "x-e91.fits", tmp / "x-e91.fits.fz"
        cases["write_e91"] = time_cold_warm(lambda: write_e91(plain, spec, rv=rv), repeat=3)
        cases["write_e91"]["target_s"] = 0.5
        cases["write_e91"]["size_mb"] = plain.stat().st_size / 1e6
        cases["write_e91_fz"] = time_cold_warm(lambda: write_e91(packed, spec, rv=rv), repeat=3)
        cases["write_e91_fz"]["size_mb"] = packed.stat().st_size / 1e6
        cases["read_e91"] = time_cold_warm(lambda: read_e91(plain), repeat=3)
        cases["read_e91_fz"] = time_cold_warm(lambda: read_e91(packed), repeat=3)
        one_d = write_spectrum_1d(tmp / "x-1d.fits", spec, rv=rv)
        cases["compare_e91"] = time_cold_warm(lambda: compare_e91(plain, one_d), repeat=3)
        snr = {int(m): 100.0 for m in spec.orders}
        cases["summary_pdf"] = time_cold_warm(
            lambda: summary_figure(tmp / "x-summary.pdf", spec, fiber=0, rv=rv, snr=snr), repeat=3
        )
    write_results("e91", cases)


if __name__ == "__main__":
    main()
