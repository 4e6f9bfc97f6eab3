"""Camera facts from ccds.csv (fallback for header values)."""

import pytest

from nres.errors import InvalidParameterError
from nres.instrument import CameraInfo, camera_info
from nres.instrument.cameras import known_cameras


def test_archon_and_sinistro_values_from_ccds_csv():
    # nres-pipe csv/ccds.csv: fa* cameras gain 3.2 e-/ADU, 7 e- read noise; fl* 1.0 and 10 e-
    fa = camera_info("fa09")
    assert isinstance(fa, CameraInfo)
    assert (fa.camera, fa.gain, fa.read_noise, fa.nx, fa.ny, fa.pixel_size) == (
        "fa09",
        3.2,
        7.0,
        4096,
        4096,
        15.0,
    )
    assert fa.datasec == (0, 4095)
    fl = camera_info("fl13")
    assert (fl.gain, fl.read_noise) == (1.0, 10.0)


def test_every_site_camera_is_known():
    from nres.instrument import SITES

    assert len(known_cameras()) == 10
    for site in SITES.values():
        if site.camera is not None:
            assert camera_info(site.camera).gain == 3.2


def test_header_style_names_are_accepted():
    assert camera_info("FA17    ") == camera_info("fa17")


def test_unknown_camera_names_it():
    with pytest.raises(InvalidParameterError, match="'zz99'.*fa09"):
        camera_info("zz99")
