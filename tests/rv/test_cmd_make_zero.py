"""``nres make-zero``: a ZERO from extracted spectrum files, barycentric corrections from the headers."""

import astropy.units as u
import numba
import pytest

from nres._jit import set_num_threads
from nres.doppler import C_M_S
from nres.pipeline.cli import main
from nres.rv import barycentric_correction, measure, read_zero
from nres.sim.extracted import simulate_extracted

RV = 12.3 * u.km / u.s
RA, DEC = 26.0, -15.9
MJDS = [58400.1, 58460.1, 58520.1]  # a season apart: z_B differs by tens of km/s


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():
    previous = numba.get_num_threads()
    set_num_threads(1)
    yield
    set_num_threads(previous)


def _epoch(mjd, obj="HD 10700"):
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    mid = Time(mjd, format="mjd", scale="utc") + 300 * u.s
    z_b = barycentric_correction(SkyCoord(RA, DEC, unit="deg"), mid, "lsc").z
    spec, truth = simulate_extracted(
        seed=1, rv=RV, z_b=z_b, mjd=mjd, orders=[81], n_pixel=1024, noiseless=True
    )
    spec.meta.update({"OBJECT": obj, "RA": RA, "DEC": DEC, "EXPTIME": 600.0, "MJD-OBS": mjd})
    return spec, truth


def test_make_zero_writes_a_usable_zero(tmp_path, capsys):
    paths = []
    for k, mjd in enumerate(MJDS):
        spec, _ = _epoch(mjd)
        paths.append(tmp_path / f"e{k}.fits")
        spec.write(paths[-1])
    other, _ = _epoch(58430.1, obj="another star")
    other.write(tmp_path / "other.fits")
    out = tmp_path / "zero.fits"
    args = ["make-zero", *map(str, paths), str(tmp_path / "other.fits"), "--out", str(out)]
    assert main([*args, "--rv", "12.3"]) == 0
    assert "from 3 spectra" in capsys.readouterr().out
    zero = read_zero(out)
    hdr = zero.meta["header"]
    # the other star's file is left out; the header names the star
    assert hdr["NAVG"] == 3 and hdr["OBJECT"] == "HD 10700" and hdr["OBSTYPE"] == "TEMPLATE"
    # the ZERO measures a fourth epoch (z_B from its header) at the star's RV: the noiseless ZERO bias
    # target is 0.3 m/s (tests/rv/test_zero.py); 1 m/s here with 3 epochs and one order
    spec, truth = _epoch(58490.1)
    r = measure(spec, zero, method="template")
    assert abs(r.rv.to_value(u.m / u.s) - C_M_S * truth.z_star) < 1.0
    # an existing output is kept unless --overwrite; an unknown --star is an error (exit status 2)
    assert main([*args]) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--star", "nobody", "--iterations", "0"]) == 2
    assert "no spectrum" in capsys.readouterr().err
