"""The original's 4-D TRACE FITS layout (idl-calib-trace-extract.md 13) to/from Traces and Profiles."""

import numpy as np
import pytest
from astropy.io import fits

from nres.errors import InvalidInputFileError, InvalidParameterError
from nres.extract import Profiles
from nres.io.idl_trace_fits import read_idl_trace, write_idl_trace
from nres.traces import Traces


def _idl_file(path, *, nx=4096, nord=67, nfib=3, nblock=12, npoly=3, cowid=11):
    """A file built by hand from the documented layout: order i, fiber f has
    y_idl(X) = 100 + 50 i + 17 f + 3 X + 2 P2(X), and block b's profile peaks at index 5 + (b % 2)."""
    arr = np.zeros((nblock + 1, nfib, nord, max(cowid, npoly)), dtype=np.float32)
    for f in range(nfib):
        for i in range(nord):
            arr[0, f, i, :3] = [100 + 50 * i + 17 * f, 3.0, 2.0]
            for b in range(nblock):
                prof = np.zeros(cowid)
                prof[5 + (b % 2)] = 0.6
                prof[4 + (b % 2)] = prof[6 + (b % 2)] = 0.2
                arr[1 + b, f, i, :cowid] = prof
    hdr = fits.Header(
        {
            "NX": nx,
            "NORD": nord,
            "NFIB": nfib,
            "NPOLY": npoly,
            "ORDWIDTH": 10.5,
            "COWID": cowid,
            "NBLOCK": nblock,
            "SITEID": "lsc",
            "INSTRUME": "fa09",
        }
    )
    fits.PrimaryHDU(arr, header=hdr).writeto(path)
    return path


def test_read_converts_half_pixel_and_legendre_variable(tmp_path):
    traces, profiles = read_idl_trace(_idl_file(tmp_path / "TRAC.fits"))
    assert len(traces) == 3 * 67
    k = traces.index(1, 52 + 4)
    # X = (x - 2048) / 2048: at x = 2048, X = 0 and P2(0) = -1/2, so y_idl = 100 + 200 + 17 - 1;
    # nres's y is 0.5 px lower (pixel centres at integers)
    assert traces.center([2048.0])[k, 0] == pytest.approx(316.0 - 0.5, abs=1e-9)
    # at x = 0, X = -1: y_idl = 317 - 3 + 2
    assert traces.center([0.0])[k, 0] == pytest.approx(316.0 - 0.5, abs=1e-9)
    assert traces.box_height == 10.5 and traces.meta["SITEID"] == "lsc"
    # profiles: (fiber, order, block, dy) with dy = k - 5; block centres 342 b + 166.5
    assert profiles.data.shape == (3, 67, 12, 11)
    np.testing.assert_array_equal(profiles.dy, np.arange(11) - 5.0)
    assert profiles.block_x[0] == 166.5 and profiles.block_x[11] == 342 * 11 + 166.5
    assert profiles.at(0, 52, [166.5])[0, 5] == pytest.approx(0.6, rel=1e-6)
    assert profiles.at(0, 52, [342 + 166.5])[0, 6] == pytest.approx(0.6, rel=1e-6)


def test_round_trip_traces_and_profiles(tmp_path):
    x = np.linspace(0, 4095, 50)
    y = np.vstack([300 + 1e-5 * (x - 2000) ** 2 + 20 * k for k in range(4)])
    traces = Traces.from_samples(x, y, orders=[60, 60, 61, 61], fibers=[0, 1, 0, 1], degree=6)
    dy = np.linspace(-6, 6, 25)
    base = np.exp(-0.5 * (dy / 1.7) ** 2)
    data = np.broadcast_to(base / base.sum(), (2, 2, 12, dy.size))
    profiles = Profiles(data, [0, 1], [60, 61], 342 * np.arange(12) + 166.5, dy)
    path = tmp_path / "out.fits"
    write_idl_trace(path, traces, profiles, header={"SITEID": "lsc"})
    back, prof = read_idl_trace(path)
    xs = np.arange(0, 4096, 16.0)
    for f, o in zip(traces.fibers, traces.orders, strict=True):
        # float32 storage of coefficients ~300 px: 3e-5 relative -> < 1e-4 px
        np.testing.assert_allclose(
            back.center(xs)[back.index(f, o)], traces.center(xs)[traces.index(f, o)], rtol=0, atol=1e-4
        )
    # the resampled profile (sum 1 on the 11 integer offsets) is the Gaussian at integer dy
    want = np.exp(-0.5 * (np.arange(11) - 5.0) ** 2 / 1.7**2)
    got = prof.at(1, 61, [2000.0])[0]
    np.testing.assert_allclose(got, want / want.sum(), rtol=0, atol=2e-3)  # linear interp on a 0.5 px grid
    assert fits.getheader(path)["NPOLY"] == 7 and fits.getdata(path).shape == (13, 3, 67, 11)


def test_errors(tmp_path):
    with pytest.raises(InvalidInputFileError, match="does not exist"):
        read_idl_trace(tmp_path / "missing.fits")
    fits.PrimaryHDU(np.zeros((3, 3), np.float32)).writeto(tmp_path / "flat.fits")
    with pytest.raises(InvalidInputFileError, match="4-D"):
        read_idl_trace(tmp_path / "flat.fits")
    t = Traces(np.array([[100.0, 1.0]]), [130], [0])
    with pytest.raises(InvalidParameterError, match="orders"):
        write_idl_trace(tmp_path / "x.fits", t)
