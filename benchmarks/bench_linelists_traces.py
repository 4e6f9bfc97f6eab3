"""Benchmarks of the line lists, air/vacuum conversion and reference traces of nres.instrument.

Run ``python benchmarks/bench_linelists_traces.py``; writes ``benchmarks/results/linelists_traces.json``.
No issue sets targets here; ours: every call well under 0.1 s warm so recipes can call them freely
(cold includes parsing the packaged text files once per process).
"""

from __future__ import annotations

import sys
from pathlib import Path

import astropy.units as u
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_cold_warm, write_results


def main() -> None:
    from nres.instrument import air_to_vacuum, reference_traces, thar_lines, vacuum_to_air

    lam = np.linspace(380.0, 870.0, 3 * 67 * 4096) * u.nm  # one wavelength per pixel of a spectrum
    x = np.arange(4096.0)
    cases = {
        "thar_lines_redman": {**time_cold_warm(lambda: thar_lines("redman")), "target_s": 0.1},
        "thar_lines_eso_air": {**time_cold_warm(lambda: thar_lines("eso", medium="air")), "target_s": 0.1},
        "air_to_vacuum_823k": {**time_cold_warm(lambda: air_to_vacuum(lam)), "target_s": 0.1},
        "vacuum_to_air_823k": {**time_cold_warm(lambda: vacuum_to_air(lam)), "target_s": 0.1},
        "reference_traces_lsc": {**time_cold_warm(lambda: reference_traces("lsc")), "target_s": 0.1},
        "reference_traces_center_201x4096": {
            **time_cold_warm(lambda: reference_traces("lsc").center(x)),
            "target_s": 0.1,
        },
    }
    write_results("linelists_traces", cases)


if __name__ == "__main__":
    main()
