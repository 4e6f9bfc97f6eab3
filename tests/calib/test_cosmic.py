"""flag_cosmic_rays (L.A.Cosmic and the contrast method) and fill_masked: injected hits found,
narrow orders and lines left alone, kernels against a numpy twin, simulated frames against truth."""

import numpy as np
import pytest
from astropy.nddata import CCDData, VarianceUncertainty

from nres.calib import fill_masked, flag_cosmic_rays
from nres.errors import InvalidParameterError
from nres.flags import Flag, flags_to_mask


def test_injected_cosmic_rays_flagged_orders_kept():
    rng = np.random.default_rng(7)
    ny, nx, rn = 160, 200, 7.0
    y = np.arange(ny)[:, None]
    truth = 20.0 + np.zeros((ny, nx))
    for yc in (30.3, 70.8, 110.1, 140.6):  # NRES-like orders: Gaussian sigma 1.5 px, bright
        truth += 3000.0 * np.exp(-0.5 * ((y - yc) / 1.5) ** 2)
    data = rng.poisson(truth) + rng.normal(0, rn, truth.shape)
    hits = np.zeros(truth.shape, bool)
    for _ in range(25):
        hy, hx = rng.integers(3, ny - 3), rng.integers(3, nx - 3)
        if np.abs(np.array([30.3, 70.8, 110.1, 140.6]) - hy).min() < 6:
            continue  # hits on top of orders are not what this test measures
        hits[hy, hx] = True
        if rng.random() < 0.5:
            hits[hy, hx + 1] = True
    data[hits] += rng.uniform(800, 5000, hits.sum())
    frame = CCDData(
        data, unit="electron", uncertainty=VarianceUncertainty(truth + rn**2), meta={"RDNOISE": rn}
    )
    out = flag_cosmic_rays(frame)
    cr = (out.flags & Flag.COSMIC_RAY) != 0
    # L.A.Cosmic finds essentially all isolated sharp hits at these amplitudes (> 100 sigma)
    assert cr[hits].mean() >= 0.95
    # and almost nothing else: at most 0.05% of the other pixels (15 of 32000)
    assert cr[~hits].sum() <= 15
    np.testing.assert_array_equal(out.data, frame.data)  # data untouched, only flags
    assert np.array_equal(out.mask, cr)
    assert frame.mask is None


# ----- method="contrast" ------------------------------------------------------------------------------
def _twin_contrast(data, var, rn, bad, seed, k=6.0, contrast=3.0, k_grow=3.0, c_grow=0.5, rounds=3):
    """Numpy/python twin of the contrast detector (the rules of nres.calib.cosmic, pixel by pixel)."""
    ny, nx = data.shape
    use_var = var is not None

    def usable(skip, y, x):
        return 0 <= y < ny and 0 <= x < nx and not skip[y, x]

    def noise(y, x, m):
        return var[y, x] if use_var else rn * rn + max(m, 0.0)

    def stands_out(d, m, v, kk, c):
        e = d - m
        return e > 0 and e > c * max(m, 0.0) and e * e > 2 * kk * kk * max(v, 0.0)

    def reference(skip, y, x, dy, dx):
        """(level, variance, contrast floor) or None."""
        a, b = (y - dy, x - dx), (y + dy, x + dx)
        if usable(skip, *a) and usable(skip, *b):
            p = a if data[a] >= data[b] else b
            return data[p], noise(*p, data[p]), 0.0
        edge = (usable(skip, *a) and x + 1 >= nx) or (usable(skip, *b) and x - 1 < 0)
        if dy == 1 or not edge:
            return None  # along a column both sides are needed; along a row one at the frame's edge
        side = -1 if usable(skip, *a) else 1
        pts = [(y, x + side)] + ([(y, x + 2 * side)] if usable(skip, y, x + 2 * side) else [])
        p = max(pts, key=lambda q: data[q])
        return data[p], noise(*p, data[p]), 30.0

    out = np.zeros((ny, nx), bool)
    for y in range(ny):
        for x in range(nx):
            if bad[y, x]:
                continue
            for dy, dx in ((0, 1), (1, 0)):
                ref = reference(bad, y, x, dy, dx)
                if ref is not None and stands_out(data[y, x], ref[0], ref[1], k, max(contrast, ref[2])):
                    out[y, x] = True
                    break
    new = out | seed
    for _ in range(rounds):
        skip = bad | out | seed
        grown = out.copy()
        for y, x in zip(*np.nonzero(new), strict=True):
            for yy in range(max(y - 1, 0), min(y + 2, ny)):
                for xx in range(max(x - 1, 0), min(x + 2, nx)):
                    if skip[yy, xx] or grown[yy, xx]:
                        continue
                    for dy, dx in ((0, 1), (1, 0)):
                        lo, hi = usable(skip, yy - dy, xx - dx), usable(skip, yy + dy, xx + dx)
                        if not (lo or hi):
                            continue
                        one_sided = not (lo and hi)
                        steps = [s for s in (-2, -1, 1, 2) if not one_sided or (s < 0) == lo]
                        pts = [
                            (yy + s * dy, xx + s * dx)
                            for s in steps
                            if usable(skip, yy + s * dy, xx + s * dx)
                        ]
                        pts.sort(key=lambda p: -data[p])
                        if dy == 1 and not one_sided:
                            m, v, _ = reference(skip, yy, xx, dy, dx)
                        else:
                            p = pts[1] if (len(pts) >= 3 and not one_sided) else pts[0]
                            m, v = data[p], noise(*p, data[p])
                        c = max(c_grow, 30.0) if (one_sided and dy == 1) else c_grow
                        if stands_out(data[yy, xx], m, v, k_grow, c):
                            grown[yy, xx] = True
                            break
        new = grown & ~out
        out = grown
        if not new.any():
            break
    return out


def _echelle_like(rng, ny=90, nx=120):
    """Orders along x (Gaussian profiles, sigma 1.6 px, a slope along x), narrow emission lines
    (sigma 1 px) in one order, Poisson + read noise; then single hits, a vertical and a horizontal
    track, a two-pixel-thick diagonal track, a saturated hit with partially charged neighbours, and a
    masked column."""
    y = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :]
    truth = 15.0 + np.zeros((ny, nx))
    for yc in (15.3, 40.8, 66.1):
        truth += 8000.0 * (1 + 0.3 * x / nx) * np.exp(-0.5 * ((y - yc - 0.01 * x) / 1.6) ** 2)
    for xc in (20.4, 55.0, 90.7):  # lines in the middle order, 3x its continuum
        truth += (
            24000.0 * np.exp(-0.5 * ((x - xc) / 1.0) ** 2) * np.exp(-0.5 * ((y - 40.8 - 0.01 * x) / 1.6) ** 2)
        )
    rn = 7.0
    data = rng.poisson(truth) + rng.normal(0, rn, truth.shape)
    hits = np.zeros(truth.shape, bool)
    for yy, xx in ((5, 10), (28, 60), (52, 100), (80, 70)):  # single pixels between the orders
        hits[yy, xx] = True
    hits[20:27, 80] = True  # vertical track (along a column)
    hits[75, 30:38] = True  # horizontal track
    for i in range(6):  # two pixels thick, diagonal
        hits[56 + i, 5 + i] = hits[56 + i, 6 + i] = True
    data[hits] += rng.uniform(3000, 20000, hits.sum())
    data[40, 33] += 60000.0  # on an order's core, 6x its level: a hit
    hits[40, 33] = True
    data[66, 50] += 2000.0  # 25 % of a core: left to the extraction's rejection (not a hit here)
    data[86, 110] = 2e5  # saturated hit: its neighbours partially charged
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        data[86 + dy, 110 + dx] += 30000.0
        hits[86 + dy, 110 + dx] = True
    flags = np.zeros(truth.shape, np.uint16)
    flags[86, 110] = Flag.SATURATED
    flags[:, 45] |= np.uint16(Flag.BAD_PIXEL)
    var = np.maximum(data, 0) + rn**2
    return data, var, flags, hits, truth, rn


@pytest.mark.parametrize("with_var", [True, False])
def test_contrast_kernels_match_numpy_twin(with_var):
    """The two-pass kernels and the growth rounds flag exactly the twin's pixels (with the frame's
    variance and with read noise + Poisson), including next to the masked column and the edges."""
    rng = np.random.default_rng(21)
    data, var, flags, _, _, rn = _echelle_like(rng)
    mask = (flags & (Flag.SATURATED | Flag.BAD_PIXEL)) != 0
    frame = CCDData(
        data, unit="electron", uncertainty=VarianceUncertainty(var) if with_var else None, mask=mask,
        flags=flags, meta={"RDNOISE": rn},
    )  # fmt: skip
    out = flag_cosmic_rays(frame, method="contrast", grow_from=Flag.SATURATED)
    got = (out.flags & Flag.COSMIC_RAY) != 0
    seed = (flags & Flag.SATURATED) != 0
    want = _twin_contrast(data, var if with_var else None, rn, mask, seed)
    np.testing.assert_array_equal(got, want)
    assert got.sum() > 20


def test_contrast_finds_hits_and_spares_orders_and_lines():
    """Known answer on the echelle-like frame: every injected hit pixel (single, tracks along both
    axes, two pixels thick, the saturated hit's neighbours, 6x an order's core) is flagged; no pixel
    of the orders or of the narrow lines (sigma 1 px, 3x the continuum), nor a hit of 25 % of a core
    (below the contrast: the extraction's per-column rejection takes those)."""
    rng = np.random.default_rng(5)
    data, var, flags, hits, _, rn = _echelle_like(rng)
    mask = (flags & (Flag.SATURATED | Flag.BAD_PIXEL)) != 0
    frame = CCDData(
        data,
        unit="electron",
        uncertainty=VarianceUncertainty(var),
        mask=mask,
        flags=flags,
        meta={"RDNOISE": rn},
    )
    out = flag_cosmic_rays(frame, method="contrast", grow_from=Flag.SATURATED)
    cr = (out.flags & Flag.COSMIC_RAY) != 0
    np.testing.assert_array_equal(cr, hits & ~mask)
    assert not cr[mask].any() and np.array_equal(out.mask, mask | cr)
    np.testing.assert_array_equal(out.data, frame.data)  # data untouched
    assert out.meta["HIERARCH NRES P1 STEP"] == "nres.calib.flag_cosmic_rays"
    # without the growth from the saturated pixel its partially charged neighbours stay
    plain = (flag_cosmic_rays(frame, method="contrast").flags & Flag.COSMIC_RAY) != 0
    assert not (plain & ~cr).any() and not plain[87, 110:112].any() and cr[87, 110:112].all()


def test_contrast_false_positives_bounded_on_pure_noise():
    """A flat noise field (read noise 7 e-, 20 e- level): Gaussian noise crosses the 6-sigma limit
    (sigma^2 = pixel + reference variance) at ~1e-9 per pixel and direction; 200k pixels flag none."""
    rng = np.random.default_rng(3)
    data = 20.0 + rng.normal(0.0, np.sqrt(20.0 + 49.0), (400, 500))
    frame = CCDData(data, unit="electron", uncertainty=VarianceUncertainty(np.full(data.shape, 69.0)),
                    meta={"RDNOISE": 7.0})  # fmt: skip
    assert not (flag_cosmic_rays(frame, method="contrast").flags & Flag.COSMIC_RAY).any()


def test_contrast_on_simulated_frames():
    """Simulated frames (3 orders x 800 columns, no hot pixels): the same frame without cosmic rays
    (same seed, noise identical) gets no flag at all for TARGET, LAMPFLAT and DOUBLE (ThAr lines,
    saturated ones included); with them, every truth hit pixel of the DARK (unmasked) is flagged, and
    of the TARGET every hit pixel with a deposit above max(6 sigma, 3x the local level) is."""
    from nres.sim import SimConfig, simulate

    window = {"orders": (81, 83), "columns": (1500, 2300)}
    for obstype in ("TARGET", "LAMPFLAT", "DOUBLE", "DARK"):
        clean, _ = simulate(
            obstype, site="lsc", seed=7, window=window, config=SimConfig(cosmic_rate=0.0, n_hot_pixels=0)
        )
        out = flag_cosmic_rays(clean, method="contrast", grow_from=Flag.SATURATED)
        assert not (out.flags & Flag.COSMIC_RAY).any(), obstype
        if obstype in ("LAMPFLAT", "DOUBLE"):
            continue
        frame, truth = simulate(obstype, site="lsc", seed=7, window=window, config=SimConfig(n_hot_pixels=0))
        flags = np.asarray(frame.flags) & ~np.uint16(Flag.COSMIC_RAY)  # the simulator's own truth flags
        frame = CCDData(np.asarray(frame.data), unit="electron", uncertainty=frame.uncertainty, flags=flags,
                        mask=flags_to_mask(flags), meta=frame.meta)  # fmt: skip
        cr = (
            flag_cosmic_rays(frame, method="contrast", grow_from=Flag.SATURATED).flags & Flag.COSMIC_RAY
        ) != 0
        hits = truth.cosmic_rays & ~flags_to_mask(flags)
        deposit = np.asarray(frame.data) - np.asarray(clean.data)
        level = np.abs(np.asarray(clean.data))
        strong = hits & (deposit > np.maximum(6.0 * np.sqrt(level + 49.0), 3.0 * level))
        assert hits.sum() > 20 and strong.sum() > 20, obstype
        if obstype == "DARK":
            assert cr[hits].all()
        else:
            assert cr[strong].mean() >= 0.95, cr[strong].mean()
        assert not (cr & ~truth.cosmic_rays).any(), obstype  # nothing without a deposit


def test_contrast_validates():
    frame = CCDData(np.zeros((5, 5)), unit="electron", meta={"RDNOISE": 5.0})
    with pytest.raises(InvalidParameterError, match="method"):
        flag_cosmic_rays(frame, method="median")
    with pytest.raises(InvalidParameterError, match="sigclip"):
        flag_cosmic_rays(frame, method="contrast", sigclip=0.0)
    with pytest.raises(InvalidParameterError, match="read_noise"):
        flag_cosmic_rays(CCDData(np.zeros((5, 5)), unit="electron"), method="contrast")


# ----- fill_masked ------------------------------------------------------------------------------------
def test_fill_masked_known_answer():
    """Rows that are linear in x: a flagged pixel gets the median of the unmasked pixels within +-2
    columns (+-4, +-8 ... when fewer than 2), i.e. the line's value where the window is symmetric;
    variance likewise; flags, mask and the other pixels unchanged; NaN no-weight pixels filled."""
    ny, nx = 6, 40
    data = np.tile(3.0 * np.arange(nx, dtype=float), (ny, 1)) + 100.0 * np.arange(ny)[:, None]
    var = data / 10.0 + 1.0
    flags = np.zeros((ny, nx), np.uint16)
    flags[1, 10] = Flag.COSMIC_RAY
    data[1, 10] = 5e4
    flags[2, 20:23] = Flag.NO_WEIGHT  # three in a row: +-2 leaves 2 usable pixels (18 and 24... 19, 23)
    data[2, 20:23] = np.nan
    var[2, 20:23] = np.nan
    flags[3, 5:12] = Flag.COSMIC_RAY  # seven: +-2 finds none at the centre, +-4 finds 8, 9... -> 2
    flags[4, 30] = Flag.BAD_PIXEL  # masked but not selected: kept
    data[4, 30] = -7.0
    frame = CCDData(data, unit="electron", uncertainty=VarianceUncertainty(var), flags=flags, mask=flags != 0)
    out = fill_masked(frame)
    line = lambda y, x: 3.0 * x + 100.0 * y  # noqa: E731
    assert out.data[1, 10] == line(1, 10)  # median of x = 8, 9, 11, 12
    assert out.data[2, 20] == np.median([line(2, 18), line(2, 19)])  # x 18, 19 usable within +-2
    assert out.data[2, 21] == np.median([line(2, 19), line(2, 23)])
    assert out.data[3, 8] == np.median([line(3, x) for x in (4, 12)])  # +-4
    assert out.uncertainty.array[1, 10] == pytest.approx(line(1, 10) / 10.0 + 1.0)
    assert out.data[4, 30] == -7.0 and np.isfinite(out.data).all()
    np.testing.assert_array_equal(out.flags, flags)
    np.testing.assert_array_equal(out.mask, frame.mask)
    keep = flags == 0
    np.testing.assert_array_equal(out.data[keep], frame.data[keep])
    assert np.isnan(frame.data[2, 21]) and frame.data[1, 10] == 5e4  # input untouched
    with pytest.raises(InvalidParameterError, match="max_half"):
        fill_masked(frame, max_half=1)


def _twin_fill_rows(data, var, fill, usable, max_half):
    out, out_var = data.copy(), var.copy()
    ny, nx = data.shape
    for y, x in zip(*np.nonzero(fill), strict=True):
        h = 2
        while True:
            cols = [c for c in range(max(x - h, 0), min(x + h + 1, nx)) if usable[y, c]]
            if len(cols) >= 2 or h >= max_half:
                break
            h = min(2 * h, max_half)
        if cols:
            out[y, x] = np.median(data[y, cols])
            out_var[y, x] = np.median(var[y, cols])
    return out, out_var


def test_fill_and_helper_kernels_match_numpy():
    """_fill_rows against its numpy twin (random frame, 30 % of the pixels unusable so the window
    widens, some rows without any usable pixel); true_coords and _masked_min against numpy."""
    from nres.calib import _kernels

    rng = np.random.default_rng(9)
    data = rng.normal(100.0, 10.0, (20, 50))
    var = rng.uniform(1.0, 5.0, data.shape)
    fill = rng.random(data.shape) < 0.2
    usable = (rng.random(data.shape) > 0.3) & ~fill
    usable[3] = False  # a row with nothing usable: values kept
    out, out_var = data.copy(), var.copy()
    _kernels._fill_rows(data, var, True, fill, usable, 8, out, out_var)
    want, want_var = _twin_fill_rows(data, var, fill, usable, 8)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(out_var, want_var)
    a, b = rng.random(data.shape) < 0.05, rng.random(data.shape) < 0.05
    ys, xs = _kernels.true_coords(a, b)
    want_ys, want_xs = np.nonzero(a | b)
    np.testing.assert_array_equal(ys, want_ys)
    np.testing.assert_array_equal(xs, want_xs)
    assert _kernels._masked_min(var, ~usable) == var[usable].min()
    assert _kernels._masked_min(var, np.ones(var.shape, bool)) == 0.0
