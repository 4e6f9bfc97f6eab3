"""Readers of the original's text trace seeds (nres.io.idl_traces)."""

from importlib import resources

import numpy as np
import pytest

from nres.errors import InvalidInputFileError, InvalidParameterError
from nres.io.idl_traces import add_missing_fiber, read_trace_samples, read_trace_seeds

LSC = resources.files("nres.instrument") / "data" / "traces" / "lsc_fa09_trace.20181001.txt"

# a hand-style seed: 5 columns, orders 0, 10, 20 (truth in nres coordinates below)
X_NRES = np.array([499.0, 1249.0, 1999.0, 2749.0, 3749.0])


def _truth(order_index, fiber):
    """Centre y(x) of a smooth synthetic order in nres coordinates (quadratic, fibers 18 px apart)."""
    return 100.0 + 60.0 * order_index - 18.0 * fiber + 1e-5 * (X_NRES - 2000.0) ** 2


def _write_seed(path, *, dx, dy, comment="by-hand seed", fibers=(0, 1)):
    lines = [
        comment,
        f"nfib {len(fibers)} {' '.join(str(f) for f in fibers)}",
        "iord " + " ".join(f"{v + dx:.1f}" for v in X_NRES),
    ]
    for i in (0, 10, 20):
        for f in fibers:
            lines.append(f"{i} " + " ".join(f"{v + dy:.6f}" for v in _truth(i, f)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_brandt_table_read_as_numpy_convention():
    s = read_trace_samples(LSC)
    assert s.convention == "numpy"  # "auto": the first line names echelle_orders.py
    assert s.x.size == 42 and s.x[0] == 41.0 and s.x[-1] == 4056.0
    assert s.y.shape == (134, 42)
    assert s.orders.tolist() == np.repeat(np.arange(52, 119), 2).tolist()
    assert s.fibers.tolist() == [0, 1] * 67
    # no shift applied: first sample of the first row as printed in the file
    assert s.y[0, 0] == 206.34 and s.y[1, 0] == pytest.approx(206.34 - 18.02, abs=1e-9)
    t = read_trace_seeds(LSC)
    assert len(t) == 134 and t.meta["YCONV"] == "numpy"
    # degree 4 reproduces the 0.01 px-rounded samples to < 0.01 px (see test_reference_traces)
    assert t.meta["FITMAX"] < 0.01


@pytest.mark.parametrize(
    ("convention", "dx", "dy"),
    [("ds9", 1.0, 1.0), ("idl", 0.0, 0.5), ("numpy", 0.0, 0.0)],
)
def test_conventions_convert_to_nres_pixels(tmp_path, convention, dx, dy):
    # the file holds the truth written in the given convention: ds9 is 1-based in x and y; the IDL
    # TRACE convention puts a centre at numpy row j at j + 0.5 (idl-calib-trace-extract.md 1)
    path = _write_seed(tmp_path / "seed.txt", dx=dx, dy=dy)
    t = read_trace_seeds(path, y_convention=convention, degree=2)
    for i in (0, 10, 20):
        for f in (0, 1):
            # the quadratic truth is in the degree-2 family: exact up to the 1e-6 px printing
            np.testing.assert_allclose(t.center(X_NRES)[t.index(f, 52 + i)], _truth(i, f), atol=2e-6)
    assert t.orders.tolist() == [52, 52, 62, 62, 72, 72]


def test_auto_treats_hand_seeds_as_ds9(tmp_path):
    path = _write_seed(tmp_path / "seed.txt", dx=1.0, dy=1.0)
    s = read_trace_samples(path)
    assert s.convention == "ds9"
    np.testing.assert_allclose(s.x, X_NRES)
    np.testing.assert_allclose(s.y[0], _truth(0, 0), atol=1e-6)


def test_third_fiber_extrapolated_both_ways(tmp_path):
    # fibers 0, 1 measured -> fiber 2 below fiber 1 at the same spacing
    t = read_trace_seeds(
        _write_seed(tmp_path / "a.txt", dx=0, dy=0, comment="echelle_orders"), add_third_fiber=True, degree=2
    )
    np.testing.assert_allclose(t.center(X_NRES)[t.index(2, 62)], _truth(10, 2), atol=2e-6)
    # fibers 1, 2 measured -> fiber 0 above fiber 1
    s = read_trace_samples(_write_seed(tmp_path / "b.txt", dx=0, dy=0, fibers=(1, 2)), y_convention="numpy")
    s3 = add_missing_fiber(s)
    assert s3.meta["extrapolated_fiber"] == 0
    assert s3.fibers.tolist() == [0, 1, 2] * 3
    np.testing.assert_allclose(s3.y[0], _truth(0, 0), atol=2e-6)


def test_bad_convention_is_a_parameter_error():
    with pytest.raises(InvalidParameterError, match="y_convention='fits'"):
        read_trace_samples(LSC, y_convention="fits")


GOOD_HEAD = "seed\nnfib 2 0 1\niord 100 200 300\n"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "expected a comment line"),
        ("seed\nnfib 2 0 1\niord 100 200\n", "expected a comment line"),
        ("seed\nnfib two 0 1\niord 1 2 3\n0 1 2 3\n0 1 2 3\n", "number of fibers must be an integer"),
        ("seed\nnfib 3 2 1 2 4096\niord 1 2 3\n0 1 2 3\n", "fiber ids must be consecutive"),
        ("seed\nnfib 2 2 3\niord 1 2 3\n0 1 2 3\n0 1 2 3\n", "fiber ids must be within 0..2"),
        ("seed\nnfib 2 0 1\niord 100 a 300\n0 1 2 3\n0 1 2 3\n", "sample x positions must be numbers"),
        ("seed\nnfib 2 0 1\niord 300 200 100\n0 1 2 3\n0 1 2 3\n", "increasing x positions"),
        (GOOD_HEAD + "0 1 2 3\n0 1 2\n", "line 5: expected an order index and 3 y values"),
        (GOOD_HEAD + "0 1 2 3\n0 1 2 3\n1 1 2 3\n", "3 data rows is not a multiple of the 2 fibers"),
        (GOOD_HEAD + "67 1 2 3\n67 1 2 3\n", "order indices must be within 0..66"),
        (GOOD_HEAD + "0 1 2 3\n1 1 2 3\n", "must share its index"),
        (GOOD_HEAD + "0 1 2 3\n0 1 2 3\n0 1 2 3\n0 1 2 3\n", "more than one group"),
        (GOOD_HEAD + "0 1 2 x\n0 1 2 3\n", "line 4: y values must be numbers"),
        (GOOD_HEAD + "0.5 1 2 3\n0.5 1 2 3\n", "order index must be an integer"),
        (GOOD_HEAD + "0 1 2 nan\n0 1 2 3\n", "y values must be finite"),
    ],
)
def test_malformed_files(tmp_path, content, problem):
    path = tmp_path / "bad_seed.txt"
    path.write_text(content)
    with pytest.raises(InvalidInputFileError, match=problem) as info:
        read_trace_seeds(path, degree=1)
    assert isinstance(info.value, OSError)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.txt"
    with pytest.raises(InvalidInputFileError, match="file does not exist") as info:
        read_trace_seeds(path)
    assert str(path) in str(info.value)


def test_binary_file(tmp_path):
    path = tmp_path / "seed.fits.fz"
    path.write_bytes(b"\xff\xfe\x00\x81" * 100)
    with pytest.raises(InvalidInputFileError, match="cannot read as text"):
        read_trace_seeds(path)


def test_too_few_samples_for_degree(tmp_path):
    path = tmp_path / "seed.txt"
    path.write_text(GOOD_HEAD + "0 1 2 3\n0 4 5 6\n")
    with pytest.raises(InvalidInputFileError, match="3 x samples per trace cannot constrain a degree-4"):
        read_trace_seeds(path, degree=4)


def test_third_fiber_needs_two_fibers(tmp_path):
    path = tmp_path / "seed.txt"
    path.write_text("seed\nnfib 1 1\niord 100 200 300\n0 1 2 3\n")
    assert read_trace_seeds(path, degree=1).fibers.tolist() == [1]
    with pytest.raises(InvalidInputFileError, match="exactly two measured fibers"):
        read_trace_seeds(path, degree=1, add_third_fiber=True)
