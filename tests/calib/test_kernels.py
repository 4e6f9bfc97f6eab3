"""nres.calib numba kernels against slow numpy twins on random inputs with NaNs."""

import numpy as np
import pytest

from nres.calib import _kernels as K
from nres.flags import INFORMATIONAL, Flag, flags_to_mask


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
    region[rng.random(region.shape) < 0.03] = np.inf  # +-inf sort outside the finite run
    region[rng.random(region.shape) < 0.03] = -np.inf
    region[7] = np.round(region[7])  # ties
    region[9] = np.nan  # a row with no finite value -> nan

    def clipped(v):
        v = v[np.isfinite(v)]
        if v.size == 0:
            return np.nan
        c = np.median(v)
        keep = np.abs(v - c) <= 3.0 * 1.482602218505602 * np.median(np.abs(v - c))
        return v[keep].mean()

    ref = np.array([clipped(r) for r in region])
    # numpy's mean sums pairwise, the kernel in order: 1e-13 relative covers the rounding
    np.testing.assert_allclose(K._overscan_rows(region, np.sort(region, axis=1), 3.0), ref, rtol=1e-13)
    np.testing.assert_allclose(K._overscan_frame(region, 3.0), clipped(region.ravel()), rtol=1e-13)


def process_ref(
    raw, level, ty0, tx0, ny, nx, gain, pf, const, t, masters, sat, maxlin, bleed_level, pad, copy
):
    """Slow numpy twin of _kernels._process: (data, variance, flags, mask).

    ``masters`` = (bias, bias_var, bias_mask, dark, dark_var, dark_mask, bpm), None = not given.
    """
    bias, bvar, bmask, dark, dvar, dmask, bpm = masters
    r = raw[ty0 : ty0 + ny, tx0 : tx0 + nx].astype(np.float64)
    if copy:
        r[:, -1] = r[:, -2]
    e = (r - level[ty0 : ty0 + ny, None]) * gain
    if bias is not None:
        e = e - bias
    v = np.zeros((ny, nx)) if bvar is None else bvar
    v = v + (pf * np.maximum(e, 0) + const)
    data = e if dark is None else e - t * dark
    v = v if dvar is None else v + t * t * dvar
    f = np.zeros((ny, nx), np.uint16)
    for m in (bmask, dmask, bpm):
        if m is not None:
            f[m] |= 1
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
    return data, v, f, flags_to_mask(f)


def run_process(
    raw, level, ty0, tx0, ny, nx, gain, pf, const, t, masters, sat, maxlin, bleed_level, pad, copy
):
    """Call the kernel like process_ccd does (dummies for absent masters, outputs pre-filled with
    garbage to show that every pixel is written)."""
    one, no = np.zeros((1, 1)), np.zeros((1, 1), bool)
    given = []
    for arr, dummy in zip(masters, (one, one, no) * 2 + (no,), strict=True):
        given += [dummy if arr is None else arr, arr is not None]
    out = (np.full((ny, nx), -7.0), np.full((ny, nx), -7.0), np.full((ny, nx), 999, np.uint16))
    out += (np.ones((ny, nx), bool),)
    K._process(raw, level, ty0, tx0, gain, pf, const, t, *given, sat, maxlin, bleed_level, pad, copy, *out)
    return out


def _process_case(seed, *, dtype=np.float64, nan=True):
    rng = np.random.default_rng(seed)
    raw = np.round(rng.normal(1000.0, 50.0, (30, 40)))
    if nan:
        raw[rng.random(raw.shape) < 0.02] = np.nan
    raw[10, 7] = raw[11, 7] = 65535.0
    raw[12, 7] = raw[13, 7] = 61000.0
    raw[4, 20] = 65535.0
    # saturated pixels in many columns (the bleed pass is parallel over columns), one at the edge
    cols = rng.choice(np.setdiff1d(np.arange(3, 33), [7]), 12, replace=False)  # not the planted ones
    rows = rng.integers(2, 28, 12)
    raw[rows, cols] = 65535.0
    raw[rows - 1, cols] = 60500.0
    raw[5:9, 34] = 65535.0  # last trimmed column (legacy copy reads raw column 33 there)
    raw[5:9, 33] = 62000.0
    level = rng.normal(990.0, 1.0, 30)
    ny, nx, ty0, tx0 = 26, 32, 2, 3
    bias, dark = rng.normal(0, 1, (ny, nx)), rng.normal(0.1, 0.01, (ny, nx))
    bvar, dvar = rng.uniform(0.1, 1, (ny, nx)), rng.uniform(1e-4, 1e-3, (ny, nx))
    bmask, dmask, bpm = (rng.random((ny, nx)) < 0.05 for _ in range(3))
    masters = (bias, bvar, bmask, dark, dvar, dmask, bpm)
    return raw.astype(dtype), level, ty0, tx0, ny, nx, masters


_ARGS = (2.5, 1.0, 49.0, 30.0)
_LEVELS = (65535.0, 60000.0, 60000.0, 2)


# which of (bias, bias_var, bias_mask, dark, dark_var, dark_mask, bpm) are given
_PRESENT = [(1, 1, 1, 1, 1, 1, 1), (0,) * 7, (1, 0, 0, 1, 0, 0, 0), (0, 0, 1, 0, 0, 1, 1)]


@pytest.mark.parametrize("copy", [False, True])
@pytest.mark.parametrize("present", _PRESENT)
def test_process_kernel_equals_numpy_twin(copy, present):
    raw, level, ty0, tx0, ny, nx, masters = _process_case(5)
    masters = tuple(m if keep else None for m, keep in zip(masters, present, strict=True))
    args = (raw, level, ty0, tx0, ny, nx, *_ARGS, masters, *_LEVELS, copy)
    got = run_process(*args)
    ref = process_ref(*args)
    for g, r in zip(got, ref, strict=True):  # same operations in the same order: bit-identical
        np.testing.assert_array_equal(g, r)
    assert np.count_nonzero(got[2] & 16) > 20  # the case really has bleed trails in many columns
    if not copy:
        # the planted trail (raw rows 12-13 of column 7 = trimmed (10-11, 4)) and 2 px of padding
        trail = [bool(got[2][y, 4] & 16) for y in range(5, 15)]
        assert trail == [False] + [True] * 2 + [False] * 2 + [True] * 4 + [False]


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_process_kernel_reads_integer_raw_like_float(dtype):
    raw, level, ty0, tx0, ny, nx, masters = _process_case(6, nan=False)
    common = (level, ty0, tx0, ny, nx, *_ARGS, masters, *_LEVELS, False)
    as_int = run_process(raw.astype(dtype), *common)
    as_float = run_process(raw, *common)
    for a, b in zip(as_int, as_float, strict=True):
        np.testing.assert_array_equal(a, b)


def test_kernel_mask_bits_are_flags_to_mask():
    assert K._MASK_BITS == 0xFFFF & ~int(INFORMATIONAL)


def test_kernel_flag_bits_match_registry():
    assert K._BAD_PIXEL == Flag.BAD_PIXEL
    assert K._SATURATED == Flag.SATURATED
    assert K._NONLINEAR == Flag.NONLINEAR
    assert K._BLEED == Flag.BLEED
    assert K._NONFINITE == Flag.NONFINITE


def test_warmup_runs():
    K._warmup()
