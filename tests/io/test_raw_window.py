"""read_raw accepts a windowed raw frame (a crop of the detector carrying its origin, nres.window)."""

from __future__ import annotations

import numpy as np
import pytest

from nres.errors import InvalidInputFileError
from nres.io import read_raw
from nres.window import window_origin

from .raw_builders import real_main_header, write_raw


def _window_header(y0, x0, ny, nx):
    header = real_main_header()  # DETSIZE stays the whole detector, as for a real ROI readout
    header["BIASSEC"] = f"[{nx + 1}:{nx + 58},1:{ny}]"
    header["TRIMSEC"] = header["DATASEC"] = f"[1:{nx},1:{ny}]"
    header["NRESY0"], header["NRESX0"] = y0, x0
    header["LTV1"], header["LTV2"] = -x0, -y0
    return header


def test_windowed_raw_frame_is_read_with_its_origin(tmp_path):
    ny, nx = 40, 100
    image = (1000 + np.arange(ny * (nx + 58)).reshape(ny, nx + 58) % 500).astype(np.uint16)
    path = write_raw(tmp_path / "w.fits.fz", header=_window_header(1000, 2000, ny, nx), image=image)
    raw = read_raw(path)
    np.testing.assert_array_equal(raw.frame.data, image)
    assert window_origin(raw.frame.meta) == (1000, 2000)
    assert raw.info.trim_slices == (slice(0, ny), slice(0, nx))
    assert raw.info.bias_slices == (slice(0, ny), slice(nx, nx + 58))


@pytest.mark.parametrize(("y0", "x0"), [(4090, 0), (0, 4000), (-1, 0)])
def test_window_outside_the_detector_is_refused(tmp_path, y0, x0):
    ny, nx = 40, 100
    image = np.full((ny, nx + 58), 1000, dtype=np.uint16)
    path = write_raw(
        tmp_path / "w.fits", header=_window_header(y0, x0, ny, nx), image=image, compressed=False
    )
    with pytest.raises(InvalidInputFileError, match="not inside the 4096 x 4096"):
        read_raw(path)


def test_window_too_small_for_its_sections_is_refused(tmp_path):
    image = np.full((40, 120), 1000, dtype=np.uint16)  # 100 data + 58 overscan columns announced
    path = write_raw(tmp_path / "w.fits", header=_window_header(0, 0, 40, 100), image=image, compressed=False)
    with pytest.raises(InvalidInputFileError, match="wrong image shape"):
        read_raw(path)
