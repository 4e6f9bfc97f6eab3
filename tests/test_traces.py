import numpy as np
import pytest

from nres.errors import InvalidInputFileError, InvalidParameterError
from nres.traces import Traces


def _parabolas():
    x = np.linspace(0, 4095, 50)
    orders = np.array([52, 52, 53, 53])
    fibers = np.array([0, 1, 0, 1])
    base = np.array([200.0, 182.0, 240.0, 222.0])
    y = base[:, None] + 1e-5 * (x[None, :] - 2048.0) ** 2
    return x, y, orders, fibers


def test_from_samples_recovers_polynomial_exactly():
    x, y, orders, fibers = _parabolas()
    tr = Traces.from_samples(x, y, orders=orders, fibers=fibers, degree=4)
    xx = np.arange(0, 4096, 7.0)
    truth = np.array([200.0, 182.0, 240.0, 222.0])[:, None] + 1e-5 * (xx - 2048.0) ** 2
    # a quadratic is exactly representable: only rounding remains
    np.testing.assert_allclose(tr.center(xx), truth, rtol=0, atol=1e-9)
    assert tr.center(xx).shape == (4, xx.size)


def test_select_index_shift_and_validity():
    x, y, orders, fibers = _parabolas()
    tr = Traces.from_samples(x, y, orders=orders, fibers=fibers, degree=2,
                             x_valid=[[0, 4095], [0, 4095], [100, 3000], [0, 4095]])
    sub = tr.select(fibers=1)
    assert sub.orders.tolist() == [52, 53] and sub.fibers.tolist() == [1, 1]
    assert tr.index(0, 53) == 2
    with pytest.raises(KeyError, match="fiber 2, order 52"):
        tr.index(2, 52)
    np.testing.assert_allclose(tr.shifted(1.5).center([2048.0]) - tr.center([2048.0]), 1.5)
    assert tr.valid([50.0, 2000.0])[2].tolist() == [False, True]
    with pytest.raises(ValueError):
        tr.coefficients[0, 0] = 1.0  # frozen arrays


def test_fits_round_trip(tmp_path):
    x, y, orders, fibers = _parabolas()
    tr = Traces.from_samples(x, y, orders=orders, fibers=fibers, degree=3, box_height=11.0,
                             meta={"SITE": "lsc"})
    tr.write(tmp_path / "t.fits")
    back = Traces.read(tmp_path / "t.fits")
    np.testing.assert_array_equal(back.coefficients, tr.coefficients)
    assert back.orders.tolist() == tr.orders.tolist() and back.fibers.tolist() == tr.fibers.tolist()
    assert back.box_height == 11.0 and back.x_domain == tr.x_domain
    assert back.meta["SITE"] == "lsc"


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(InvalidParameterError, match="unique"):
        Traces(np.zeros((2, 3)), [52, 52], [0, 0])
    with pytest.raises(InvalidParameterError, match="orders"):
        Traces(np.zeros((2, 3)), [52.0, 53.0], [0, 0])
    with pytest.raises(InvalidInputFileError, match="does not exist"):
        Traces.read(tmp_path / "missing.fits")


def test_read_of_an_incomplete_traces_table_names_the_file(tmp_path):
    from astropy.io import fits

    x, y, orders, fibers = _parabolas()
    table = Traces.from_samples(x, y, orders=orders, fibers=fibers, degree=2).to_table()
    del table.meta["BOXHEIGH"]
    path = tmp_path / "nobox.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]).writeto(path)
    with pytest.raises(InvalidInputFileError, match=r"nobox\.fits.*BOXHEIGH"):
        Traces.read(path)
    table = Traces.from_samples(x, y, orders=orders, fibers=fibers, degree=2).to_table()
    table["order"] = 52  # (fiber, order) pairs no longer unique
    path = tmp_path / "dup.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]).writeto(path)
    with pytest.raises(InvalidInputFileError, match=r"dup\.fits.*unique"):
        Traces.read(path)


def test_empty_selection_has_a_repr():
    x, y, orders, fibers = _parabolas()
    empty = Traces.from_samples(x, y, orders=orders, fibers=fibers, degree=2).select(orders=99)
    assert len(empty) == 0 and repr(empty) == "<Traces: 0 traces, degree 2>"
