"""Generate tests/data/rv_barycentric_reference.ecsv: independent barycentric corrections and BJD_TDB.

NOT run by the tests. It documents how the stored reference values were made, with an independent
implementation of Wright & Eastman (2014): barycorrpy 0.4.4 with the JPL DE421 ephemeris shipped by
skyfield-data 7.0.0. Neither package is a dependency of nres; to regenerate::

    pip install barycorrpy skyfield-data==7.0.0
    python tests/data/make_barycentric_reference.py

barycorrpy downloads IERS-B at import; the recipe of ../shared/docs/notes/barycorrpy-offline.md
seeds astropy's cache with the IERS-B file that astropy-iers-data ships instead, and the site is
passed as latitude/longitude/height (``obsname`` would need a download).

What is stored: for zmeas=0, ``get_BC_vel`` returns c * z_B, where 1 + z_B is Wright & Eastman's
barycentric Doppler factor (their eq. 28 with the star's motion), i.e. the quantity that multiplies:
1 + z_true = (1 + z_meas)(1 + z_B). That is the same quantity astropy's
``radial_velocity_correction(kind="barycentric")`` returns (astropy computes (zb - 1) c with zb the
same factor), so the two are compared like with like. ``JDUTC_to_BJDTDB`` gives BJD_TDB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.utils import iers
from astropy.utils.data import import_file_to_cache

import_file_to_cache(iers.IERS_B_URL, iers.IERS_B_FILE, remove_original=False)
iers.conf.auto_download = False

import skyfield_data  # noqa: E402
from barycorrpy import JDUTC_to_BJDTDB, get_BC_vel  # noqa: E402

EPHEMERIS = str(Path(skyfield_data.__file__).parent / "data" / "de421.bsp")

# NRES sites (geodetic, WGS84): LCO site coordinates, rounded. The test passes these same numbers.
SITES = {
    "lsc": (-30.1673, -70.8047, 2198.0),
    "elp": (30.6801, -104.0152, 2027.0),
    "cpt": (-32.3806, 20.8102, 1804.0),
    "tlv": (30.5958, 34.7633, 875.0),
}
# name, RA deg, Dec deg, pmRA* mas/yr, pmDec mas/yr, parallax mas, RV m/s, epoch JD (catalogue epoch)
STARS = [
    ("tau_Cet", 26.01701, -15.93748, -1721.05, 854.16, 273.96, -16680.0, 2451545.0),
    ("Barnard", 269.45208, 4.69339, -802.803, 10362.542, 546.9759, -110600.0, 2451545.0),
    ("alf_Cen_A", 219.90206, -60.83399, -3679.25, 473.67, 747.1, -21400.0, 2451545.0),
    ("51_Peg", 344.36658, 20.76883, 207.25, 60.34, 64.07, -33200.0, 2451545.0),
    ("HD_Gaia_epoch", 101.28716, -16.71612, -546.01, -1223.07, 379.21, -5500.0, 2457389.0),
    ("far_star", 120.0, 45.0, 0.0, 0.0, 0.001, 0.0, 2451545.0),
]
JDS = [2458119.61, 2458400.25, 2458850.93, 2459600.5, 2460300.1]


def main():
    rows = []
    for si, (site, (lat, lon, alt)) in enumerate(SITES.items()):
        for k, (name, ra, dec, pmra, pmdec, px, rv, epoch) in enumerate(STARS):
            # every star at every site would be 120 rows: take 5 dates per (site, star) pair cyclically
            # shifted so that each site sees different dates
            for jd in np.roll(JDS, si + k)[:3]:
                vel, _warn, _flag = get_BC_vel(
                    JDUTC=jd,
                    ra=ra,
                    dec=dec,
                    lat=lat,
                    longi=lon,
                    alt=alt,
                    pmra=pmra,
                    pmdec=pmdec,
                    px=px,
                    rv=rv,
                    zmeas=0.0,
                    epoch=epoch,
                    ephemeris=EPHEMERIS,
                    leap_update=False,
                )
                bjd, _w, _f = JDUTC_to_BJDTDB(
                    JDUTC=jd,
                    ra=ra,
                    dec=dec,
                    epoch=epoch,
                    pmra=pmra,
                    pmdec=pmdec,
                    px=px,
                    rv=rv,
                    lat=lat,
                    longi=lon,
                    alt=alt,
                    ephemeris=EPHEMERIS,
                    leap_update=False,
                )
                rows.append(
                    (
                        site,
                        lat,
                        lon,
                        alt,
                        name,
                        ra,
                        dec,
                        pmra,
                        pmdec,
                        px,
                        rv,
                        epoch,
                        jd,
                        float(np.ravel(vel)[0]),
                        float(np.ravel(bjd)[0]),
                    )
                )
    names = (
        "site",
        "lat_deg",
        "lon_deg",
        "height_m",
        "star",
        "ra_deg",
        "dec_deg",
        "pmra_mas_yr",
        "pmdec_mas_yr",
        "parallax_mas",
        "rv_m_s",
        "epoch_jd",
        "jd_utc",
        "bc_m_s",
        "bjd_tdb",
    )
    table = Table(rows=rows, names=names)
    table.meta["comments"] = [
        "barycorrpy 0.4.4 get_BC_vel (zmeas=0: c*z_B, W&E 2014) and JDUTC_to_BJDTDB,"
        " ephemeris JPL DE421 (skyfield-data 7.0.0); see make_barycentric_reference.py",
    ]
    out = Path(__file__).parent / "rv_barycentric_reference.ecsv"
    table.write(out, overwrite=True, format="ascii.ecsv")
    print(f"wrote {len(table)} rows to {out}")


if __name__ == "__main__":
    main()
