"""find_traces on a flat with cosmic rays and the negative holes a single-frame dark leaves.

The pipeline's full-size flats, processed with a master dark of one frame, failed with
"2 found traces overlapping in x match the same reference trace": the subtracted dark's hits dig
holes that split a trace's column-binned profile. Reproduced on a simulated window: a flat with
cosmic rays (rate 50 / cm2 / s, 25x the default) minus 3x the cosmic-ray charge of another
simulated exposure failed before the spike rejection; now every trace is found to the accuracy of
a clean flat.
"""

import numpy as np
import pytest

from nres.extract import find_traces
from nres.extract.trace import _spikes
from nres.sim import SimConfig, simulate

from .test_trace_sim import _check

WINDOW = (1200, 1700, 1024, 2048)
FIBERS = (1, 2)


@pytest.fixture(scope="module")
def flats():
    cfg = SimConfig(cosmic_rate=50.0)
    flat, truth = simulate("LAMPFLAT", site="lsc", seed=5, fibers=FIBERS, config=cfg, window=WINDOW)
    # the cosmic-ray charge of another exposure, noiseless (hits minus the same frame without them)
    hit, _ = simulate(
        "LAMPFLAT", site="lsc", seed=9, fibers=FIBERS, config=cfg, window=WINDOW, noiseless=True
    )
    cfg0 = SimConfig(cosmic_rate=0.0)
    base, _ = simulate(
        "LAMPFLAT", site="lsc", seed=9, fibers=FIBERS, config=cfg0, window=WINDOW, noiseless=True
    )
    charge = hit.data - base.data
    holed = flat.copy()
    holed.data = flat.data - 3.0 * charge  # a dark 3x longer than the flat, subtracted
    return flat, holed, truth, charge


def test_flat_with_dark_holes_traces_like_a_clean_flat(flats):
    _, holed, truth, charge = flats
    assert (charge > 1000.0).sum() > 100  # the reproduction really has strong hits
    traces = find_traces(holed)
    # same limits as the clean-flat test (rms < 0.01 px, max < 0.05 px per trace, right ids)
    assert _check(traces, truth, FIBERS, WINDOW) >= 14


def test_flat_with_cosmic_rays(flats):
    flat, _, truth, _ = flats
    assert _check(find_traces(flat), truth, FIBERS, WINDOW) >= 14


def test_spikes_finds_injected_hits_and_spares_traces(flats):
    flat, holed, _, charge = flats
    var = np.asarray(flat.uncertainty.array, dtype=np.float64)
    good = ~np.asarray(flat.mask, dtype=bool)  # as find_traces: the simulator's defects are masked
    spikes = _spikes(np.asarray(holed.data, dtype=np.float64), var, good)
    strong = good & (3.0 * charge > 20.0 * np.sqrt(var) + 0.3 * np.abs(flat.data))  # far past the limit
    # most strong holes are caught (pixels of tracks whose row neighbours are hit too can be missed)
    assert spikes[strong].mean() > 0.8
    # a flat without cosmic rays: nothing is flagged beyond noise (a 6-sigma limit: ~1e-9 per pixel
    # for Gaussian noise; allow 10 pixels of 0.5 M for the defects' edges) -- the traces survive
    clean, _ = simulate(
        "LAMPFLAT", site="lsc", seed=5, fibers=FIBERS, config=SimConfig(cosmic_rate=0.0), window=WINDOW
    )
    cgood = ~np.asarray(clean.mask, dtype=bool)
    cdata = np.asarray(clean.data, dtype=np.float64)
    assert _spikes(cdata, np.asarray(clean.uncertainty.array, dtype=np.float64), cgood).sum() <= 10
