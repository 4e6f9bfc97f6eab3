"""find_lines with non-finite extracted pixels: the cause of the spurious TARGET drifts.

A TARGET extraction has NaN data (flag NO_WEIGHT | NONFINITE) at the columns of flagged dead
columns. scipy's running-mean filter carried one NaN along the rest of the row, so only the lines
left of the first NaN were found (9-46 of ~130 fiber-1 lines on a simulated night) and the drift
fitted to them was tens to thousands of m/s off.
"""

import numpy as np
from astropy.nddata import VarianceUncertainty

from nres.flags import Flag
from nres.spectrum import EchelleSpectrum
from nres.wavecal import find_lines

LINES = (40.3, 95.7, 150.2, 210.9, 260.4, 330.6)  # true centres (px), isolated
NAN_AT = 20  # a no-weight column left of every line


def _spectrum(nan_at=None):
    k = np.arange(400, dtype=float)
    flux = np.full(k.size, 10.0)
    for x0 in LINES:
        flux = flux + 5000.0 * np.exp(-0.5 * ((k - x0) / 1.2) ** 2)
    data = np.stack([flux, flux[::-1]])[None]  # 1 fiber x 2 orders
    flags = np.zeros(data.shape, dtype=np.uint16)
    if nan_at is not None:
        data[..., nan_at] = np.nan
        flags[..., nan_at] = Flag.NO_WEIGHT | Flag.NONFINITE
    return EchelleSpectrum(
        data,
        uncertainty=VarianceUncertainty(np.nan_to_num(data) + 25.0),
        flags=flags,
        orders=[80, 81],
        fibers=[1],
    )


def test_lines_after_a_nan_column_are_found():
    clean = find_lines(_spectrum())
    holed = find_lines(_spectrum(NAN_AT))
    for found in (clean, holed):
        first = found[found["order"] == 80]
        assert len(first) == len(LINES) and np.all(first["flags"] == 0)
        # noiseless, sampled Gaussians: centres within 0.01 px (test_lines.py's bound)
        assert np.abs(np.asarray(first["x"]) - np.array(LINES)).max() < 0.01
    # the zeroed NaN changes nothing for lines whose fit window does not reach it
    assert np.array_equal(np.asarray(clean["x"]), np.asarray(holed["x"]))
    assert np.array_equal(np.asarray(clean["flags"]), np.asarray(holed["flags"]))
    # the reversed order has the NaN at its right end, after every line: same lines
    assert np.sum(holed["order"] == 81) == len(LINES)


def test_line_over_a_nan_column_is_flagged_not_lost():
    near = LINES[1] + 2  # inside the +-4 px fit window of the second line
    found = find_lines(_spectrum(int(round(near))))
    first = found[found["order"] == 80]
    assert len(first) == len(LINES)
    i = int(np.argmin(np.abs(np.asarray(first["x"]) - LINES[1])))
    assert first["flags"][i] & 4  # LineFlag.ORDER_EDGE: a bad pixel in its window
    assert np.sum(first["flags"] == 0) == len(LINES) - 1
