"""Benchmark of nres.spectrum.EchelleSpectrum at full NRES size (3 fibers, 67 orders, 4096 px).

Cases: construction (validation, flags -> mask), position slicing, barycentric conversion, and the
FITS write + read round trip (float32 flux, float64 wavelength). Writes results/spectrum.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.nddata import VarianceUncertainty

from _common import time_cold_warm, write_results
from nres.spectrum import EchelleSpectrum

SHAPE = (3, 67, 4096)


def main() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(1000.0, 30.0, SHAPE)
    var = np.full(SHAPE, 900.0)
    orders = np.arange(52, 119)
    wl = (1.0e5 / orders[None, :, None] + 0.002 * np.arange(4096)) * np.ones((3, 1, 1))
    kw = dict(
        uncertainty=VarianceUncertainty(var),
        wavelength=wl * u.nm,
        orders=orders,
        fibers=[0, 1, 2],
        blaze=np.ones(SHAPE),
    )
    spec = EchelleSpectrum(data, **kw)
    cases = {
        "construct_full": {**time_cold_warm(lambda: EchelleSpectrum(data, **kw)), "target_s": 0.5},
        "slice_one_fiber_10_orders": {**time_cold_warm(lambda: spec[0, 10:20, 100:4000]), "target_s": 0.1},
        "to_frame_barycentric": {
            **time_cold_warm(lambda: spec.to_frame("barycentric", z_b=1e-4)),
            "target_s": 0.5,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.fits"

        def round_trip():
            spec.write(path, overwrite=True)
            EchelleSpectrum.read(path)

        cases["fits_write_read_full"] = {
            **time_cold_warm(round_trip, repeat=3),
            "target_s": 2.0,
            "file_mb": None,
        }
        round_trip()
        cases["fits_write_read_full"]["file_mb"] = round(path.stat().st_size / 2**20, 1)
    for case in cases.values():
        case["passed"] = case["warm_s"] <= case["target_s"]
    write_results("spectrum", cases)


if __name__ == "__main__":
    main()
