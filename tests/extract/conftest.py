"""Synthetic lamp flats with known trace centres for the tracing tests.

The geometry comes from the real lsc trace table of the original pipeline (tests/data), the
profiles are pixel-integrated Gaussians (erf), and the truth is each trace's own per-column flux
centroid, computed here independently of nres.extract.
"""

from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import CCDData, VarianceUncertainty
from scipy.special import erf

from nres.traces import Traces
from nres.window import with_window_origin

DATA = Path(__file__).parents[1] / "data"


def read_seed_table(path=DATA / "lsc_fa09_trace.20181001.txt"):
    """The original's 42-sample trace table as Traces of fibers 0, 1 and 2 (2 extrapolated)."""
    lines = Path(path).read_text().splitlines()
    x = np.array(lines[2].split()[1:], dtype=float)
    rows = np.array([ln.split() for ln in lines[3:] if ln.strip()], dtype=float)
    f0, f1 = rows[0::2, 1:], rows[1::2, 1:]
    f2 = 2 * f1 - f0  # the original extrapolates fiber 2 one fiber step below fiber 1
    n = f0.shape[0]
    y = np.vstack([f0, f1, f2])
    return Traces.from_samples(
        x, y, orders=np.tile(52 + np.arange(n), 3), fibers=np.repeat([0, 1, 2], n), degree=6
    )


@pytest.fixture(scope="session")
def seed_traces():
    return read_seed_table()


def render_flat(
    traces,
    *,
    fibers,
    window,
    sigma=1.6,
    peak=2.0e4,
    dy=0.0,
    rot=0.0,
    scale=1.0,
    background=0.0,
    slope=0.0,
    seed=1,
    read_noise=5.0,
):
    """(CCDData, truth) for a lamp flat of ``traces`` moved by dy, rotated by rot (rad), scaled.

    window = (y0, y1, x0, x1) full-detector; truth = dict(fibers, orders, centers (n, nx)) with
    NaN where a trace's profile is not wholly on the window.
    """
    y0, y1, x0, x1 = window
    ny, nx = y1 - y0, x1 - x0
    xs = np.arange(x0, x1, dtype=float)
    rows = np.arange(y0, y1, dtype=float)
    sel = traces.select(fibers=fibers)
    yc = traces.center(xs)[np.isin(traces.fibers, fibers)]
    yc = 2047.5 + scale * (yc - 2047.5) + dy + rot * (xs - 2047.5)
    image = np.zeros((ny, nx))
    centers = np.full(yc.shape, np.nan)
    blaze = 0.4 + 0.6 * np.exp(-0.5 * ((xs - 2048) / 1500.0) ** 2)
    for i, c in enumerate(yc):
        if np.all(c < y0 - 20) or np.all(c > y1 + 20):
            continue
        s2 = np.sqrt(2) * sigma
        f = 0.5 * (erf((rows[:, None] + 0.5 - c) / s2) - erf((rows[:, None] - 0.5 - c) / s2))
        f *= peak * sigma * np.sqrt(2 * np.pi) * blaze
        image += f
        whole = (c - 8 * sigma >= y0) & (c + 8 * sigma <= y1 - 1)
        with np.errstate(invalid="ignore", divide="ignore"):  # traces wholly off the window
            cen = (rows[:, None] * f).sum(axis=0) / f.sum(axis=0)
        centers[i] = np.where(whole, cen, np.nan)
    image += background + slope * (rows[:, None] - y0)
    rng = np.random.default_rng(seed)
    var = np.maximum(image, 0) + read_noise**2
    noisy = image + rng.normal(size=image.shape) * np.sqrt(var)
    objects = "&".join("tung" if f in fibers else "none" for f in (0, 1, 2))
    meta = with_window_origin({"OBJECTS": objects, "SITEID": "lsc"}, y0, x0)
    flat = CCDData(
        noisy,
        unit="electron",
        uncertainty=VarianceUncertainty(var),
        mask=np.zeros(image.shape, bool),
        meta=meta,
    )
    truth = {"fibers": sel.fibers, "orders": sel.orders, "centers": centers, "x": xs}
    return flat, truth


@pytest.fixture(scope="session")
def flat_factory():
    """:func:`render_flat` for tests (conftest modules are not importable by name)."""
    return render_flat
