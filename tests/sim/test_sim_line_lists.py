"""ThAr line brightness in the simulator: relative to the list's 99.8th percentile; a list without
intensities (the ESO atlas) is refused instead of giving a frame without lines."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from nres.errors import InvalidParameterError
from nres.instrument import thar_lines
from nres.sim import simulate, simulate_extracted_arc
from nres.sim.sources import line_brightness


def test_line_brightness_relative_to_99_8_percentile():
    # 1001 positive intensities 1..1001: their 99.8th percentile (linear) is element 998, i.e. 999;
    # a NaN and a negative intensity are not rendered and do not enter the percentile
    intensity = np.concatenate([np.arange(1.0, 1002.0), [np.nan, -3.0]])
    lines = QTable({"wavelength": np.linspace(500, 600, intensity.size) * u.nm, "intensity": intensity})
    b = line_brightness(lines)
    assert np.array_equal(b[:1001], np.arange(1.0, 1002.0) / 999.0)
    assert b[1001] == 0.0 and b[1002] == 0.0


def test_eso_atlas_without_intensities_is_refused():
    eso = thar_lines("eso")
    with pytest.raises(InvalidParameterError, match="intensity"):
        line_brightness(eso)
    with pytest.raises(InvalidParameterError, match="ESO"):
        simulate_extracted_arc(line_list="eso", orders=[90], noiseless=True)
    with pytest.raises(InvalidParameterError, match="line_list"):
        simulate("DOUBLE", window={"orders": (90, 90), "columns": (2000, 2064)}, line_list=eso)
