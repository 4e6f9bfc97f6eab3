"""The NRES sites as astropy ``EarthLocation`` objects built from numbers.

astropy's own site registry (``EarthLocation.of_site``) needs a download, so the coordinates are
written here. They are geodetic (WGS84): East longitude and latitude in degrees, height in metres.

Where the numbers come from
---------------------------
The original pipeline (LCOGT/nres-pipe) has no site table: it reads ``LONGITUD``, ``LATITUDE`` and
``HEIGHT`` from each raw file's TELESCOPE_1/2 extensions (``ingest.pro``) and copies them into the
product as ``LONG1/LAT1/HT1``. Header values therefore always win over this table (``nres.io``
passes them on); the table is for synthetic data, tests and files without coordinates.

- lsc: ``LONG1/LAT1/HT1`` of the archived product ``lscnrs01-fl09-20171110-0037-e91`` quoted in
  ``nres-pipe:docs/output_format.txt`` (the numbers the original used for that frame).
- elp, cpt: latitude and longitude of the LCO 1-m dome-A telescopes as used in LCO's public
  scheduling software (elp 30.6801 N, 104.015194444 W; cpt 32.38059 S, 20.8101083333 E). The
  heights are approximate site elevations (elp 2027 m, cpt 1807 m; good to about 50 m).
- tlv: Wise Observatory (Mitzpe Ramon), 30.5958 N, 34.7633 E, 875 m: the observatory's published
  position, good to about 100 m (the NRES telescope's own pier is not public in the references).
- bpl: LCO headquarters lab (Goleta, California), 34.4332 N, 119.8634 W, 7 m, approximate: the lab
  unit that the first row of the original's spectrographs.csv describes.

A position error of 100 m changes a barycentric correction by less than 1 cm/s (Earth rotation
is 465 m/s at the equator over 6378 km), so these numbers are ample for simulation and tests.
The instrument names (TELESCOP) are those of ``nres-pipe:nrespipe/settings.py`` and ``main.py``
(lsc nres01, elp nres02, cpt nres03, tlv nres04); the lab unit has none.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidParameterError

__all__ = ["Site", "SITES", "site_location", "get_site"]


@dataclass(frozen=True)
class Site:
    """One NRES site.

    Attributes
    ----------
    code : str
        LCO site code (``SITEID``), lower case: lsc, elp, cpt, tlv, bpl.
    name : str
        Observatory name.
    instrument : str or None
        The NRES unit there (``TELESCOP``: nres01..nres04); None for the lab.
    camera : str or None
        The camera (``INSTRUME``) of the unit in the original's 2019 configuration.
    latitude, longitude : float
        Geodetic latitude and East longitude, degrees.
    height : float
        Height above the WGS84 ellipsoid, metres.
    """

    code: str
    name: str
    instrument: str | None
    camera: str | None
    latitude: float
    longitude: float
    height: float

    @property
    def location(self):
        """The site as an ``astropy.coordinates.EarthLocation``."""
        import astropy.units as u
        from astropy.coordinates import EarthLocation

        return EarthLocation.from_geodetic(
            lon=self.longitude * u.deg, lat=self.latitude * u.deg, height=self.height * u.m
        )


#: Every NRES site by code.
SITES: dict[str, Site] = {
    s.code: s
    for s in (
        Site(
            "lsc",
            "Cerro Tololo Inter-American Observatory (LCO node)",
            "nres01",
            "fa09",
            -30.1673305556,
            -70.8046611111,
            2201.0,
        ),
        Site("elp", "McDonald Observatory (LCO node)", "nres02", "fa17", 30.6801, -104.015194444, 2027.0),
        Site(
            "cpt",
            "South African Astronomical Observatory, Sutherland (LCO node)",
            "nres03",
            "fa13",
            -32.38059,
            20.8101083333,
            1807.0,
        ),
        Site("tlv", "Wise Observatory, Mitzpe Ramon (LCO node)", "nres04", "fa18", 30.5958, 34.7633, 875.0),
        Site("bpl", "LCO headquarters lab, Goleta", None, None, 34.4332, -119.8634, 7.0),
    )
}


def get_site(site) -> Site:
    """The :class:`Site` for a code (case-insensitive, blanks ignored) or a :class:`Site` itself.

    Raises
    ------
    InvalidParameterError
        ``site`` is not one of :data:`SITES`.
    """
    if isinstance(site, Site):
        return site
    code = str(site).strip().lower()
    if code not in SITES:
        msg = f"site: unknown NRES site {site!r}; expected one of {', '.join(SITES)}"
        raise InvalidParameterError(msg)
    return SITES[code]


def site_location(code):
    """``EarthLocation`` of an NRES site.

    Parameters
    ----------
    code : str or Site
        Site code (lsc, elp, cpt, tlv or bpl; case-insensitive).

    Returns
    -------
    astropy.coordinates.EarthLocation

    Examples
    --------
    >>> loc = site_location("lsc")
    >>> round(loc.lat.deg, 4), round(loc.lon.deg, 4)
    (-30.1673, -70.8047)
    """
    return get_site(code).location
