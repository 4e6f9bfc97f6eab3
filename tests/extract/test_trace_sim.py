"""The issue's numbers on the simulator's lamp flats (nres.sim): moved, rotated and scaled geometry,
every site, both fiber pairs; truth = each trace's per-column flux centroid."""

import numpy as np
import pytest

from nres.extract import find_traces, refine_traces
from nres.sim import SimConfig, simulate

# a trace counts as on the frame where its centre is this far inside: the centroid window
# (half height <= 8 px) plus the background samples must fit, as for any tracer
MARGIN = 10.0


def _check(traces, truth, fibers, window, *, min_columns=200):
    """Assert: every on-frame true trace found with its order and fiber, centre error within
    the issue's limits (rms < 0.01 px, max < 0.05 px) over the columns where it is valid."""
    y0, y1 = window[0], window[1]
    x = truth.x
    cy = traces.center(x)
    checked = 0
    for i, (f, o) in enumerate(zip(truth.fibers.tolist(), truth.orders.tolist(), strict=True)):
        c = truth.centers[i]
        inside = np.isfinite(c) & (c >= y0 + MARGIN) & (c <= y1 - 1 - MARGIN)
        if f not in fibers or inside.sum() < min_columns:
            continue
        k = traces.index(f, o)  # KeyError: missed or misidentified
        ok = inside & traces.valid(x)[k]
        # the flat must give most of the on-frame columns (faint blue order ends excepted)
        assert ok.sum() >= 0.5 * inside.sum(), (f, o)
        d = cy[k][ok] - c[ok]
        assert np.sqrt(np.mean(d**2)) < 0.01, (f, o)
        assert np.abs(d).max() < 0.05, (f, o)
        checked += 1
    # nothing spurious: every found trace is a lit (fiber, order) of the truth (the nuisance traces
    # beyond a window's edges are tested in test_neighbours.py)
    true_keys = set(zip(truth.fibers.tolist(), truth.orders.tolist(), strict=True))
    found = traces[~traces.nuisance]
    assert set(zip(found.fibers.tolist(), found.orders.tolist(), strict=True)) <= true_keys
    return checked


@pytest.mark.parametrize(
    ("site", "fibers", "shift", "rotation", "scale"),
    [
        ("elp", (1, 2), -37.0, 2e-3, 1.002),
        ("cpt", (0, 1), 28.0, -1.5e-3, 0.998),
        ("lsc", (1, 2), 61.0, 1e-3, 1.0),
    ],
)
def test_windowed_simulated_flats(site, fibers, shift, rotation, scale):
    cfg = SimConfig(trace_shift=shift, trace_rotation=rotation, trace_scale=scale)
    window = (1200, 1700, 1024, 2048)
    flat, truth = simulate("LAMPFLAT", site=site, seed=5, fibers=fibers, config=cfg, window=window)
    traces = find_traces(flat)
    assert _check(traces, truth, fibers, window) >= 14
    # identification saw the shift (about the detector middle; rotation moves it < 5 px here)
    assert traces.meta["IDSHIFT"] == pytest.approx(shift, abs=5.0)


def test_full_frame_simulated_flat_and_refine():
    """The one full-frame test: every on-chip order of both lit fibers, moved by 45 px."""
    cfg = SimConfig(trace_shift=45.0, trace_rotation=1e-3, trace_scale=1.001)
    flat, truth = simulate("LAMPFLAT", site="lsc", seed=7, fibers=(0, 1), config=cfg)
    window = (0, 4096, 0, 4096)
    traces = find_traces(flat)
    assert _check(traces, truth, (0, 1), window) >= 120
    # refining the found set on the same flat keeps it (a fixed point within the noise)
    again = refine_traces(flat, traces)
    x = np.arange(0.0, 4096.0, 64.0)
    both = traces.valid(x) & again.valid(x)
    assert np.abs(again.center(x) - traces.center(x))[both].max() < 0.02


def test_order_with_middle_off_the_chip_is_one_trace():
    """Moved 70 px down, the lowest orders leave the chip in the middle and come back at both ends:
    the two ends are found separately, identified as the same order and fitted as one trace."""
    cfg = SimConfig(trace_shift=-70.0, trace_rotation=2e-3, trace_scale=1.003)
    window = (0, 1000, 0, 4096)
    flat, truth = simulate("LAMPFLAT", site="elp", seed=3, fibers=(1, 2), config=cfg, window=window)
    traces = find_traces(flat)
    assert traces.meta["IDMERGED"] >= 1
    assert _check(traces, truth, (1, 2), window) >= 8
    # a joined order: valid at both ends, off the chip (centre < 0) in the middle
    k = traces.index(1, 52)
    left, mid, right = traces.center([200.0, 2048.0, 3900.0])[k]
    assert left > 10 and right > 10 and mid < 0
