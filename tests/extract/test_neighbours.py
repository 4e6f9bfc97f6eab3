"""A window of the detector gives the same answer as a wider one for every order it contains: the
orders cut by its top and bottom edges are predicted (nuisance traces) and modelled.

Noiseless simulated windows (nres.sim windows are crops of the full frame bit for bit): orders 84-88
(plus the 20-row margin) against orders 81-91, columns 1536-2047, no cosmic rays, defects, dark,
non-linearity or saturation, so every difference comes from the window's edges. The wider window
stands for the full frame (its own edges are 3 orders away from the judged ones; the full frame was
checked once by hand: docs/extraction.md).
"""

import numpy as np
import pytest
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.table import Table

from nres.errors import InvalidParameterError
from nres.extract import (
    Profiles,
    complete_traces,
    extract,
    find_traces,
    measure_profiles,
    refine_traces,
    subtract_scattered_light,
)
from nres.flags import Flag
from nres.instrument import reference_traces
from nres.sim import SimConfig, simulate
from nres.traces import Traces
from nres.wavecal.lines import find_lines

COLUMNS = (1536, 2048)
SMALL, WIDE = (84, 88), (81, 91)
CFG = SimConfig(
    cosmic_rate=0.0,
    n_bad_columns=0,
    n_hot_pixels=0,
    dark_current=0.0,
    nonlinearity=0.0,
    saturate=1e9,
    maxlin=1e9,
)


@pytest.fixture(scope="module")
def sims():
    out = {}
    for name, orders in (("small", SMALL), ("wide", WIDE)):
        window = {"orders": orders, "columns": COLUMNS}
        out[name] = {
            kind: simulate(kind, window=window, noiseless=True, config=CFG, seed=3)
            for kind in ("LAMPFLAT", "DOUBLE", "TARGET")
        }
    return out


def _reduce(frames, *, complete=True, profile_background=False):
    """The pipeline's steps (nres.pipeline.recipes: scattered light without a profile) or, with
    ``profile_background``, docs/extraction.md's recipe (scattered light with the traces' wings)."""
    flat = frames["LAMPFLAT"][0]
    traces = find_traces(flat, site="lsc", complete=complete)
    clean, _ = subtract_scattered_light(flat, traces)
    options = {}
    if profile_background:
        first = measure_profiles(clean, traces, n_blocks=4, pedestal=True)
        clean, _ = subtract_scattered_light(flat, traces, profile=first)
    profile = measure_profiles(clean, traces, n_blocks=4)
    if profile_background:
        options = {"profile": profile}
    out = {"traces": traces, "profile": profile, "FLAT": extract(clean, traces, profile=profile)}
    for kind in ("DOUBLE", "TARGET"):
        frame, background = subtract_scattered_light(frames[kind][0], traces, **options)
        out[kind] = extract(frame, traces, profile=profile, background=background)
        out[kind + "_background"] = background
    return out


@pytest.fixture(scope="module")
def reduced(sims):
    return {
        "small": _reduce(sims["small"]),
        "wide": _reduce(sims["wide"]),
        "small_uncompleted": _reduce(sims["small"], complete=False),
        "small_profile": _reduce(sims["small"], profile_background=True),
        "wide_profile": _reduce(sims["wide"], profile_background=True),
    }


def _row(spec, fiber, order, plane="data"):
    return getattr(spec, plane)[list(spec.fibers).index(fiber), list(spec.orders).index(order)]


def _line_offsets(small, wide):
    """find_lines centres (px) of the window minus the wider window's, per (kind, fiber, order), over
    the unflagged lines both find; the arcs' two fibers and the TARGET's ThAr fiber."""
    out = {}
    for kind, fiber in (("DOUBLE", 0), ("DOUBLE", 1), ("TARGET", 1)):
        a, b = find_lines(small[kind], fibers=[fiber]), find_lines(wide[kind], fibers=[fiber])
        a, b = a[a["flags"] == 0], b[b["flags"] == 0]
        for order in np.unique(a["order"]):
            xa = np.asarray(a["x"][a["order"] == order])
            xb = np.asarray(b["x"][b["order"] == order])
            d = np.array([x - xb[np.argmin(np.abs(xb - x))] for x in xa]) if xb.size else np.array([])
            out[(kind, fiber, int(order))] = d[np.abs(d) < 0.5]
    return out


def _flat_fielded_ratio(small, wide, order, truth):
    """Window over wider window of the star's target/flat (what the RV sees), on unmasked columns
    with >= 10 % of the order's peak light."""
    a = _row(small["TARGET"], 0, order) / _row(small["FLAT"], 0, order)
    b = _row(wide["TARGET"], 0, order) / _row(wide["FLAT"], 0, order)
    true = truth.expected[0, list(truth.spectrum_orders).index(order)]
    ok = ~_row(small["TARGET"], 0, order, "mask") & (true > 0.1 * true.max()) & np.isfinite(a * b)
    return a[ok] / b[ok] - 1.0


def test_cut_orders_predicted_from_the_reference(sims, reduced):
    traces = reduced["small"]["traces"]
    found = find_traces(sims["small"]["LAMPFLAT"][0], site="lsc", complete=False)
    truth = sims["wide"]["LAMPFLAT"][1]  # the true flux centroids, also beyond the small window
    x = truth.x.astype(float)
    keys = {(int(f), int(m)): i for i, (f, m) in enumerate(zip(found.fibers, found.orders, strict=True))}
    predicted = []
    for i, (f, m) in enumerate(zip(traces.fibers.tolist(), traces.orders.tolist(), strict=True)):
        j = keys.get((f, m))
        if j is None or not np.array_equal(traces.coefficients[i], found.coefficients[j]):
            predicted.append(i)
        # the orders the tracing did not find are nuisance traces; those it found stay extractable
        assert traces.nuisance[i] == (j is None)
    # both edges: below, fiber 0 of order 83 found cut and fiber 1 beyond; above, fiber 1 of 89
    assert len(predicted) == traces.meta["NCOMPLET"] >= 3
    assert {SMALL[0] - 1, SMALL[1] + 1} <= set(traces.orders[predicted].tolist())
    assert not traces.nuisance[predicted].all()
    assert traces.meta["NNUISANC"] == int(traces.nuisance.sum()) >= 2
    for i in predicted:
        k = np.flatnonzero((truth.fibers == traces.fibers[i]) & (truth.orders == traces.orders[i]))[0]
        err = traces.center(x)[i] - truth.centers[k]
        # the offset measured - reference changes by (scale - 1) x 55 px ~ 0.02 px per order here:
        # predicted to 0.01 px, within the tracing's own limit (0.05 px max)
        assert np.abs(err[traces.valid(x)[i]]).max() < 0.02, (traces.fibers[i], traces.orders[i])
        # a predicted trace spans the frame's columns, as a whole order would
        assert tuple(traces.x_valid[i]) == (COLUMNS[0], COLUMNS[1] - 1)
    # a measured cut trace agrees with its prediction where its centroids were whole
    assert 0 <= traces.meta["CMPLDEV"] < 0.01


def test_window_line_centres_equal_the_wider_window(reduced):
    for small, wide in (("small", "wide"), ("small_profile", "wide_profile")):
        offsets = _line_offsets(reduced[small], reduced[wide])
        assert len(offsets) >= 14 and sum(d.size for d in offsets.values()) >= 60
        for key, d in offsets.items():
            # the limit, 1 millipixel (2 m/s): measured <= 0.3 millipixel in every order
            assert np.all(np.abs(d) < 1e-3), (small, key, d)
    # without the cut orders the same window is off by up to 16 millipixels (the test bites)
    offsets = _line_offsets(reduced["small_uncompleted"], reduced["wide"])
    assert max(np.abs(d).max() for d in offsets.values() if d.size) > 5e-3


def test_window_flat_fielded_star_equals_the_wider_window(sims, reduced):
    truth = sims["small"]["TARGET"][1]
    orders = reduced["small"]["TARGET"].orders
    assert set(range(SMALL[0], SMALL[1] + 1)) <= set(orders.tolist())
    for small, wide in (("small", "wide"), ("small_profile", "wide_profile")):
        for order in orders:
            r = _flat_fielded_ratio(reduced[small], reduced[wide], order, truth)
            assert r.size >= 150, (small, order)
            # the profiles of orders next to the edge are partly the next order's and the scattered
            # light near the edge is an extrapolation; both largely cancel in target/flat: measured
            # |median| <= 7e-4, max <= 1.4e-3 (smooth along the order: no line shift, tested above)
            assert abs(np.median(r)) < 1.5e-3 and np.abs(r).max() < 3e-3, (small, order)
    worst = max(
        np.abs(_flat_fielded_ratio(reduced["small_uncompleted"], reduced["wide"], m, truth)).max()
        for m in orders
    )
    assert worst > 3e-2  # without the cut orders: 25 %


def test_window_scattered_light_near_the_edges(sims, reduced):
    truth = sims["small"]["TARGET"][1].scattered_light
    rows = reduced["small_profile"]["TARGET_background"].mean(axis=1) - truth.mean(axis=1)
    # the target's scattered light is 10-20 e- here; near the edges the fit extrapolates (measured
    # within 5 e- of the truth). Without the cut orders their light was "background": 450 e- off
    assert np.abs(rows).max() < 8.0
    uncompleted = reduced["small_uncompleted"]["TARGET_background"].mean(axis=1) - truth.mean(axis=1)
    assert np.abs(uncompleted).max() > 100.0


def test_nuisance_traces_modelled_not_extracted(reduced):
    res = reduced["small"]
    traces, profile, spec = res["traces"], res["profile"], res["TARGET"]
    nuisance = traces[traces.nuisance]
    kept = traces[~traces.nuisance]
    extracted = set(zip(kept.fibers.tolist(), kept.orders.tolist(), strict=True))
    table = spec.meta["EXTRACTION"]
    assert set(zip(table["fiber"].tolist(), table["order"].tolist(), strict=True)) == extracted
    for fiber, order in zip(nuisance.fibers.tolist(), nuisance.orders.tolist(), strict=True):
        if order not in spec.orders:
            continue
        # an order with one nuisance fiber: that fiber's row is empty (no trace)
        assert np.all(_row(spec, fiber, order, "flags") & Flag.OFF_DETECTOR)
    # their profiles are the nearest measured order's of the same fiber, block by block
    assert profile.meta["NBORROW"] >= len(nuisance) * profile.block_x.size
    for fiber, order in zip(nuisance.fibers.tolist(), nuisance.orders.tolist(), strict=True):
        same = traces.orders[(traces.fibers == fiber) & ~traces.nuisance]
        donor = same[np.argmin(np.abs(same - order))]
        f = list(profile.fibers).index(fiber)
        got = profile.data[f, list(profile.orders).index(order)]
        want = profile.data[f, list(profile.orders).index(donor)]
        assert np.any(want) and np.array_equal(got, want)


def test_refine_traces_keeps_nuisance_and_completes(sims, reduced):
    flat = sims["small"]["LAMPFLAT"][0]
    found = reduced["small"]["traces"]
    refined = refine_traces(flat, found)
    assert np.array_equal(refined.nuisance, found.nuisance)
    assert refined.meta["NCOMPLET"] == found.meta["NCOMPLET"]
    x = np.arange(*COLUMNS, dtype=float)
    # the same traces within the tracing's limits (0.01 px: both measure the same centroids)
    assert np.abs(refined.center(x) - found.center(x)).max() < 0.01


def _gaussian_frame(centers, flux, shape, sigma=1.6):
    """Pixel-integrated Gaussian traces (centres (n, nx) rows) of ``flux`` electrons per column."""
    from scipy.special import erf

    rows = np.arange(shape[0], dtype=float)[:, None]
    image = np.zeros(shape)
    for c in centers:
        s = np.sqrt(2.0) * sigma
        image += flux * 0.5 * (erf((rows + 0.5 - c) / s) - erf((rows - 0.5 - c) / s))
    return image


def test_light_of_an_off_frame_trace_is_flagged():
    """A trace whose aperture is off the frame in some columns cannot have its flux fitted there;
    where its profile reaches another trace's aperture that column is flagged ORDER_EDGE."""
    ny, nx = 60, 64
    x = np.arange(nx, dtype=float)
    inside = np.full(nx, 14.0)
    below = -12.0 + 0.2 * x  # aperture (half 5.25) wholly off the frame for x <= 31
    beyond = np.full(nx, 90.0)  # a nuisance trace 30 px above the frame: no light, no row
    traces = Traces.from_samples(
        x, np.vstack([inside, below, beyond]), orders=np.array([80, 80, 81]), fibers=np.array([0, 1, 0]),
        degree=2, x_domain=(0.0, 63.0),
    )  # fmt: skip
    traces = Traces(
        traces.coefficients, traces.orders, traces.fibers, x_domain=traces.x_domain,
        nuisance=np.array([False, False, True]),
    )  # fmt: skip
    dy = np.round(np.arange(-21.0, 21.0 + 1e-9, 0.02), 10)
    from scipy.special import erf

    s = np.sqrt(2.0) * 1.6
    p = 0.5 * (erf((dy + 0.5) / s) - erf((dy - 0.5) / s))
    p /= p.sum() * 0.02
    profile = Profiles(np.tile(p, (2, 2, 1, 1)), [0, 1], [80, 81], [31.5], dy)
    data = _gaussian_frame([inside, below], 1000.0, (ny, nx))
    frame = CCDData(
        data, unit="electron", uncertainty=VarianceUncertainty(data + 25.0), meta={"RDNOISE": 5.0}
    )
    spec = extract(frame, traces, profile=profile)
    assert list(spec.orders) == [80]  # the nuisance order is fitted, not extracted
    edge = (_row(spec, 0, 80, "flags") & Flag.ORDER_EDGE) != 0
    # independent of the code: the aperture of fiber 1 is off where -12 + 0.2 x + 5.25 < -0.5, and
    # its profile (21 px) reaches fiber 0's aperture (5.25 px) there (distance <= 26 px)
    np.testing.assert_array_equal(edge, -12.0 + 0.2 * x + 5.25 < -0.5)
    # elsewhere the star's flux is the truth (Gaussian profile as rendered; fiber 1's light modelled)
    np.testing.assert_allclose(_row(spec, 0, 80)[~edge], 1000.0, rtol=1e-6)


def test_traces_nuisance_column(tmp_path):
    ref = reference_traces("lsc").select(orders=[80, 81, 82])
    nuisance = np.zeros(len(ref), dtype=bool)
    nuisance[[0, 4]] = True
    traces = Traces(
        ref.coefficients,
        ref.orders,
        ref.fibers,
        x_domain=ref.x_domain,
        x_valid=ref.x_valid,
        nuisance=nuisance,
    )
    assert "nuisance" in repr(traces)
    traces.write(tmp_path / "t.fits")
    back = Traces.read(tmp_path / "t.fits")
    np.testing.assert_array_equal(back.nuisance, nuisance)
    np.testing.assert_array_equal(traces.select(orders=[80]).nuisance, nuisance[traces.orders == 80])
    np.testing.assert_array_equal(traces[[4, 0]].nuisance, [True, True])
    assert not traces.shifted(1.0).nuisance[1] and traces.shifted(1.0).nuisance[0]
    # a table written before nuisance traces existed: none
    table = traces.to_table()
    table.remove_column("nuisance")
    assert not Traces.from_table(Table(table)).nuisance.any()
    with pytest.raises(InvalidParameterError, match="nuisance"):
        Traces(ref.coefficients, ref.orders, ref.fibers, nuisance=np.zeros(2, dtype=bool))
    with pytest.raises(InvalidParameterError, match="nuisance"):
        Traces(ref.coefficients, ref.orders, ref.fibers, nuisance=np.zeros(len(ref), dtype=int))


def test_complete_traces_checks_its_input(sims):
    flat = sims["small"]["LAMPFLAT"][0]
    with pytest.raises(InvalidParameterError, match="Traces"):
        complete_traces(None, flat, reference=reference_traces("lsc"))
    with pytest.raises(InvalidParameterError, match="2-D"):
        complete_traces(reference_traces("lsc"), np.zeros(3), reference=reference_traces("lsc"))
