"""Reference trace tables of the NRES units (nres.instrument.reference_traces)."""

from importlib import resources

import numpy as np
import pytest

from nres.errors import InvalidParameterError, MissingCalibrationError
from nres.instrument import reference_trace_files, reference_traces

SITES = ("lsc", "elp", "cpt", "tlv")


def _table_samples(filename):
    """The raw numbers of a packaged table, parsed here independently of nres.io."""
    text = (resources.files("nres.instrument") / "data" / "traces" / filename).read_text()
    lines = [ln.split() for ln in text.splitlines()[1:] if ln.strip()]
    x = np.array(lines[1][1:], dtype=float)
    rows = np.array([[float(v) for v in ln] for ln in lines[2:]])
    return x, rows[:, 0].astype(int), rows[:, 1:]


@pytest.fixture(scope="module")
def traces():
    return {site: reference_traces(site) for site in SITES}


def test_catalogue_lists_every_table():
    cat = reference_trace_files()
    assert len(cat) == 6
    assert sorted(set(cat["site"])) == ["cpt", "elp", "lsc", "tlv"]
    lsc = cat[cat["site"] == "lsc"][0]
    assert (lsc["instrument"], lsc["camera"], lsc["date"]) == ("nres01", "fa09", "2018-09-19")
    assert sorted(cat[cat["site"] == "cpt"]["camera"]) == ["fa13", "fa13", "fl13"]


@pytest.mark.parametrize("site", SITES)
def test_fit_reproduces_table_samples_without_shift(traces, site):
    t = traces[site]
    x, iord, y = _table_samples(t.meta["SOURCE"])
    for row, (i, fiber) in enumerate(zip(iord, np.tile([0, 1], iord.size // 2), strict=True)):
        got = t.center(x)[t.index(fiber, 52 + i)]
        # samples are printed to 0.01 px (+-0.005 rounding); a 5-coefficient least-squares fit of
        # 42 such samples spreads it to at most ~1.5x: measured <= 0.0075 px on all tables. A
        # half-pixel convention shift would show as 0.5 px here.
        assert np.max(np.abs(got - y[row])) < 0.01, (site, fiber, i)


@pytest.mark.parametrize("site", SITES)
def test_fiber2_extrapolated_at_measured_spacing(traces, site):
    t = traces[site]
    x, iord, y = _table_samples(t.meta["SOURCE"])
    y0, y1 = y[0::2], y[1::2]
    got = t.center(x)[[t.index(2, 52 + i) for i in iord[0::2]]]
    # y2 = y1 - (y0 - y1): three rounded samples (<= 0.005 px each, weights 2 and 1) plus the fit
    assert np.max(np.abs(got - (2 * y1 - y0))) < 0.025


@pytest.mark.parametrize("site", SITES)
def test_geometry(traces, site):
    t = traces[site]
    assert len(t) == 201 and t.degree == 4
    assert t.fibers.tolist() == [0] * 67 + [1] * 67 + [2] * 67
    assert t.orders.tolist() == list(range(52, 119)) * 3
    x = np.arange(0, 4096, 64)
    y = t.center(x).reshape(3, 67, x.size)
    # within an order fiber 0 is highest, then 1, then 2; the 0-1 spacing is 16-26 px
    sep = y[0] - y[1]
    assert np.all(sep > 16) and np.all(sep < 26)
    assert np.all(y[1] - y[2] == pytest.approx(sep, abs=1e-9))
    # order index 0 (m = 52, the red end) is at the bottom and y increases with m
    mid = t.center([2048.0]).reshape(3, 67)
    assert np.all(np.diff(mid, axis=1) > 0)
    assert np.all(mid[:, 0] < 120) and np.all(mid[:, -1] > 3850)
    # order spacing grows from ~33 px (red) to ~100 px (blue), as the prism disperses the blue more
    spacing = np.diff(mid[1])
    assert 30 < spacing[0] < 36 and 95 < spacing[-1] < 106
    # each trace is on the detector over a contiguous x_valid, full width except the top orders
    assert np.all(t.x_valid[:, 0] <= t.x_valid[:, 1])
    assert t.x_valid[t.index(1, 60)].tolist() == [0.0, 4095.0]
    inside = t.valid(x)
    c = t.center(x)
    assert np.all((c[inside] >= 0) & (c[inside] <= 4095))


def test_file_selection():
    assert reference_traces("cpt").meta["SOURCE"] == "cptnrs03-fa13-20181128-0005-w00.txt"  # newest
    assert reference_traces("cpt", camera="fl13").meta["SOURCE"] == "cpt_nres03_trace_2018.txt"
    assert reference_traces("cpt", date="2018-11-20").meta["SOURCE"] == "cptnrs03-fa13-20181113-trace.txt"
    # MJD 58440.5 = 2018-11-20 12:00 UTC
    assert reference_traces("cpt", date=58440.5).meta["SOURCE"] == "cptnrs03-fa13-20181113-trace.txt"
    lsc = reference_traces("lsc")
    assert (lsc.meta["SITE"], lsc.meta["CAMERA"], lsc.meta["TELESCOP"]) == ("lsc", "fa09", "nres01")


def test_fits_round_trip_keeps_metadata(tmp_path):
    t = reference_traces("elp")
    t.write(tmp_path / "elp_traces.fits")
    back = type(t).read(tmp_path / "elp_traces.fits")
    np.testing.assert_array_equal(back.coefficients, t.coefficients)
    np.testing.assert_array_equal(back.x_valid, t.x_valid)
    assert back.meta["SITE"] == "elp" and back.meta["YCONV"] == "numpy" and back.meta["CAMERA"] == "fa17"


def test_returns_independent_objects():
    a = reference_traces("lsc")
    a.meta["SITE"] = "changed"
    assert reference_traces("lsc").meta["SITE"] == "lsc"
    with pytest.raises(ValueError, match="read-only"):
        a.coefficients[0, 0] = 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"site": "xyz"}, InvalidParameterError, "site='xyz'"),
        ({"site": "bpl"}, MissingCalibrationError, "site 'bpl'"),
        ({"site": "cpt", "camera": "fa99"}, MissingCalibrationError, "camera 'fa99'"),
        ({"site": "lsc", "date": "2017-01-01"}, MissingCalibrationError, "on or before 2017-01-01"),
        ({"site": "lsc", "date": "not a date"}, InvalidParameterError, "date="),
    ],
)
def test_bad_requests(kwargs, error, match):
    with pytest.raises(error, match=match):
        reference_traces(kwargs.pop("site"), **kwargs)
