"""find_lines: centre errors against the scatter of injected truth, flags, input validation."""

import numpy as np
import pytest
from astropy.nddata import VarianceUncertainty

from nres.errors import InvalidParameterError
from nres.flags import Flag
from nres.sim.extracted_arc import simulate_extracted_arc
from nres.spectrum import EchelleSpectrum
from nres.wavecal import LineFlag, find_lines


@pytest.fixture(scope="module")
def arc():
    spec, truth = simulate_extracted_arc(seed=2, mjd=58200.0)
    return spec, truth, find_lines(spec)


def test_centre_errors_describe_the_scatter(arc):
    spec, truth, found = arc
    used = truth.lines_used
    pulls = []
    for f in (0, 1):
        for m in np.unique(found["order"]):
            a = found[(found["fiber"] == f) & (found["order"] == m) & (found["flags"] == 0)]
            sel = (used["fiber"] == f) & (used["order"] == m)
            x, e = np.asarray(used["x"][sel]), np.asarray(used["electrons"][sel])
            o = np.argsort(x)
            x, e = x[o], e[o]
            if len(a) == 0 or x.size < 2:
                continue
            j = np.clip(np.searchsorted(x, a["x"]), 1, x.size - 1)
            k = np.where(np.abs(x[j] - a["x"]) < np.abs(x[j - 1] - a["x"]), j, j - 1)
            # isolated: every other true line within 12 px has < 1e-3 of this line's flux
            iso = np.array(
                [np.all(e[(np.abs(x - x[q]) < 12) & (np.arange(x.size) != q)] < 1e-3 * e[q]) for q in k]
            )
            pulls.append(((a["x"] - x[k]) / a["x_err"])[iso])
    p = np.concatenate(pulls)
    assert p.size > 3000
    # ~4000 independent lines: the pull std has standard error 0.011 and the mean 0.016; 5 sigma
    assert abs(np.std(p) - 1.0) < 0.055
    assert abs(np.mean(p)) < 0.08


def test_saturated_lines_flagged(arc):
    spec, truth, found = arc
    sat = found[(found["flags"] & LineFlag.SATURATED) > 0]
    true_sat = truth.lines_used[truth.lines_used["saturated"]]
    assert len(true_sat) >= 3  # the simulator makes a few
    for row in true_sat:
        near = sat[(sat["fiber"] == row["fiber"]) & (sat["order"] == row["order"])]
        assert np.min(np.abs(near["x"] - row["x"])) < 1.0


def _spectrum(lines, nx=200, sigma=1.2, mask=None):
    k = np.arange(nx, dtype=float)
    flux = np.full(nx, 10.0)
    for x0, amp in lines:
        flux += amp * np.exp(-0.5 * ((k - x0) / sigma) ** 2)
    flags = np.zeros((1, 1, nx), dtype=np.uint16)
    if mask is not None:
        flags[0, 0, mask] = Flag.BAD_PIXEL
    return EchelleSpectrum(
        flux[None, None],
        uncertainty=VarianceUncertainty(flux[None, None] + 25.0),
        flags=flags,
        orders=[80],
        fibers=[1],
    )


def test_blend_edge_and_clean_flags():
    spec = _spectrum(
        [(50.3, 5000.0), (55.6, 3000.0), (120.2, 4000.0), (2.4, 4000.0), (170.0, 4000.0)], mask=[173]
    )
    found = find_lines(spec)
    xs = np.asarray(found["x"])

    def flags_at(x):
        i = int(np.argmin(np.abs(xs - x)))
        assert abs(xs[i] - x) < 1.0
        return int(found["flags"][i])

    by_x = {x: flags_at(x) for x in (50, 56, 120, 2, 170)}
    assert by_x[50] & LineFlag.BLEND and by_x[56] & LineFlag.BLEND
    assert by_x[120] == 0  # isolated, inside, unmasked: usable
    assert by_x[2] & LineFlag.ORDER_EDGE  # window runs off the order
    assert by_x[170] & LineFlag.ORDER_EDGE  # a masked pixel in the window
    # a sampled (not pixel-integrated) symmetric line: the centre is still unbiased
    assert abs(xs[np.argmin(np.abs(xs - 120.2))] - 120.2) < 0.01


def test_find_lines_rejects_bad_input():
    spec = EchelleSpectrum(np.ones((1, 1, 50)), orders=[80], fibers=[1])
    with pytest.raises(InvalidParameterError, match="variance"):
        find_lines(spec)
    with pytest.raises(InvalidParameterError, match="half_window"):
        find_lines(_spectrum([(20.0, 100.0)]), half_window=1)
    with pytest.raises(InvalidParameterError, match="centroid"):
        find_lines(_spectrum([(20.0, 100.0)]), centroid="moments")
    with pytest.raises(InvalidParameterError, match=r"fibers=\[2\] not in spec"):
        find_lines(_spectrum([(20.0, 100.0)]), fibers=[2])
    with pytest.raises(InvalidParameterError, match="EchelleSpectrum"):
        find_lines(np.ones((1, 1, 50)))
