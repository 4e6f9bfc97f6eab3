"""Sites: EarthLocations from numbers, NRES unit names, lookup errors."""

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import EarthLocation
from astropy.io import fits

from nres.errors import InvalidParameterError
from nres.instrument import SITES, Site, site_location
from nres.instrument.sites import get_site

DATA = Path(__file__).parents[1] / "data"


def test_every_site_is_an_earth_location_at_its_coordinates():
    assert set(SITES) == {"lsc", "elp", "cpt", "tlv", "bpl"}
    for code, site in SITES.items():
        loc = site_location(code)
        assert isinstance(loc, EarthLocation)
        # geodetic round trip through geocentric x, y, z: 1e-9 deg is ~0.1 mm, far below any use
        assert loc.lat.deg == pytest.approx(site.latitude, abs=1e-9)
        assert loc.lon.deg == pytest.approx(site.longitude, abs=1e-9)
        assert loc.height.to_value(u.m) == pytest.approx(site.height, abs=1e-6)
        # on the Earth's surface: geocentric radius between the polar and equatorial radii (+3 km)
        r = np.sqrt(sum(c.to_value(u.km) ** 2 for c in loc.geocentric))
        assert 6356.0 < r < 6381.2


def test_lsc_is_what_the_original_used():
    # the archived e91 product carries the TELESCOPE_1 position the original read from the raw file
    hdr = fits.Header.fromtextfile(DATA / "header_e91_example.txt")
    loc = site_location("lsc")
    assert loc.lon.deg == pytest.approx(hdr["LONG1"], abs=1e-9)
    assert loc.lat.deg == pytest.approx(hdr["LAT1"], abs=1e-9)
    assert loc.height.to_value(u.m) == pytest.approx(hdr["HT1"], abs=1e-6)
    assert SITES["lsc"].instrument == hdr["TELESCOP"].strip() == "nres01"


def test_units_and_hemispheres():
    assert {c: s.instrument for c, s in SITES.items()} == {
        "lsc": "nres01",
        "elp": "nres02",
        "cpt": "nres03",
        "tlv": "nres04",
        "bpl": None,
    }
    # coarse geography: Chile, Texas, South Africa, Israel, California
    assert SITES["lsc"].latitude < 0 and SITES["lsc"].longitude < -60
    assert SITES["elp"].latitude > 0 and SITES["elp"].longitude < -100
    assert SITES["cpt"].latitude < 0 and SITES["cpt"].longitude > 0
    assert SITES["tlv"].latitude > 0 and 30 < SITES["tlv"].longitude < 40
    assert SITES["bpl"].longitude < -110


def test_lookup_is_case_insensitive_and_accepts_site():
    assert get_site(" LSC ") is SITES["lsc"]
    assert get_site(SITES["cpt"]) is SITES["cpt"]
    assert isinstance(SITES["elp"], Site)


def test_unknown_site_names_it():
    with pytest.raises(InvalidParameterError, match="'ogg'.*lsc"):
        site_location("ogg")
