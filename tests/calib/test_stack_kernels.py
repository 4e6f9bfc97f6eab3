"""The stack kernel (_stack_rows) and its sorting network against numpy/Python twins.

The twin does the same arithmetic in the same order (sequential sums over the inputs in input
order, the same medians), so the kernel must agree with it bit for bit: this is also what keeps
the results identical to the previous (gather + insertion-sort) implementation.
"""

import itertools
from functools import partial

import numpy as np
import pytest

from nres.calib import _kernels as K
from nres.flags import Flag


def _median(v, rule):
    s = np.sort(v)
    n = s.size
    return s[n // 2] if (n % 2 or rule == K.MEDIAN_IDL) else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _seqsum(values):
    total = 0.0
    for v in values:
        total += v
    return total


def stack_twin(cube, var, valid, scale, sigma, method, rule):
    """Slow twin of _stack_rows, pixel by pixel: (out, outvar, ngood, flags, mask)."""
    n, ny, nx = cube.shape
    out = np.full((ny, nx), np.nan)
    outvar = np.full((ny, nx), np.nan)
    ng = np.zeros((ny, nx), dtype=np.int16)
    for y in range(ny):
        for x in range(nx):
            ok = valid[:, y, x]
            v = [cube[i, y, x] * scale[i] for i in range(n) if ok[i]]
            w = [var[i, y, x] * (scale[i] * scale[i]) for i in range(n) if ok[i]]  # as the kernel squares
            if not v:
                continue
            m = len(v)
            c = _median(np.array(v), rule)
            if method == K.METHOD_MEAN:
                keep = [True] * m
            elif method == K.METHOD_MEDIAN:
                out[y, x] = c
                outvar[y, x] = 0.5 * np.pi * _seqsum(w) / (m * m)
                ng[y, x] = m
                continue
            else:
                thresh = sigma * 1.482602218505602 * np.median(np.abs(np.array(v) - c))
                keep = [abs(a - c) <= thresh for a in v]
            g = sum(keep)
            ng[y, x] = g
            if g:
                out[y, x] = _seqsum([a for a, k in zip(v, keep, strict=True) if k]) / g
                outvar[y, x] = _seqsum([b for b, k in zip(w, keep, strict=True) if k]) / (g * g)
    none = ng == 0
    return out, outvar, ng, np.where(none, np.uint16(Flag.NO_WEIGHT), np.uint16(0)), none


def _outputs(ny, nx):
    # pre-filled with garbage: every pixel must be written
    return (
        np.full((ny, nx), -7.0),
        np.full((ny, nx), -7.0),
        np.full((ny, nx), 99, np.int16),
        np.full((ny, nx), 999, np.uint16),
        np.ones((ny, nx), bool),
    )


def _call(kernel, inputs, y_in0, nrows, sigma, method, rule, chunks, outs, y_out0):
    ny = outs[0].shape[0]
    rmin, rmax = np.full(ny, -5, np.int64), np.full(ny, -5, np.int64)
    n = len(inputs[0])
    args = (inputs, y_in0, nrows, sigma, method, rule, K.sorting_network(n), chunks)
    kernel(*args, (*outs, rmin, rmax), y_out0)
    return rmin, rmax


def run_in_place(cube, var, masks, scale, sigma, method, rule, *, kernel=K._stack_rows, chunks=3):
    """One call over all rows, reading the planes in place (the in-memory path of stack)."""
    n, ny, nx = cube.shape
    no = np.zeros((1, 1), bool)
    inputs = (
        K.typed_list(list(cube)),
        K.typed_list(list(var)),
        K.typed_list([no if m is None else m for m in masks]),
        np.array([m is not None for m in masks]),
        scale,
    )
    outs = _outputs(ny, nx)
    rmin, rmax = _call(kernel, inputs, 0, ny, sigma, method, rule, chunks, outs, 0)
    return outs, rmin, rmax


def run_slabs(cube, var, masks, scale, sigma, method, rule, *, kernel=K._stack_rows_serial, rows=2):
    """Row slabs copied into (n, rows, nx) buffers, one call each (the path route of stack)."""
    n, ny, nx = cube.shape
    dbuf, vbuf, mbuf = np.empty((n, rows, nx)), np.empty((n, rows, nx)), np.empty((n, rows, nx), bool)
    no = np.zeros((1, 1), bool)
    has = np.array([m is not None for m in masks])
    inputs = (
        K.typed_list(list(dbuf)),
        K.typed_list(list(vbuf)),
        K.typed_list([mbuf[i] if has[i] else no for i in range(n)]),
        has,
        scale,
    )
    outs = _outputs(ny, nx)
    rmin, rmax = np.empty(ny, np.int64), np.empty(ny, np.int64)
    for y0 in range(0, ny, rows):
        k = min(rows, ny - y0)
        dbuf[:] = np.nan  # rows beyond k of a partial slab must not be read
        dbuf[:, :k], vbuf[:, :k] = cube[:, y0 : y0 + k], var[:, y0 : y0 + k]
        for i in np.flatnonzero(has):
            mbuf[i, :k] = masks[i][y0 : y0 + k]
        lo, hi = _call(kernel, inputs, 0, k, sigma, method, rule, 2, outs, y0)
        rmin[y0 : y0 + k], rmax[y0 : y0 + k] = lo[y0 : y0 + k], hi[y0 : y0 + k]
    return outs, rmin, rmax


def _case(n, seed, ny=5, nx=140):
    """Random inputs with outliers, NaN/inf values and variances, masks on some inputs only.

    nx = 140 > _BLOCK: two column blocks, the second partial.
    """
    rng = np.random.default_rng(seed)
    cube = rng.normal(100.0, 5.0, (n, ny, nx))
    cube[rng.random(cube.shape) < 0.05] += 500.0
    cube[rng.random(cube.shape) < 0.04] = np.nan
    cube[rng.random(cube.shape) < 0.02] = np.inf
    cube[rng.random(cube.shape) < 0.02] = -np.inf
    cube[:, 1, :20] = np.round(cube[:, 1, :20])  # ties
    var = rng.uniform(1.0, 4.0, cube.shape)
    var[rng.random(cube.shape) < 0.02] = np.nan  # a non-finite variance excludes its input too
    var[rng.random(cube.shape) < 0.01] = np.inf
    masks = [rng.random((ny, nx)) < 0.1 if i % 3 != 1 else None for i in range(n)]
    if masks[0] is not None:
        for m in masks:
            if m is not None:
                m[0, 0] = True  # with the NaNs below: a pixel with no valid input
        cube[[i for i in range(n) if masks[i] is None], 0, 0] = np.nan
    scale = rng.uniform(0.5, 2.0, n)
    valid = np.isfinite(cube) & np.isfinite(var)
    for i, m in enumerate(masks):
        if m is not None:
            valid[i] &= ~m
    return cube, var, masks, scale, valid


_METHODS = [(K.METHOD_CLIP, K.MEDIAN_EXACT), (K.METHOD_CLIP, K.MEDIAN_IDL), (K.METHOD_MEDIAN, K.MEDIAN_EXACT)]
_METHODS += [(K.METHOD_MEDIAN, K.MEDIAN_IDL), (K.METHOD_MEAN, K.MEDIAN_EXACT)]


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10, 17])
@pytest.mark.parametrize(("method", "rule"), _METHODS)
def test_stack_rows_equals_twin_bit_for_bit(n, method, rule):
    cube, var, masks, scale, valid = _case(n, seed=100 * n + 10 * method + rule)
    ref = stack_twin(cube, var, valid, scale, 3.0, method, rule)
    runs = [partial(run_in_place, kernel=K._stack_rows), partial(run_in_place, kernel=K._stack_rows_serial)]
    runs += [partial(run_slabs, kernel=K._stack_rows), partial(run_slabs, kernel=K._stack_rows_serial)]
    for run in runs:
        got, rmin, rmax = run(cube, var, masks, scale, 3.0, method, rule)
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_array_equal(g, r)
        np.testing.assert_array_equal(rmin, ref[2].min(axis=1))
        np.testing.assert_array_equal(rmax, ref[2].max(axis=1))
    if n >= 5:
        assert ref[2][0, 0] == 0 and ref[2].max() == n  # the case has empty and complete pixels
        if method == K.METHOD_CLIP:
            assert ((ref[2] < valid.sum(axis=0)) & (ref[2] > 0)).any()  # and rejections


def test_stack_rows_nan_threshold_keeps_nothing():
    cube, var, masks, scale, valid = _case(5, seed=1)
    ref = stack_twin(cube, var, valid, scale, np.nan, K.METHOD_CLIP, K.MEDIAN_EXACT)
    assert not ref[2].any()
    for kernel in (K._stack_rows, K._stack_rows_serial):
        got, _, _ = run_in_place(
            cube, var, masks, scale, np.nan, K.METHOD_CLIP, K.MEDIAN_EXACT, kernel=kernel
        )
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_stack_rows_independent_of_chunks(chunks):
    cube, var, masks, scale, _ = _case(6, seed=2, ny=7)
    ref, _, _ = run_in_place(cube, var, masks, scale, 3.0, K.METHOD_CLIP, K.MEDIAN_EXACT, chunks=7)
    got, _, _ = run_in_place(cube, var, masks, scale, 3.0, K.METHOD_CLIP, K.MEDIAN_EXACT, chunks=chunks)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("n", range(1, 15))
def test_sorting_network_sorts_every_binary_input(n):
    # 0-1 principle: a comparator network that sorts all 2^n binary inputs sorts every input
    net = K.sorting_network(n)
    assert net.dtype == np.int64 and net.shape[1] == 2
    assert np.all(net[:, 0] < net[:, 1]) and np.all(net[:, 1] < n)
    a = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int64)
    for i, j in net:
        lo, hi = np.minimum(a[:, i], a[:, j]), np.maximum(a[:, i], a[:, j])
        a[:, i], a[:, j] = lo, hi
    assert np.all(np.diff(a, axis=1) >= 0)


@pytest.mark.parametrize("n", [1, 3, 10, 16, 23, 40])
def test_sort_columns_equals_numpy_sort(n):
    rng = np.random.default_rng(n)
    w = np.round(rng.normal(0.0, 3.0, (n, K._BLOCK)))  # rounded: ties
    w[rng.random(w.shape) < 0.1] = np.inf  # invalid inputs sort last
    got = w.copy()
    K._sort_columns(got, K.sorting_network(n))
    np.testing.assert_array_equal(got, np.sort(w, axis=0))
