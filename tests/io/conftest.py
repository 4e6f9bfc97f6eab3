"""Session fixtures of the nres.io tests: full-size raw files written once (see raw_builders.py)."""

from __future__ import annotations

import pytest

from .raw_builders import make_image, real_main_header, telescope_header, write_raw


@pytest.fixture(scope="session")
def raw_image():
    return make_image()


@pytest.fixture(scope="session")
def raw_fz(tmp_path_factory, raw_image):
    """The real DOUBLE frame's header on a full-size image, fpacked (.fits.fz), with checksums."""
    return write_raw(
        tmp_path_factory.mktemp("raw") / "cptnrs03-fa13-20190405-0014-a00.fits.fz", image=raw_image
    )


@pytest.fixture(scope="session")
def target_headers():
    header = real_main_header()
    header["OBSTYPE"] = "TARGET"
    header["OBJECTS"] = "HD 10700&thar&none"
    telescopes = {
        1: telescope_header(
            1, OBJECT="HD 10700", RA="01:44:05.100", DEC="-15:56:20.00", **{"CAT-RA": "01:44:04.083",
            "CAT-DEC": "-15:56:14.93", "CAT-EPOC": 2000.0, "PM-RA": -1.72982, "PM-DEC": 0.85509,
            "PARALLAX": 0.27417}),
        2: telescope_header(2),
    }  # fmt: skip
    return header, telescopes


@pytest.fixture(scope="session")
def raw_target_fits(tmp_path_factory, raw_image, target_headers):
    """A full-size TARGET frame written uncompressed (.fits)."""
    header, telescopes = target_headers
    path = tmp_path_factory.mktemp("raw") / "cptnrs03-fa13-20190405-0020-e00.fits"
    return write_raw(path, header=header, image=raw_image, compressed=False, telescopes=telescopes)
