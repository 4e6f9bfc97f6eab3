"""Benchmark of nres.rv.measure: all 67 orders x 4096 pixels of one simulated spectrum, every method.

Target (issues 4 and 10): under 0.3 s warm per spectrum for every method (template, mask, ccf,
blocks). Each method is timed with the default numba threads and with one thread (batch workers run
one thread each; on a loaded machine the parallel kernels' thread start/join can cost more than they
save). The 1-minute load average before each case is recorded, and for ccf/blocks/ZERO the best CPU
time (time.process_time). Writes benchmarks/results/rv.json.
"""

from __future__ import annotations

import os
import time

import astropy.units as u
import numba
import numpy as np

from _common import time_cold_warm, write_results
from nres._jit import set_num_threads
from nres.rv import LineMask, Template, measure
from nres.sim.extracted import simulate_extracted


def _cpu_best(func, repeat):
    """Best CPU time (time.process_time, all threads of the process) of ``repeat`` calls, seconds."""
    best = np.inf
    for _ in range(repeat):
        c0 = time.process_time()
        func()
        best = min(best, time.process_time() - c0)
    return best


def main():
    spec, truth = simulate_extracted(seed=1, rv=12.3 * u.km / u.s, z_b=1e-5, noiseless=False, snr=100.0)
    lam = spec.wavelength.to_value(u.nm)[0]
    grid = np.array([np.linspace(row.min() - 1.0, row.max() + 1.0, 4 * row.size) for row in lam]) * u.nm
    tmpl = Template(grid, truth.template.flux(grid), wavelength_medium="vacuum")
    lines = truth.template.lines
    deep = lines["depth"] > 0.3
    mask = LineMask(lines["wavelength"][deep], lines["depth"][deep], wavelength_medium="vacuum")
    cases = {}
    default_threads = numba.get_num_threads()
    for threads in (default_threads, 1):
        set_num_threads(threads)
        for name, ref, method in (("template", tmpl, "template"), ("mask", mask, "mask")):
            load = os.getloadavg()[0]
            case = time_cold_warm(
                lambda ref=ref, method=method: measure(spec, ref, method=method, z_b=1e-5), repeat=7
            )
            case["target_s"] = 0.3
            case["passed"] = case["warm_s"] <= 0.3
            case["shape"] = list(spec.shape)
            case["numba_threads"] = threads
            case["load_average_1min"] = load
            suffix = "" if threads == default_threads else "_1_thread"
            cases[f"{name}_67_orders{suffix}"] = case
    # part 2: the ccf and blocks methods (67 orders) and a ZERO from 5 epochs (67 orders, no target)
    for threads in (default_threads, 1):
        set_num_threads(threads)
        suffix = "" if threads == default_threads else "_1_thread"
        for method in ("ccf", "blocks"):
            load = os.getloadavg()[0]
            run = lambda method=method: measure(spec, tmpl, method=method, z_b=1e-5)  # noqa: E731
            case = time_cold_warm(run, repeat=7)
            case["warm_cpu_s"] = _cpu_best(run, 7)
            case.update(target_s=0.3, shape=list(spec.shape), numba_threads=threads, load_average_1min=load)
            case["passed"] = case["warm_s"] <= 0.3
            cases[f"{method}_67_orders{suffix}"] = case
    set_num_threads(default_threads)
    zbs = np.linspace(-8e-5, 8e-5, 5)
    epochs = [
        simulate_extracted(seed=1, rv=12.3 * u.km / u.s, z_b=z, noiseless=False, snr=100.0)[0] for z in zbs
    ]
    load = os.getloadavg()[0]
    build = lambda: Template.from_spectra(epochs, z_b=zbs, rv=12.3 * u.km / u.s)  # noqa: E731
    case = time_cold_warm(build, repeat=2)
    case["warm_cpu_s"] = _cpu_best(build, 2)
    case.update(target_s=None, passed=None, n_epochs=5, shape=list(spec.shape), load_average_1min=load)
    case["note"] = (
        "ZERO build incl. 3 bootstrap iterations (15 template fits) and the variance; "
        "138 s before the banded variance and the continuum kernels"
    )
    cases["zero_5_epochs_67_orders"] = case
    write_results("rv", cases)


if __name__ == "__main__":
    main()
