"""Tracing on synthetic lamp flats with known per-column flux centroids (conftest.render_flat)."""

import numpy as np
import pytest

from nres.errors import FitError, InvalidParameterError
from nres.extract import find_traces, identify_traces, lit_fibers, refine_traces

WINDOW = (250, 700, 1500, 2524)  # orders ~57..68 of lsc, 1024 columns


def _errors(traces, truth):
    """Per true trace (fiber, order): (rms, max) of found - true centre; missing -> KeyError."""
    out = {}
    for i, (f, o) in enumerate(zip(truth["fibers"], truth["orders"], strict=True)):
        c = truth["centers"][i]
        ok = np.isfinite(c)
        if ok.sum() < 50:
            continue
        k = traces.index(int(f), int(o))
        d = traces.center(truth["x"])[k][ok] - c[ok]
        out[(int(f), int(o))] = (np.sqrt(np.mean(d**2)), np.abs(d).max())
    return out


@pytest.fixture(scope="module")
def make_flat(flat_factory):
    """Flats on WINDOW with a sloped background (80 e- + 0.5 e-/row)."""

    def make(seed_traces, **kw):
        return flat_factory(seed_traces, window=WINDOW, background=80.0, slope=0.5, **kw)

    return make


@pytest.fixture(scope="module")
def shifted_flat(seed_traces, make_flat):
    # moved 23.7 px, rotated 1 mrad, scaled by 1.002, with a sloped background
    return make_flat(seed_traces, fibers=(0, 1), dy=23.7, rot=1e-3, scale=1.002)


def test_find_traces_shifted_rotated_centres_and_ids(shifted_flat, seed_traces):
    flat, truth = shifted_flat
    traces = find_traces(flat, reference=seed_traces)
    errs = _errors(traces, truth)  # KeyError if an on-window trace was missed or misidentified
    assert len(errs) >= 20
    # the targets: rms < 0.01 px and max < 0.05 px per trace against the true centroids
    for key, (rms, mx) in errs.items():
        assert rms < 0.01, key
        assert mx < 0.05, key
    assert set(traces.fibers.tolist()) == {0, 1}
    # nothing spurious: every found trace is a true trace with centres on the window (the nuisance
    # traces beyond the window's edges are tested in test_neighbours.py)
    on_window = {
        (int(f), int(o))
        for f, o, c in zip(truth["fibers"], truth["orders"], truth["centers"], strict=True)
        if np.isfinite(c).any()
    }
    found = traces[~traces.nuisance]
    assert set(zip(found.fibers.tolist(), found.orders.tolist(), strict=True)) <= on_window
    # the shift is measured about the detector middle (rotation 1 mrad moves it < 0.6 px here)
    assert traces.meta["IDSHIFT"] == pytest.approx(23.7, abs=1.0)


def test_no_rounding_sawtooth(seed_traces, make_flat):
    """A trace crossing many pixel rows: the residual must not follow frac(y) (the original's
    integer-box sawtooth has a +-0.5 px amplitude)."""
    flat, truth = make_flat(seed_traces, fibers=(1, 2), dy=-5.3)
    traces = find_traces(flat, reference=seed_traces)
    k = np.flatnonzero(np.all(np.isfinite(truth["centers"]), axis=1))[0]
    f, o = int(truth["fibers"][k]), int(truth["orders"][k])
    c = truth["centers"][k]
    d = traces.center(truth["x"])[traces.index(f, o)] - c
    frac = c - np.floor(c)
    # correlation with the sawtooth shape over >= 8 px of y travel: |amplitude| < 0.002 px
    amp = np.polyfit(frac - 0.5, d, 1)[0]
    assert abs(amp) < 0.002
    assert np.ptp(c) > 8  # ten periods of the sawtooth


def test_edge_clipped_orders_kept_over_their_columns(seed_traces, make_flat):
    # the window's bottom edge cuts through the parabolic orders: their ends are on, middles off
    flat, truth = make_flat(seed_traces, fibers=(0, 1), dy=-(WINDOW[0] - 250) + 0.0)
    traces = find_traces(flat, reference=seed_traces, min_length=100)
    partial = [
        i
        for i in range(len(truth["fibers"]))
        if 100 < np.isfinite(truth["centers"][i]).sum() < truth["centers"].shape[1] - 50
    ]
    assert partial, "the fixture must contain an edge-clipped trace"
    for i in partial:
        k = traces.index(int(truth["fibers"][i]), int(truth["orders"][i]))
        on = np.flatnonzero(np.isfinite(truth["centers"][i])) + WINDOW[2]
        lo, hi = traces.x_valid[k]
        # x_valid covers the columns where the whole profile is on the window, and stops
        # where the centre leaves it (the profile half width is ~5 px of y, ~100 columns of x)
        assert lo <= on.min() + 1 and hi >= on.max() - 1
        assert np.all(traces.center([lo, hi])[k] >= WINDOW[0] - 1.0)


def test_window_origin_gives_full_detector_coordinates(shifted_flat, seed_traces):
    flat, truth = shifted_flat
    traces = find_traces(flat, identify=False)
    assert traces.x_valid.min() >= WINDOW[2] and traces.x_valid.max() <= WINDOW[3] - 1
    y = traces.center([2000.0])[:, 0]
    assert y.min() > WINDOW[0] and y.max() < WINDOW[1]
    assert set(traces.fibers.tolist()) == {-1}


def test_refine_from_reference_and_two_flats(seed_traces, make_flat):
    flat01, truth01 = make_flat(seed_traces, fibers=(0, 1), dy=1.4, seed=3)
    flat12, truth12 = make_flat(seed_traces, fibers=(1, 2), dy=1.4, seed=4)
    start = seed_traces.select(orders=range(55, 72))
    refined = refine_traces(flat01, start, flat2=flat12)
    assert set(refined.fibers.tolist()) == {0, 1, 2}
    for truth in (truth01, truth12):
        for key, (rms, mx) in _errors(refined, truth).items():
            assert rms < 0.01 and mx < 0.05, key
    # a single flat keeps the unlit fiber, moved like its order's lit fibers (1.4 px here)
    single = refine_traces(flat01, start)
    k_old, k_new = start.index(2, 62), single.index(2, 62)
    dy = single.center([2000.0])[k_new, 0] - start.center([2000.0])[k_old, 0]
    assert dy == pytest.approx(1.4, abs=0.05)


def test_identification_errors(shifted_flat, seed_traces):
    flat, _ = shifted_flat
    found = find_traces(flat, identify=False)
    # the same comb seen with a huge scale freedom can also be matched one order off: ambiguous
    with pytest.raises(FitError, match="ambiguous"):
        identify_traces(found, seed_traces, fibers=(0, 1), max_scale=0.012)
    # a reference of the wrong geometry (shifted by 300 px, beyond the search) does not match
    with pytest.raises(FitError, match="match"):
        identify_traces(found, seed_traces.shifted(300.0), fibers=(0, 1), max_shift=50.0)


def test_lit_fibers_and_input_errors(shifted_flat):
    assert lit_fibers({"OBJECTS": "tung&tung&none"}) == (0, 1)
    assert lit_fibers({"OBJECTS": "none&thar&tung"}) == (1, 2)
    with pytest.raises(InvalidParameterError, match="OBJECTS"):
        lit_fibers({"OBJECTS": "tung&tung"})
    with pytest.raises(InvalidParameterError, match="OBJECTS"):
        lit_fibers({})
    flat, _ = shifted_flat
    bare = flat.copy()
    bare.uncertainty = None
    with pytest.raises(InvalidParameterError, match="variance"):
        find_traces(bare, identify=False)
    with pytest.raises(InvalidParameterError, match="flat"):
        find_traces(np.zeros((50, 50)))
    with pytest.raises(InvalidParameterError, match="degree: expected an integer >= 2"):
        find_traces(flat, identify=False, degree=1)
    with pytest.raises(InvalidParameterError, match="traces: expected nres.traces.Traces"):
        identify_traces(None, None, fibers=(0, 1))


def test_legacy_integer_box_reproduces_the_sawtooth(seed_traces, make_flat):
    """centroid_reference="integer_box" (the original's trace_refine) leaves a rounding error that
    the corrected default does not (measured: 0.005 px vs 0.16 px worst error on this flat)."""
    flat, truth = make_flat(seed_traces, fibers=(0, 1), dy=0.0, seed=11)
    start = seed_traces.select(orders=range(55, 72))
    new = refine_traces(flat, start)
    old = refine_traces(flat, start, legacy=True)
    k = np.flatnonzero(np.all(np.isfinite(truth["centers"]), axis=1))
    worst_new = worst_old = 0.0
    for i in k:
        f, o = int(truth["fibers"][i]), int(truth["orders"][i])
        c = truth["centers"][i]
        worst_new = max(worst_new, np.abs(new.center(truth["x"])[new.index(f, o)] - c).max())
        worst_old = max(worst_old, np.abs(old.center(truth["x"])[old.index(f, o)] - c).max())
    assert worst_new < 0.05
    # the original's fixed point is off by up to half a pixel where the trace is flat in x
    assert worst_old > 0.1, worst_old


def test_refine_from_a_trace_file_of_the_original(tmp_path, seed_traces, make_flat):
    from nres.io.idl_trace_fits import read_idl_trace, write_idl_trace

    flat, truth = make_flat(seed_traces, fibers=(0, 1), dy=-1.2, seed=12)
    write_idl_trace(tmp_path / "TRAC.fits", seed_traces)  # the original's layout, y + 0.5 inside
    start, _ = read_idl_trace(tmp_path / "TRAC.fits")
    refined = refine_traces(flat, start)
    errs = _errors(refined, truth)
    assert len(errs) >= 20
    for key, (rms, mx) in errs.items():
        assert rms < 0.01 and mx < 0.05, key


def test_find_traces_is_thread_safe(shifted_flat, seed_traces):
    from concurrent.futures import ThreadPoolExecutor

    flat, _ = shifted_flat
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: find_traces(flat, reference=seed_traces), range(4)))
    for r in results[1:]:
        np.testing.assert_array_equal(r.coefficients, results[0].coefficients)
        np.testing.assert_array_equal(r.orders, results[0].orders)
