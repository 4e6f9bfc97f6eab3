"""nres.calib numba kernels against slow numpy twins on random inputs with NaNs."""

import numpy as np
import pytest

from nres.calib import _kernels as K
from nres.flags import Flag


def _median_ref(v, rule):
    s = np.sort(v)
    n = s.size
    return s[n // 2] if (n % 2 or rule == K.MEDIAN_IDL) else 0.5 * (s[n // 2 - 1] + s[n // 2])


def stack_ref(cube, var, valid, sigma, method, rule):
    """Slow numpy twin of _kernels._stack (pixel by pixel)."""
    n, ny, nx = cube.shape
    out = np.full((ny, nx), np.nan)
    outvar = np.full((ny, nx), np.nan)
    ng = np.zeros((ny, nx), dtype=np.int64)
    for y in range(ny):
        for x in range(nx):
            ok = valid[:, y, x]
            v, w = cube[ok, y, x], var[ok, y, x]
            if v.size == 0:
                continue
            if method == K.METHOD_MEAN:
                keep = np.ones(v.size, bool)
            elif method == K.METHOD_MEDIAN:
                out[y, x] = _median_ref(v, rule)
                outvar[y, x] = np.pi / 2 * w.sum() / v.size**2
                ng[y, x] = v.size
                continue
            else:
                c = _median_ref(v, rule)
                scale = 1.482602218505602 * np.median(np.abs(v - c))
                keep = np.abs(v - c) <= sigma * scale
            ng[y, x] = keep.sum()
            out[y, x] = v[keep].mean()
            outvar[y, x] = w[keep].sum() / keep.sum() ** 2
    return out, outvar, ng


@pytest.mark.parametrize("n", [7, 8])
@pytest.mark.parametrize("method", [K.METHOD_CLIP, K.METHOD_MEDIAN, K.METHOD_MEAN])
@pytest.mark.parametrize("rule", [K.MEDIAN_EXACT, K.MEDIAN_IDL])
def test_stack_kernel_equals_numpy_twin(n, method, rule):
    rng = np.random.default_rng(n * 10 + method * 3 + rule)
    cube = rng.normal(100.0, 5.0, (n, 9, 11))
    cube[rng.random(cube.shape) < 0.05] += 500.0  # outliers
    cube[rng.random(cube.shape) < 0.05] = np.nan
    var = rng.uniform(1.0, 4.0, cube.shape)
    valid = np.isfinite(cube) & (rng.random(cube.shape) > 0.1)
    valid[:, 0, 0] = False  # a pixel with no valid input
    got = K._stack(cube, var, valid, 3.0, method, rule)
    ref = stack_ref(cube, var, valid, 3.0, method, rule)
    for g, r in zip(got, ref, strict=True):
        # same operations in a different summation order: 1e-12 relative covers rounding
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=0, equal_nan=True)


def test_overscan_kernels_equal_numpy_twin():
    rng = np.random.default_rng(3)
    region = rng.normal(1000.0, 7.0, (20, 33))
    region[rng.random(region.shape) < 0.05] = 5e4
    region[rng.random(region.shape) < 0.05] = np.nan

    def clipped(v):
        v = v[np.isfinite(v)]
        c = np.median(v)
        keep = np.abs(v - c) <= 3.0 * 1.482602218505602 * np.median(np.abs(v - c))
        return v[keep].mean()

    ref = np.array([clipped(r) for r in region])
    np.testing.assert_allclose(K._overscan_rows(region, 3.0), ref, rtol=1e-13)
    np.testing.assert_allclose(K._overscan_frame(region, 3.0), clipped(region.ravel()), rtol=1e-13)


def process_ref(
    raw,
    level,
    ty0,
    tx0,
    ny,
    nx,
    gain,
    pf,
    const,
    t,
    bias,
    bvar,
    dark,
    dvar,
    bpm,
    sat,
    maxlin,
    bleed_level,
    pad,
):
    """Slow numpy twin of _kernels._process (no legacy last column)."""
    r = raw[ty0 : ty0 + ny, tx0 : tx0 + nx]
    e = (r - level[ty0 : ty0 + ny, None]) * gain - bias
    v = bvar + (pf * np.maximum(e, 0) + const)
    data = e - t * dark
    v = v + t * t * dvar
    f = np.zeros((ny, nx), np.uint16)
    f[bpm] |= 1
    s = r >= sat
    f[s] |= 2
    f[~s & (r > maxlin)] |= 4
    for y, x in zip(*np.nonzero(s), strict=True):
        for step in (-1, 1):
            yy = y + step
            while 0 <= yy < ny and not s[yy, x] and r[yy, x] > bleed_level:
                f[yy, x] |= 16
                yy += step
            for _ in range(pad):
                if 0 <= yy < ny and not s[yy, x]:
                    f[yy, x] |= 16
                    yy += step
                else:
                    break
    f[~(np.isfinite(data) & np.isfinite(v))] |= 256
    return data, v, f


def test_process_kernel_equals_numpy_twin():
    rng = np.random.default_rng(5)
    raw = rng.normal(1000.0, 50.0, (30, 40))
    raw[rng.random(raw.shape) < 0.02] = np.nan
    raw[10, 7] = raw[11, 7] = 65535.0
    raw[12, 7] = raw[13, 7] = 61000.0
    raw[4, 20] = 65535.0
    level = rng.normal(990.0, 1.0, 30)
    ny, nx, ty0, tx0 = 26, 32, 2, 3
    bias, dark = rng.normal(0, 1, (ny, nx)), rng.normal(0.1, 0.01, (ny, nx))
    bvar, dvar = rng.uniform(0.1, 1, (ny, nx)), rng.uniform(1e-4, 1e-3, (ny, nx))
    bpm = rng.random((ny, nx)) < 0.05
    args = (2.5, 1.0, 49.0, 30.0)
    got = K._process(
        raw,
        level,
        ty0,
        tx0,
        ny,
        nx,
        *args,
        bias,
        bvar,
        True,
        dark,
        dvar,
        True,
        bpm,
        True,
        65535.0,
        60000.0,
        60000.0,
        2,
        False,
    )
    ref = process_ref(
        raw, level, ty0, tx0, ny, nx, *args, bias, bvar, dark, dvar, bpm, 65535.0, 60000.0, 60000.0, 2
    )
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[2], ref[2])
    # the planted trail (raw rows 12-13 of column 7 = trimmed (10-11, 4)) and 2 px of padding
    assert [bool(got[2][y, 4] & 16) for y in range(5, 15)] == [False] + [True] * 2 + [False] * 2 + [
        True
    ] * 4 + [False]


def test_kernel_flag_bits_match_registry():
    assert K._BAD_PIXEL == Flag.BAD_PIXEL
    assert K._SATURATED == Flag.SATURATED
    assert K._NONLINEAR == Flag.NONLINEAR
    assert K._BLEED == Flag.BLEED
    assert K._NONFINITE == Flag.NONFINITE


def test_warmup_runs():
    K._warmup()
