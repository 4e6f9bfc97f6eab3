"""Benchmark of nres.io.read_raw on full-size raw NRES frames (4108 x 4160 uint16 + side tables).

Two files are written to a temporary directory: an fpacked ``.fits.fz`` (RICE, as the archive
serves them) and a plain ``.fits``. The image is a bias level with Gaussian read noise (7 ADU)
plus smooth "orders", so compression behaves like real data. Run ``python benchmarks/bench_io.py``;
writes ``benchmarks/results/io.json``.
Target (ours, not from an issue): a full fpacked frame read, decompressed and validated in under
0.5 s warm, so ingest stays negligible next to the reduction.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_cold_warm, write_results

SHAPE = (4108, 4160)


def _header() -> fits.Header:
    cards = {
        "OBSTYPE": "TARGET", "SITEID": "lsc", "TELESCOP": "nres01", "INSTRUME": "fa09",
        "DAY-OBS": "20180501", "DATE-OBS": "2018-05-02T01:02:03.456", "MJD-OBS": 58240.04309,
        "EXPTIME": 900.0, "GAIN": 1.0, "RDNOISE": 7.3, "SATURATE": 47500.0, "MAXLIN": 40000.0,
        "DETSIZE": "[1:4160,1:4108]", "CCDSUM": "1 1", "BIASSEC": "[4103:4160,1:4096]",
        "DATASEC": "[1:4096,1:4096]", "TRIMSEC": "[1:4096,1:4096]", "OBJECTS": "HD 10700&thar&none",
    }  # fmt: skip
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    return header


def _image(rng) -> np.ndarray:
    y = np.arange(SHAPE[0])[:, None]
    x = np.arange(SHAPE[1])[None, :]
    orders = 3000.0 * np.exp(-0.5 * ((y % 60 - 30) / 2.0) ** 2) * np.exp(-0.5 * ((x - 2048) / 1500.0) ** 2)
    image = 1000.0 + orders + rng.normal(0.0, 7.0, SHAPE)
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16)


def _write(path, image, header, compressed):
    tel = fits.Header()
    for key, value in {"OBJECT": "HD 10700", "CAT-RA": "01:44:04.083", "CAT-DEC": "-15:56:14.93",
                       "CAT-EPOC": 2000.0, "PM-RA": -1.72982, "PM-DEC": 0.85509, "PARALLAX": 0.27417,
                       "LONGITUD": -70.8049, "LATITUDE": -30.1673, "HEIGHT": 2198.0}.items():  # fmt: skip
        tel[key] = value
    em = fits.BinTableHDU.from_columns(
        [fits.Column(name="FIB0COUNTS", format="J", array=np.arange(900, dtype=np.int32))],
        name="EXPOSURE_METER",
    )
    if compressed:
        spec = fits.CompImageHDU(image, header=header, name="SPECTRUM", compression_type="RICE_1")
    else:
        spec = fits.ImageHDU(image, header=header, name="SPECTRUM")
    hdus = [fits.PrimaryHDU(), spec, em, fits.ImageHDU(header=tel, name="TELESCOPE_1")]
    fits.HDUList(hdus).writeto(path, checksum=True)


def main() -> None:
    from nres.io import read_raw

    rng = np.random.default_rng(0)
    image, header = _image(rng), _header()
    with tempfile.TemporaryDirectory() as tmp:
        fz = Path(tmp) / "lscnrs01-fa09-20180501-0042-e00.fits.fz"
        plain = Path(tmp) / "lscnrs01-fa09-20180501-0042-e00.fits"
        _write(fz, image, header, compressed=True)
        _write(plain, image, header, compressed=False)
        assert np.array_equal(read_raw(fz).frame.data, image)
        sizes = {"fz_MB": fz.stat().st_size / 1e6, "fits_MB": plain.stat().st_size / 1e6}
        cases = {
            "read_raw_fits_fz_full_frame": {**time_cold_warm(lambda: read_raw(fz)), "target_s": 0.5,
                                            "file_MB": round(sizes["fz_MB"], 2)},
            "read_raw_fits_full_frame": {**time_cold_warm(lambda: read_raw(plain)), "target_s": 0.5,
                                         "file_MB": round(sizes["fits_MB"], 2)},
        }  # fmt: skip
    for case in cases.values():
        case["passed"] = case["warm_s"] <= case["target_s"]
    write_results("io", cases)


if __name__ == "__main__":
    main()
