"""Benchmark of cosmic-ray flagging: nres.calib.flag_cosmic_rays on a full simulated TARGET frame.

Cases: the contrast method (the pipeline's) with numba's default threads and with one thread (batch
workers), grown from saturated pixels as in the recipes; L.A.Cosmic (astroscrappy, niter=1, the
cheapest setting) once for comparison; fill_masked of the frame's flagged pixels. Target: the
contrast method under 0.5 s warm on one thread (the TARGET recipe takes ~2.3 s; the flagging must
stay a small part of it). Writes benchmarks/results/cosmic.json with the load average before each
case and the number of pixels flagged against the simulator's truth.
"""

from __future__ import annotations

import os

import numba
import numpy as np

from _common import time_cold_warm, write_results
from nres._jit import set_num_threads
from nres.calib import fill_masked, flag_cosmic_rays
from nres.flags import Flag, flags_to_mask
from nres.sim import simulate


def main():
    frame, truth = simulate("TARGET", site="lsc", seed=3)  # full 4096 x 4096, processed-like
    flags = np.asarray(frame.flags) & ~np.uint16(Flag.COSMIC_RAY)  # the simulator flags its own hits
    frame.flags = flags
    frame.mask = flags_to_mask(flags)
    cases = {}
    default_threads = numba.get_num_threads()
    for threads in (default_threads, 1):
        set_num_threads(threads)
        load = os.getloadavg()[0]

        def run():
            return flag_cosmic_rays(frame, method="contrast", grow_from=Flag.SATURATED)

        case = time_cold_warm(run, repeat=5)
        out = run()
        cr = (out.flags & Flag.COSMIC_RAY) != 0
        case |= {
            "target_s": 0.5, "passed": case["warm_s"] <= 0.5, "numba_threads": threads,
            "load_average_1min": load, "shape": list(frame.shape),
            "n_truth_hits": int(truth.cosmic_rays.sum()), "n_flagged": int(cr.sum()),
            "n_flagged_on_truth_hits": int((cr & truth.cosmic_rays).sum()),
        }  # fmt: skip
        suffix = "" if threads == default_threads else "_1_thread"
        cases[f"contrast_full_frame{suffix}"] = case
    set_num_threads(default_threads)
    flagged = flag_cosmic_rays(frame, method="contrast", grow_from=Flag.SATURATED)
    load = os.getloadavg()[0]
    case = time_cold_warm(lambda: fill_masked(flagged, flags=Flag.COSMIC_RAY), repeat=5)
    cases["fill_masked_full_frame"] = case | {"target_s": None, "passed": None, "load_average_1min": load}
    load = os.getloadavg()[0]
    case = time_cold_warm(lambda: flag_cosmic_rays(frame, method="lacosmic", niter=1), repeat=1)
    cases["lacosmic_niter1_full_frame"] = case | {"target_s": None, "passed": None, "load_average_1min": load}
    write_results("cosmic", cases)


if __name__ == "__main__":
    main()
