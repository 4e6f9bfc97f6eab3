"""Builders of raw NRES files for the nres.io tests, written with astropy like the real ones.

Layout of a real fpacked raw file: an empty primary HDU, the image as a tile-compressed (RICE)
``SPECTRUM`` extension (BITPIX 16, BZERO 32768 -> uint16, NAXIS1 4160 x NAXIS2 4108), the binary
tables EXPOSURE_METER, AGU_1, AGU_2 and the header-only extensions TELESCOPE_1, TELESCOPE_2.
The main header is the real header of cptnrs03-fa13-20190405-0014-a00 (tests/data/README.md) with
the table-layout cards removed and OBSTYPE restored to DOUBLE (xwavecal had rewritten it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

DATA = Path(__file__).parent.parent / "data"
REAL_HEADER = DATA / "raw_header_cpt_nres03_fa13_20190405_0014.txt"
SHAPE = (4108, 4160)  # numpy (NAXIS2, NAXIS1) of a full raw NRES frame

_LAYOUT = ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "TTYPE", "TFORM", "EXTNAME",
           "CHECKSUM", "DATASUM", "L1IDTRAC")  # fmt: skip


def real_main_header() -> fits.Header:
    """The real NRES header, cleaned of the table layout, as the raw SPECTRUM header."""
    header = fits.Header.fromtextfile(REAL_HEADER)
    for key in list(header.keys()):
        if key.startswith(_LAYOUT):
            del header[key]
    header["OBSTYPE"] = "DOUBLE"  # the a00 frame is a ThAr DOUBLE; xwavecal wrote 'fibers'
    return header


def make_image() -> np.ndarray:
    """Deterministic full-size uint16 raw image: bias level, a coarse gradient, and both extremes."""
    y = np.arange(SHAPE[0])[:, None]
    x = np.arange(SHAPE[1])[None, :]
    image = (1000 + (y // 64) * 3 + (x // 128) * 7).astype(np.uint16)
    image[:, 4102:] = 990  # overscan columns (BIASSEC [4103:4160,1:4096])
    image[0, 0] = 0
    image[100, 200] = 65535  # uint16 extremes must come back exactly
    image[2000, 3000] = 47600  # above SATURATE 47500
    return image


def telescope_header(n, **cards) -> fits.Header:
    """A TELESCOPE_<n> header as LCO writes it; calibration frames carry N/A everywhere."""
    header = fits.Header()
    defaults = {
        "OBJECT": "N/A", "RA": "N/A", "DEC": "N/A", "CAT-RA": "N/A", "CAT-DEC": "N/A",
        "CAT-EPOC": "N/A", "PM-RA": "N/A", "PM-DEC": "N/A", "PARALLAX": "N/A", "RADESYS": "ICRS",
        "LONGITUD": 20.8101, "LATITUDE": -32.3806, "HEIGHT": 1760.0, "TELID": f"1m0{n}",
    }  # fmt: skip
    defaults.update(cards)
    for key, value in defaults.items():
        header[key] = value
    return header


def table_hdus(telescopes=None) -> list:
    em = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="MJD_START", format="D", array=58578.5392 + np.arange(4) / 86400.0),
            fits.Column(name="EXP_TIME", format="E", array=np.full(4, 1.0)),
            fits.Column(name="FIB0COUNTS", format="J", array=np.array([0, 0, 0, 0])),
            fits.Column(name="FIB1COUNTS", format="J", array=np.array([10, 20, 30, 40])),
            fits.Column(name="FIB2COUNTS", format="J", array=np.array([11, 21, 31, 41])),
            fits.Column(name="EMFLAGS", format="J", array=np.zeros(4, dtype=np.int32)),
        ],
        name="EXPOSURE_METER",
    )
    agus = []
    for n in (1, 2):
        agu = fits.BinTableHDU.from_columns(
            [
                fits.Column(name="FILENAME", format="30A", array=[f"agu{n}-0001.fits", f"agu{n}-0002.fits"]),
                fits.Column(name="JD_UTC", format="D", array=[2458579.0392, 2458579.0393]),
                fits.Column(name="N_SRCS", format="J", array=[3, 4]),
            ],
            name=f"AGU_{n}",
        )
        agus.append(agu)
    telescopes = telescopes or {1: telescope_header(1), 2: telescope_header(2)}
    tels = [fits.ImageHDU(header=telescopes[n], name=f"TELESCOPE_{n}") for n in (1, 2) if n in telescopes]
    return [em, *agus, *tels]


def write_raw(path, *, header=None, image=None, compressed=True, checksum=True, telescopes=None,
              image_hdu="extension", tables=True) -> Path:  # fmt: skip
    """Write a raw NRES file like the real ones; ``image_hdu='primary'`` puts the image in HDU 0."""
    header = real_main_header() if header is None else header
    image = make_image() if image is None else image
    extra = table_hdus(telescopes) if tables else []
    if image_hdu == "primary":
        hdus = [fits.PrimaryHDU(image, header=header), *extra]
    elif image_hdu == "none":
        hdus = [fits.PrimaryHDU(header=header), *extra]
    elif image_hdu == "empty":
        hdus = [fits.PrimaryHDU(), fits.ImageHDU(header=header, name="SPECTRUM"), *extra]
    elif compressed:
        spec = fits.CompImageHDU(image, header=header, name="SPECTRUM", compression_type="RICE_1")
        hdus = [fits.PrimaryHDU(), spec, *extra]
    else:
        hdus = [fits.PrimaryHDU(), fits.ImageHDU(image, header=header, name="SPECTRUM"), *extra]
    fits.HDUList(hdus).writeto(path, checksum=checksum)
    return Path(path)
