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


def _stack_kernels(cube, var, mask, sigma, method, rule, *, rows=4, scale=None):
    """Run the slab kernels (_gather then _stack_slab) over a cube (n, ny, nx), rows at a time."""
    n, ny, nx = cube.shape
    scale = np.ones(n) if scale is None else scale
    out, outvar = np.empty((ny, nx)), np.empty((ny, nx))
    ng = np.empty((ny, nx), dtype=np.int64)
    slab, vslab = np.empty((rows, nx, n)), np.empty((rows, nx, n))
    for y0 in range(0, ny, rows):
        k = min(rows, ny - y0)
        for i in range(n):
            K._gather(slab[:k], vslab[:k], i, cube[i], var[i], mask[i], True, y0, scale[i])
        K._stack_slab(slab[:k], vslab[:k], sigma, method, rule, out, outvar, ng, y0)
    return out, outvar, ng


@pytest.mark.parametrize("n", [7, 8])
@pytest.mark.parametrize("method", [K.METHOD_CLIP, K.METHOD_MEDIAN, K.METHOD_MEAN])
@pytest.mark.parametrize("rule", [K.MEDIAN_EXACT, K.MEDIAN_IDL])
def test_stack_kernel_equals_numpy_twin(n, method, rule):
    rng = np.random.default_rng(n * 10 + method * 3 + rule)
    cube = rng.normal(100.0, 5.0, (n, 9, 11))
    cube[rng.random(cube.shape) < 0.05] += 500.0  # outliers
    cube[rng.random(cube.shape) < 0.05] = np.nan
    cube[rng.random(cube.shape) < 0.02] = np.inf
    var = rng.uniform(1.0, 4.0, cube.shape)
    var[rng.random(cube.shape) < 0.02] = np.nan  # a non-finite variance excludes its input too
    mask = rng.random(cube.shape) < 0.1
    mask[:, 0, 0] = True  # a pixel with no valid input
    valid = np.isfinite(cube) & np.isfinite(var) & ~mask
    # 4-row slabs over 9 rows: the last slab is partial
    got = _stack_kernels(cube, var, mask, 3.0, method, rule)
    ref = stack_ref(cube, var, valid, 3.0, method, rule)
    for g, r in zip(got, ref, strict=True):
        # same operations in a different summation order: 1e-12 relative covers rounding
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=0, equal_nan=True)


def test_gather_kernel_equals_numpy_twin():
    rng = np.random.default_rng(5)
    data = rng.normal(0.0, 1.0, (6, 5))
    data[1, 2] = np.inf
    var = rng.uniform(1.0, 2.0, (6, 5))
    var[3, 4] = np.nan
    mask = rng.random((6, 5)) < 0.2
    slab = np.full((3, 5, 2), -1.0)
    vslab = np.full((3, 5, 2), -1.0)
    K._gather(slab, vslab, 1, data, var, mask, True, 2, 0.5)
    d = data[2:5] * 0.5
    d[~(np.isfinite(d) & np.isfinite(var[2:5])) | mask[2:5]] = np.nan
    np.testing.assert_array_equal(slab[:, :, 1], d)
    np.testing.assert_array_equal(vslab[:, :, 1], var[2:5] * 0.25)
    assert np.all(slab[:, :, 0] == -1.0)  # other inputs' column untouched
    K._gather(slab, vslab, 0, data, var, mask, False, 0, 1.0)  # has_mask False: mask ignored
    d = data[:3].copy()
    d[~(np.isfinite(d) & np.isfinite(var[:3]))] = np.nan
    np.testing.assert_array_equal(slab[:, :, 0], d)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 10, 11])
def test_mad_of_sorted_values_equals_numpy(n):
    rng = np.random.default_rng(n)
    for _ in range(50):
        v = np.sort(np.round(rng.normal(0.0, 3.0, n)))  # rounded: ties and values equal to the centre
        for c in (np.median(v), v[n // 2], v[0] - 1.0, v[-1] + 2.0):
            assert K._mad_sorted(v, n, c) == np.median(np.abs(v - c))


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
