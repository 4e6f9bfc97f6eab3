"""Shared builders of small synthetic raw NRES-like frames with known truth (tests of nres.calib)."""

import numpy as np
import pytest
from astropy.nddata import CCDData

NY, NX, NBIAS = 64, 80, 16  # trimmed size and overscan width: small but the same layout as NRES


def make_raw(
    rng,
    *,
    level=1000.0,
    row_slope=0.0,
    gain=2.0,
    read_noise=7.0,
    signal=None,
    exptime=0.0,
    obstype="BIAS",
    noise=True,
    saturate=65535.0,
    maxlin=60000.0,
    extra=None,
):
    """Raw frame in ADU: overscan columns on the right, data on the left.

    Truth: bias level ``level + row_slope * y`` ADU in every column (overscan and data),
    ``signal`` electrons (ny, nx) Poisson-sampled, Gaussian read noise in electrons.
    """
    y = np.arange(NY)[:, None]
    bias = level + row_slope * y + np.zeros((NY, NX + NBIAS))
    e = np.zeros((NY, NX + NBIAS))
    if signal is not None:
        e[:, :NX] = rng.poisson(signal) if noise else signal
    if noise:
        e = e + rng.normal(0.0, read_noise, e.shape)
    raw = bias + e / gain
    if noise:
        raw = np.round(raw)
    raw = np.minimum(raw, saturate)
    meta = {
        "GAIN": gain,
        "RDNOISE": read_noise,
        "SATURATE": saturate,
        "MAXLIN": maxlin,
        "BIASSEC": f"[{NX + 1}:{NX + NBIAS},1:{NY}]",
        "TRIMSEC": f"[1:{NX},1:{NY}]",
        "EXPTIME": exptime,
        "OBSTYPE": obstype,
        "INSTRUME": "fa09",
        "OBJECTS": "none&none&none" if obstype in ("BIAS", "DARK") else "tung&tung&none",
    }
    meta.update(extra or {})
    return CCDData(raw, unit="adu", meta=meta)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)
