"""Cosmic rays in the pipeline: few-frame masters (one or two darks) and science (TARGET) frames.

A one-frame master keeps its hits (sigma clipping needs three frames); subtracted from a frame
they leave holes of -(hit) electrons that the extraction cannot tell from light (a hole where an
order's profile is wrong became a 22x spike with 0.07x its Poisson variance in both exposures of
the standard on tests/pipeline/test_zero_ops.py's night). Truth: the simulator's cosmic-ray map of
each frame, re-simulated from the night's truth table (same seed, window and settings).
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.table import Table

from nres.calib import flag_cosmic_rays, process_ccd, stack
from nres.flags import Flag, flags_to_mask
from nres.io import read_raw
from nres.pipeline.calibrations import stack_calibrations
from nres.pipeline.db import Database
from nres.pipeline.frames import read_frame
from nres.pipeline.night import reduce_night
from nres.sim import SimConfig, simulate, simulate_night

WINDOW = (1000, 1160, 1500, 1820)  # rows, columns of the trimmed detector: between-order dark pixels
CONFIG = SimConfig(cosmic_rate=20.0)  # 10x the default rate: ~60 hits per dark in this window
DEPOSIT_E = 100.0  # hits below this (partially covered pixels at a track's end) are not counted


def _truth(row):
    """(processed-like frame in electrons, cosmic-ray map) of one night frame, re-simulated."""
    frame, truth = simulate(
        str(row["obstype"]), site="lsc", seed=int(row["seed"]), window=tuple(int(v) for v in row["window"]),
        mjd=float(row["mjd_obs"]), exptime=float(row["exptime"]), config=CONFIG,
    )  # fmt: skip
    clean, _ = simulate(
        str(row["obstype"]), site="lsc", seed=int(row["seed"]), window=tuple(int(v) for v in row["window"]),
        mjd=float(row["mjd_obs"]), exptime=float(row["exptime"]), config=replace(CONFIG, cosmic_rate=0.0),
    )  # fmt: skip
    deposit = np.asarray(frame.data) - np.asarray(clean.data)
    return truth.cosmic_rays & (deposit > DEPOSIT_E), truth.cosmic_rays


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """One bias and two darks (dusk, dawn) reduced by reduce_night (masters with min_frames=1: a one-
    frame bias, the two-frame dark), and a one-frame master dark of the dusk dark alone."""
    root = tmp_path_factory.mktemp("cosmic")
    truth_path = simulate_night(
        "lsc", "2019-04-05", root / "archive", n_bias=1, n_dark=2, n_flat=0, n_arc=0, targets=(),
        window=WINDOW, seed=3, config=CONFIG, compress=False, progress=False,
    )  # fmt: skip
    raw = truth_path.parent / "raw"
    table = Table.read(truth_path)
    db = Database(f"sqlite:///{root / 'nres.sqlite'}")
    with ThreadPoolExecutor(2) as pool:
        result = reduce_night(
            raw, root / "reduced", db=db, executor=pool, min_frames=1, progress=False, plot=False
        )
    darks = sorted((r for r in table if r["obstype"] == "DARK"), key=lambda r: r["mjd_obs"])
    first, second = darks
    one = stack_calibrations(
        "DARK", site="lsc", camera=str(db.frames_table()["camera"][0]), start=first["mjd_obs"] - 1e-3,
        end=first["mjd_obs"] + 1e-3, db=db, min_frames=1, out_dir=root / "one",
    )  # fmt: skip
    masters = {r["obstype"]: r["path"] for r in result.masters}
    products = {Path(p).name.split("-")[3]: p for p in sorted((root / "reduced").glob("*-2d.fits*"))}
    return {
        "root": root, "raw": raw, "darks": darks, "hits": [_truth(r) for r in darks], "one": one[0]["path"],
        "two": masters["DARK"], "bias": masters["BIAS"], "products": products,
    }  # fmt: skip


def test_dark_product_is_a_rate(night):
    """A processed DARK is in e-/s (EXPTIME 1, the exposure in DARKEXPT), so reduce_file can register
    it as a calibration by itself (in electrons it subtracted EXPTIME x the dark from every frame)."""
    number = f"{int(night['darks'][0]['frame_number']):04d}"
    frame = read_frame(night["products"][number])
    assert frame.meta["EXPTIME"] == 1.0 and frame.meta["DARKEXPT"] == float(night["darks"][0]["exptime"])
    assert str(frame.unit) in ("electron / s", "e / s")
    steps = [v for k, v in frame.meta.items() if k.endswith("STEP")]
    assert "nres.calib.flag_cosmic_rays" in steps and "nres.calib.fill_masked" in steps


def test_one_frame_master_dark_has_its_hits_masked_and_filled(night):
    """Every hit of the dusk dark (deposit > 100 e-) is masked (NO_WEIGHT, COSMIC_RAY) in its one-frame
    master; the master is finite everywhere and holds the dark level there (the median of the row's
    neighbours: |rate| x EXPTIME within 8 read-noise sigma), not the hit."""
    master, ngood = read_frame(night["one"], with_ngood=True)
    strong, _ = night["hits"][0]
    exptime = float(night["darks"][0]["exptime"])
    assert strong.sum() > 20
    data = np.asarray(master.data)
    assert np.isfinite(data).all() and np.isfinite(master.uncertainty.array).all()
    assert master.mask[strong].all() and (ngood[strong] == 0).all()
    assert ((master.flags[strong] & Flag.NO_WEIGHT) != 0).all()
    rn = float(master.meta["RDNOISE"])
    assert np.abs(data[strong] * exptime).max() < 8.0 * rn
    # and little else: besides the hit pixels (their partially hit, fainter ones included) the master
    # masks its saturated pixels' bleed pads and the window's few defects (measured: 1.16x)
    _, every_hit = night["hits"][0]
    assert master.mask.sum() < 3 * every_hit.sum()


def test_two_frame_master_takes_the_other_frame_at_a_hit(night):
    """Two darks: at a hit of one (not of the other) the master is the other's value alone (NGOOD 1,
    not masked) -- sigma clipping of two never rejects, the flagging does."""
    master, ngood = read_frame(night["two"], with_ngood=True)
    (a, a_all), (b, b_all) = night["hits"]
    only_a = a & ~b_all
    assert only_a.sum() > 20
    numbers = [f"{int(r['frame_number']):04d}" for r in night["darks"]]
    other = read_frame(night["products"][numbers[1]])
    assert (ngood[only_a] == 1).all() and not master.mask[only_a].any()
    np.testing.assert_allclose(master.data[only_a], other.data[only_a], rtol=1e-6, atol=1e-6)  # float32 files


def test_frame_calibrated_by_the_one_frame_master_has_no_hole(night):
    """The dawn dark processed with the dusk dark's one-frame master: at the master's hits it is masked
    (BAD_PIXEL) and within 8 sigma of zero. With a one-frame master made without the flagging (the
    old behaviour) the same pixels are unmasked holes of about minus the hit."""
    raw = read_raw(night["raw"] / str(night["darks"][1]["filename"]))
    bias = read_frame(night["bias"])
    one = read_frame(night["one"])
    frame = process_ccd(raw, bias=bias, dark=one)
    strong, _ = night["hits"][0]
    _, b_all = night["hits"][1]
    at = strong & ~b_all
    sigma = np.sqrt(frame.uncertainty.array[at])
    assert ((frame.flags[at] & Flag.BAD_PIXEL) != 0).all()
    assert np.all(np.abs(frame.data[at]) < 8.0 * sigma)
    # the old one-frame master: the dusk dark processed with the bias, stacked alone, not flagged
    dusk = process_ccd(read_raw(night["raw"] / str(night["darks"][0]["filename"])), bias=bias)
    old = stack([dusk], obstype="DARK", min_frames=1)
    holes = process_ccd(raw, bias=bias, dark=old)
    unsaturated = at & ~old.mask
    assert unsaturated.sum() > 10
    assert not holes.mask[unsaturated].any() and np.median(holes.data[unsaturated]) < -DEPOSIT_E


@pytest.fixture(scope="module")
def target_frames():
    """A simulated TARGET (3 orders x 700 columns) with cosmic rays and the same without them (same
    seed: the noise is identical), and traces/profiles from a simulated flat."""
    from nres.pipeline.recipes import trace_flat

    window = {"orders": (81, 85), "columns": (2300, 3000)}
    flat, _ = simulate("LAMPFLAT", site="lsc", seed=11, window=window)
    traces, profiles, _ = trace_flat(flat, site="lsc")
    frame, truth = simulate("TARGET", site="lsc", seed=5, window=window)
    clean, _ = simulate("TARGET", site="lsc", seed=5, window=window, config=SimConfig(cosmic_rate=0.0))
    flags = np.asarray(frame.flags) & ~np.uint16(Flag.COSMIC_RAY)  # the simulator flags its own hits
    frame = CCDData(np.asarray(frame.data), unit="electron", uncertainty=frame.uncertainty, flags=flags,
                    mask=flags_to_mask(flags), meta=frame.meta)  # fmt: skip
    return frame, clean, truth, traces, profiles


def _extract(frame, traces, profiles):
    from nres.extract import extract, subtract_scattered_light

    cleaned, background = subtract_scattered_light(frame, traces)
    return extract(cleaned, traces, profile=profiles, background=background)


def test_target_cosmic_rays_rejected(target_frames):
    """TARGET frames: the extraction's per-column rejection alone leaves tracks along a column (a
    whole aperture hit) as spikes of hundreds of sigma and lets hits bias the scattered-light fit;
    with the pipeline's flagging (contrast method, grown from saturated pixels) the spectrum of the
    inner orders is the cosmic-ray-free one: every column within 6 sigma, rms 0.1 sigma."""
    frame, clean, truth, traces, profiles = target_frames
    ref = _extract(clean, traces, profiles)
    inner = np.isin(ref.orders, ref.orders[1:-1])[None, :, None]  # the window's edge orders aside

    def pulls(spec):
        z = (spec.data - ref.data) / np.sqrt(ref.variance)
        ok = np.isfinite(z) & ~spec.mask & ~ref.mask & inner
        return np.abs(z[ok]), (spec.mask & ~ref.mask & inner).sum()

    z_plain, _ = pulls(_extract(frame, traces, profiles))
    assert z_plain.max() > 100.0  # the failure this fixes: a track along a column
    flagged = flag_cosmic_rays(frame, method="contrast", grow_from=Flag.SATURATED)  # as recipes._process
    z, n_lost = pulls(_extract(flagged, traces, profiles))
    assert z.max() < 6.0 and np.sqrt(np.mean(z**2)) < 0.1, (z.max(), np.sqrt(np.mean(z**2)))
    assert n_lost < 0.01 * np.broadcast_to(inner, ref.data.shape).sum()  # < 1 % of the columns lost
