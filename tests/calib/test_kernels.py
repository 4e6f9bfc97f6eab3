"""nres.calib numba kernels against slow numpy twins on random inputs with NaNs (the stack's kernels:
test_stack_kernels.py)."""

import numpy as np
import pytest

from nres.calib import _kernels as K
from nres.flags import INFORMATIONAL, Flag, flags_to_mask


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
    assert K._NO_WEIGHT == Flag.NO_WEIGHT


def test_warmup_runs():
    K._warmup()
