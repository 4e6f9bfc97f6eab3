"""Numba kernels of nres.calib: the fused CCD pass, overscan levels and the clipped stack.

Kernels see only contiguous float64/int64/bool arrays and scalars, with two exceptions: the raw
frame of ``_process`` is read in its own integer dtype (:data:`RAW_DTYPES`), because a float64 copy
of a 4108 x 4160 frame costs more than half the fused pass; and ``_stack_rows`` reads the N input
planes through numba typed lists of C-contiguous 2-D arrays (one compiled signature for every N;
stacking them into a 3-D cube would copy every frame). The uint16 flags and the stack's int16
N_good are outputs. The public wrappers in ``ccd.py``, ``overscan.py`` and ``stack.py`` validate,
coerce and unpack.
Integer codes:

- median rule: 0 = mean of the two middle values for even N, 1 = the original's upper-middle value
- stack method: 0 = sigma clip, 1 = median, 2 = mean
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numba.typed import List

from .._jit import njit, njit_parallel

# flag bits (copied as literals: a kernel must not read module globals of another module;
# tests/calib/test_kernels.py checks them against nres.flags.Flag)
_BAD_PIXEL = 1
_SATURATED = 2
_NONLINEAR = 4
_BLEED = 16
_NONFINITE = 256
_NO_WEIGHT = 128

MEDIAN_EXACT = 0
MEDIAN_IDL = 1
METHOD_CLIP = 0
METHOD_MEDIAN = 1
METHOD_MEAN = 2

# 1.4826 = 1 / Phi^-1(3/4): MAD -> Gaussian sigma (astropy's mad_std uses the same constant)
_MAD_TO_SIGMA = 1.482602218505602

#: raw dtypes ``_process`` reads directly (real NRES frames are uint16, the simulator's int32);
#: the wrapper converts any other dtype to float64
RAW_DTYPES = (np.float64, np.uint16, np.int32)


@njit
def _median_sorted(a, n, rule):
    """Median of sorted a[:n] (n >= 1)."""
    h = n // 2
    if n % 2 == 1 or rule == MEDIAN_IDL:
        return a[h]
    return 0.5 * (a[h - 1] + a[h])


@njit
def _clipped_mean_sorted(values, srt, sigma):
    """Median centre, 1.4826 MAD scale, reject |x - c| > sigma * scale, mean of the rest.

    ``srt`` is ``values`` sorted as numpy sorts (-inf first; +inf, then NaN last), so the finite
    values are one run of it. Non-finite values are ignored; the kept values are summed in their
    input order. Returns (mean, n_kept); (nan, 0) if no finite value.
    """
    n = srt.size
    lo = 0
    while lo < n and srt[lo] == -np.inf:
        lo += 1
    hi = lo
    while hi < n and np.isfinite(srt[hi]):
        hi += 1
    m = hi - lo
    if m == 0:
        return np.nan, 0
    fin = srt[lo:hi]
    centre = _median_sorted(fin, m, MEDIAN_EXACT)
    # _mad_sorted equals the median of |values - centre| exactly (tested), without a second sort
    thresh = sigma * _MAD_TO_SIGMA * _mad_sorted(fin, m, centre)
    s = 0.0
    k = 0
    for i in range(values.size):
        v = values[i]
        if np.isfinite(v) and abs(v - centre) <= thresh:
            s += v
            k += 1
    return s / k, k


@njit
def _overscan_rows(region, sorted_rows, sigma):
    """Per-row clipped mean of an overscan region (ny, nbias) -> (ny,).

    ``sorted_rows = np.sort(region, axis=1)``: numpy's vectorised sort of ~60-value rows is ~5x
    faster than sorting them here, which was most of this kernel's time. Serial: 4096 rows take
    0.6 ms on one thread, and a parallel loop took 7 ms on the loaded 2-core machine (fork/join).
    """
    ny = region.shape[0]
    out = np.empty(ny)
    for y in range(ny):
        out[y] = _clipped_mean_sorted(region[y], sorted_rows[y], sigma)[0]
    return out


@njit
def _overscan_frame(region, sigma):
    """Clipped mean of a whole overscan region -> scalar."""
    values = region.ravel()
    return _clipped_mean_sorted(values, np.sort(values), sigma)[0]


# bits that make a pixel bad: everything but NONLINEAR (nres.flags.INFORMATIONAL; tested)
_MASK_BITS = 0xFFFF & ~_NONLINEAR


@njit
def _process_columns(y, x0, x1, shift, raw, ry, lev, tx0, scalars, masters, has, outputs):
    """Columns x0:x1 of trimmed row y of the fused pass (raw pixel ``raw[ry, tx0 + x - shift]``).

    Returns the number of saturated pixels. The loop has no branch that varies along the row (the
    legacy last column is a separate call with ``shift=1``), so LLVM vectorises it; a per-pixel
    column test made the whole pass 4x slower.
    """
    gain, poisson_factor, var_const, exptime, saturation, max_linear = scalars
    bias, bias_var, dark, dark_var, bpm, bias_mask, dark_mask = masters
    has_bias, has_bias_var, has_dark, has_dark_var, has_bpm, has_bias_mask, has_dark_mask = has
    data, var, flags, mask = outputs
    nsat = 0
    for x in range(x0, x1):
        r = float(raw[ry, tx0 + x - shift])
        e = (r - lev) * gain
        v = 0.0
        if has_bias:
            e -= bias[y, x]
        if has_bias_var:
            v += bias_var[y, x]
        v += poisson_factor * max(e, 0.0) + var_const
        if has_dark:
            e -= exptime * dark[y, x]
        if has_dark_var:
            v += exptime * exptime * dark_var[y, x]
        f = 0
        if has_bpm and bpm[y, x]:
            f |= _BAD_PIXEL
        if has_bias_mask and bias_mask[y, x]:
            f |= _BAD_PIXEL
        if has_dark_mask and dark_mask[y, x]:
            f |= _BAD_PIXEL
        if r >= saturation:
            f |= _SATURATED
            nsat += 1
        elif r > max_linear:
            f |= _NONLINEAR
        if not (np.isfinite(e) and np.isfinite(v)):
            f |= _NONFINITE
        data[y, x] = e
        var[y, x] = v
        flags[y, x] = f
        mask[y, x] = (f & _MASK_BITS) != 0
    return nsat


@njit_parallel
def _process(
    raw,
    level,
    ty0,
    tx0,
    gain,
    poisson_factor,
    var_const,
    exptime,
    bias,
    has_bias,
    bias_var,
    has_bias_var,
    bias_mask,
    has_bias_mask,
    dark,
    has_dark,
    dark_var,
    has_dark_var,
    dark_mask,
    has_dark_mask,
    bpm,
    has_bpm,
    saturation,
    max_linear,
    bleed_level,
    bleed_pad,
    copy_last_column,
    data,
    var,
    flags,
    mask,
):
    """The fused CCD pass over the trimmed region of ``raw`` (ADU), written into the outputs.

    ``raw`` is read in its own dtype (float64, uint16 or int32: no float copy of the frame);
    ``level`` is the overscan level per raw row (ADU); the trimmed region is ``raw[ty0:ty0+ny,
    tx0:tx0+nx]`` with (ny, nx) the shape of the outputs ``data`` (e-), ``var`` (e-^2), ``flags``
    (uint16) and ``mask`` (bool, ``flags_to_mask(flags)``), all overwritten. Masters are (ny, nx),
    or (1, 1) dummies when their ``has_*`` is False; dark in e-/s, its variance in (e-/s)^2; a
    masked master pixel or a bpm pixel is BAD_PIXEL. The read-noise/Poisson term is
    ``poisson_factor * max(signal, 0) + var_const`` (the wrapper sets both for the chosen
    formula), signal = bias-subtracted electrons before the dark. The caller allocates the
    outputs: numpy asks the kernel for huge pages on large arrays and numba's allocator does not;
    the page faults of four fresh 4096^2 outputs cost more than the arithmetic.
    """
    ny, nx = data.shape
    copy = copy_last_column and nx > 1
    nmain = nx - 1 if copy else nx
    scalars = (gain, poisson_factor, var_const, exptime, saturation, max_linear)
    masters = (bias, bias_var, dark, dark_var, bpm, bias_mask, dark_mask)
    has = (has_bias, has_bias_var, has_dark, has_dark_var, has_bpm, has_bias_mask, has_dark_mask)
    outputs = (data, var, flags, mask)
    row_sat = np.zeros(ny, dtype=np.bool_)
    for y in prange(ny):
        ry = ty0 + y
        lev = level[ry]
        nsat = _process_columns(y, 0, nmain, 0, raw, ry, lev, tx0, scalars, masters, has, outputs)
        if copy:  # legacy: the last column repeats the raw column before it
            nsat += _process_columns(y, nmain, nx, 1, raw, ry, lev, tx0, scalars, masters, has, outputs)
        row_sat[y] = nsat > 0
    _flag_bleed(raw, ty0, tx0, flags, mask, row_sat, bleed_level, bleed_pad, copy_last_column)


@njit
def _flag_bleed(raw, ty0, tx0, flags, mask, row_sat, bleed_level, bleed_pad, copy_last_column):
    """Flag BLEED (and mask) along columns from saturated pixels, in place.

    From each saturated pixel, walk up and down its column while the raw value stays above
    ``bleed_level``; those pixels and ``bleed_pad`` more beyond each end are BLEED (saturated
    pixels themselves are not). The saturated pixels are collected from the rows marked in
    ``row_sat`` (read along rows) and grouped by column, so the walks start only where there is
    saturation and a frame without it costs nothing. Serial: a simulated arc frame has a few
    hundred saturated pixels and the walks take well under a millisecond, less than one thread
    fork/join of a parallel loop on a loaded machine (measured).
    """
    ny, nx = flags.shape
    sat_rows = np.flatnonzero(row_sat)
    if sat_rows.size == 0:
        return
    start = np.zeros(nx + 1, dtype=np.int64)  # saturated pixels of column x: ys[start[x]:start[x+1]]
    for k in range(sat_rows.size):
        y = sat_rows[k]
        for x in range(nx):
            if flags[y, x] & _SATURATED:
                start[x + 1] += 1
    for x in range(nx):
        start[x + 1] += start[x]
    ys = np.empty(start[nx], dtype=np.int64)
    fill = start[:nx].copy()
    for k in range(sat_rows.size):
        y = sat_rows[k]
        for x in range(nx):
            if flags[y, x] & _SATURATED:
                ys[fill[x]] = y
                fill[x] += 1
    for x in range(nx):
        rx = tx0 + x
        if copy_last_column and x == nx - 1 and nx > 1:
            rx -= 1
        for k in range(start[x], start[x + 1]):
            y = ys[k]
            for step in (-1, 1):
                yy = y + step
                while 0 <= yy < ny and not flags[yy, x] & _SATURATED and raw[ty0 + yy, rx] > bleed_level:
                    flags[yy, x] |= _BLEED
                    mask[yy, x] = True
                    yy += step
                for _ in range(bleed_pad):
                    if 0 <= yy < ny and not flags[yy, x] & _SATURATED:
                        flags[yy, x] |= _BLEED
                        mask[yy, x] = True
                        yy += step
                    else:
                        break


@njit
def _mad_sorted(srt, n, centre):
    """Median of |srt[:n] - centre| for sorted srt, without a second sort.

    The deviations below the centre (read downwards) and above it (read upwards) are two sorted
    runs; merging them up to the middle rank gives the median in O(n).
    """
    s = 0
    while s < n and srt[s] < centre:
        s += 1
    i = s - 1
    j = s
    lo_rank = (n - 1) // 2
    hi_rank = n // 2
    lo = 0.0
    d = 0.0
    for t in range(hi_rank + 1):
        if j >= n or (i >= 0 and centre - srt[i] <= srt[j] - centre):
            d = centre - srt[i]
            i -= 1
        else:
            d = srt[j] - centre
            j += 1
        if t == lo_rank:
            lo = d
    return 0.5 * (lo + d)


# ---------------------------------------------------------------------------------------------
# The stack. One parallel region over all output rows reads the frames in place (typed lists of
# 2-D planes: no gather pass, no per-slab barrier). A row is loaded once per input into a row
# scratch laid out in column blocks (nblocks, n, B); each block is then combined column-wise:
# every step is a loop over the B columns of a block with no branch that varies per pixel, so
# LLVM vectorises it. Invalid inputs are stored as +inf, which a sort puts after every valid
# (finite) value, so the first N_good sorted values are the valid ones.

#: columns per block: a block's values, variances and sort buffer (3 x n x B float64) stay in L1
_BLOCK = 128


def sorting_network(n):
    """Comparators (i, j), i < j, that sort n values when applied in order: int64 (K, 2).

    Batcher's odd-even merge sort on the next power of two, keeping only comparators between
    the first n wires (the others would only compare with padding that sorts last). K = 32 for
    n = 10 (the optimum is 29); O(n log^2 n) in general.
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@njit
def _load_row(d, v, mk, has_mask, scale, vals, vvals, i):
    """Row ``d`` (nx,) of input ``i`` and its variance into ``vals[:, i]``/``vvals[:, i]``.

    The scratch is (nblocks, n, B); values are ``d * scale``, variances ``v * scale^2``; an input
    that is masked or whose value or variance is not finite is stored as +inf. The row is sliced
    per block (views from index 0): an offset index ``d[x0 + x]`` kept LLVM from vectorising.
    """
    nb, _, bw = vals.shape
    nx = d.size
    s2 = scale * scale
    for xb in range(nb):
        x0 = xb * bw
        b = min(bw, nx - x0)
        vi = vals[xb, i]
        vvi = vvals[xb, i]
        db = d[x0 : x0 + b]
        vb = v[x0 : x0 + b]
        if has_mask:
            mb = mk[x0 : x0 + b]
            for x in range(b):
                dd = db[x] * scale
                ve = vb[x] * s2
                ok = (abs(dd) < np.inf) & (abs(ve) < np.inf) & (not mb[x])
                vi[x] = dd if ok else np.inf
                vvi[x] = ve
        else:
            for x in range(b):
                dd = db[x] * scale
                ve = vb[x] * s2
                ok = (abs(dd) < np.inf) & (abs(ve) < np.inf)
                vi[x] = dd if ok else np.inf
                vvi[x] = ve


@njit
def _copy_count(vb, w, cnt):
    """w = vb (n, B); cnt = number of valid (finite) values per column, as float64.

    A float count: an int64 accumulator of booleans did not vectorise (4x slower).
    """
    n, bw = vb.shape
    for x in range(bw):
        cnt[x] = 0.0
    for i in range(n):
        vi = vb[i]
        wi = w[i]
        for x in range(bw):
            u = vi[x]
            wi[x] = u
            cnt[x] += 1.0 if u < np.inf else 0.0


@njit
def _sort_columns(w, net):
    """Sort every column of w (n, B) in place with the comparators ``net`` (K, 2).

    Branch-free compare-exchanges along the B columns (vectorised). Values must not be NaN.
    """
    bw = w.shape[1]
    for c in range(net.shape[0]):
        a = w[net[c, 0]]
        b = w[net[c, 1]]
        for x in range(bw):
            u = a[x]
            v = b[x]
            a[x] = u if u < v else v
            b[x] = v if u < v else u


@njit
def _median_columns(w, cnt, rule, centre):
    """Median of the first cnt[x] values of each sorted column of w; nan where cnt is 0."""
    bw = w.shape[1]
    for x in range(bw):
        m = int(cnt[x])
        h = m // 2
        if m == 0:
            centre[x] = np.nan
        elif m % 2 == 1 or rule == MEDIAN_IDL:
            centre[x] = w[h, x]
        else:
            centre[x] = 0.5 * (w[h - 1, x] + w[h, x])


@njit
def _abs_deviations(w, centre):
    """w = |w - centre| column-wise, in place (+inf stays +inf)."""
    n, bw = w.shape
    for i in range(n):
        wi = w[i]
        for x in range(bw):
            wi[x] = abs(wi[x] - centre[x])


@njit
def _thresholds(w, cnt, factor, thresh):
    """thresh = factor x median of the first cnt[x] values of each sorted column of w.

    The median is the mean of the two middle values for even counts (the MAD's own median is
    always exact, whatever the centre's rule).
    """
    bw = w.shape[1]
    for x in range(bw):
        m = int(cnt[x])
        if m == 0:
            thresh[x] = np.nan
        else:
            thresh[x] = factor * (0.5 * (w[(m - 1) // 2, x] + w[m // 2, x]))


@njit
def _kept_sums(vb, vvb, centre, thresh, s, sv, g):
    """Sums of the values, variances and count of the inputs with |x - centre| <= thresh.

    Summed in input order (adding 0.0 for the others leaves a sum unchanged), so the result is
    the same number as a loop over the kept inputs.
    """
    n, bw = vb.shape
    for x in range(bw):
        s[x] = 0.0
        sv[x] = 0.0
        g[x] = 0.0
    for i in range(n):
        vi = vb[i]
        vvi = vvb[i]
        for x in range(bw):
            u = vi[x]
            ok = (u < np.inf) & (abs(u - centre[x]) <= thresh[x])
            s[x] += u if ok else 0.0
            sv[x] += vvi[x] if ok else 0.0
            g[x] += 1.0 if ok else 0.0


@njit
def _valid_sums(vb, vvb, s, sv):
    """Sums of the valid values and of their variances per column, in input order.

    :func:`_kept_sums` with a zero centre and an infinite threshold gives the same sums, but would
    add a subtraction, abs, compare and count per value to the mean/median stacks' inner loop, and
    two more scratch rows: kept as its own loop.
    """
    n, bw = vb.shape
    for x in range(bw):
        s[x] = 0.0
        sv[x] = 0.0
    for i in range(n):
        vi = vb[i]
        vvi = vvb[i]
        for x in range(bw):
            ok = vi[x] < np.inf
            s[x] += vi[x] if ok else 0.0
            sv[x] += vvi[x] if ok else 0.0


@njit
def _write_block(method, centre, s, sv, g, out, outvar, ngood, flags, mask):
    """Write one block of output columns (row views of length b <= B); returns (min, max) of g."""
    gmin = 1 << 30
    gmax = -1
    for x in range(out.size):
        k = int(g[x])
        if k == 0:
            out[x] = np.nan
            outvar[x] = np.nan
        elif method == METHOD_MEDIAN:
            out[x] = centre[x]
            outvar[x] = 0.5 * np.pi * sv[x] / (k * k)
        else:
            out[x] = s[x] / k
            outvar[x] = sv[x] / (k * k)
        ngood[x] = k
        flags[x] = _NO_WEIGHT if k == 0 else 0
        mask[x] = k == 0
        gmin = min(gmin, k)
        gmax = max(gmax, k)
    return gmin, gmax


@njit
def _combine_block(vb, vvb, w, net, method, rule, factor, cnt, centre, thresh, s, sv, out_views):
    """Combine one block (n, B) of a row into the output views; returns (min, max) of N_good."""
    out, outvar, ngood, flags, mask = out_views
    _copy_count(vb, w, cnt)
    if method == METHOD_MEAN:
        _valid_sums(vb, vvb, s, sv)
        return _write_block(method, centre, s, sv, cnt, out, outvar, ngood, flags, mask)
    _sort_columns(w, net)
    _median_columns(w, cnt, rule, centre)
    if method == METHOD_MEDIAN:
        _valid_sums(vb, vvb, s, sv)
        return _write_block(method, centre, s, sv, cnt, out, outvar, ngood, flags, mask)
    _abs_deviations(w, centre)
    _sort_columns(w, net)
    _thresholds(w, cnt, factor, thresh)
    _kept_sums(vb, vvb, centre, thresh, s, sv, cnt)  # cnt now holds N_good
    return _write_block(method, centre, s, sv, cnt, out, outvar, ngood, flags, mask)


@njit
def _stack_chunk(inputs, y_in0, r0, r1, factor, method, rule, net, outputs, y_out0):
    """Rows r0:r1 of :func:`_stack_rows` (inputs and outputs as its tuples), with one scratch."""
    datas, variances, masks, has_mask, scale = inputs
    out, outvar, ngood, flags, mask, row_min, row_max = outputs
    n = len(datas)
    nx = out.shape[1]
    nb = (nx + _BLOCK - 1) // _BLOCK
    # padding columns of the last block stay +inf (invalid): computed, never written
    vals = np.full((nb, n, _BLOCK), np.inf)
    vvals = np.zeros((nb, n, _BLOCK))
    w = np.empty((n, _BLOCK))
    cnt = np.empty(_BLOCK)
    centre = np.empty(_BLOCK)
    thresh = np.empty(_BLOCK)
    s = np.empty(_BLOCK)
    sv = np.empty(_BLOCK)
    for r in range(r0, r1):
        yi = y_in0 + r
        yo = y_out0 + r
        for i in range(n):
            ym = yi if has_mask[i] else 0
            _load_row(datas[i][yi], variances[i][yi], masks[i][ym], has_mask[i], scale[i], vals, vvals, i)
        gmin = 1 << 30
        gmax = -1
        for xb in range(nb):
            x0 = xb * _BLOCK
            x1 = min(nx, x0 + _BLOCK)
            views = (out[yo, x0:x1], outvar[yo, x0:x1], ngood[yo, x0:x1], flags[yo, x0:x1], mask[yo, x0:x1])
            lo, hi = _combine_block(
                vals[xb], vvals[xb], w, net, method, rule, factor, cnt, centre, thresh, s, sv, views
            )
            gmin = min(gmin, lo)
            gmax = max(gmax, hi)
        row_min[yo] = gmin
        row_max[yo] = gmax


@njit_parallel
def _stack_rows(inputs, y_in0, nrows, sigma, method, rule, net, nchunks, outputs, y_out0):
    """Combine input rows y_in0:y_in0+nrows of n frames into output rows y_out0:y_out0+nrows.

    ``inputs = (datas, variances, masks, has_mask, scale)``: typed lists of n float64 planes
    (ny_in, nx) read in place, a typed list of n bool planes or (1, 1) dummies where
    ``has_mask[i]`` (n,) is False, and ``scale`` (n,) that multiplies the values (variances by
    its square). An input is left out where it is masked or its value or variance is not
    finite. Sigma clip: centre = median (``rule``), scale = 1.4826 MAD about it, reject
    |x - c| > sigma * scale (one pass), mean of the survivors, variance = sum of their
    variances / N_good^2. Median: variance = pi/2 times the variance of the mean (Gaussian
    asymptotic efficiency). Mean: all valid inputs. ``net``: ``sorting_network(n)``.
    ``outputs = (out, outvar, ngood, flags, mask, row_min, row_max)``: (ny, nx) float64 (nan
    where nothing survives), float64, int16, uint16 (NO_WEIGHT where nothing survives), bool
    (same pixels), and (ny,) int64 N_good extremes per row. Parallel over ``nchunks`` chunks of
    rows, each with its own row scratch (2 x n x nx float64).
    """
    factor = sigma * _MAD_TO_SIGMA
    per = (nrows + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        r1 = min(nrows, (ch + 1) * per)
        _stack_chunk(inputs, y_in0, ch * per, r1, factor, method, rule, net, outputs, y_out0)


@njit
def _stack_rows_serial(inputs, y_in0, nrows, sigma, method, rule, net, nchunks, outputs, y_out0):
    """:func:`_stack_rows` on the calling thread (``nchunks`` ignored): for small stacks, where
    waking the worker threads costs more than the work (milliseconds on a loaded machine)."""
    factor = sigma * _MAD_TO_SIGMA
    _stack_chunk(inputs, y_in0, 0, nrows, factor, method, rule, net, outputs, y_out0)


def typed_list(arrays):
    """A numba typed list of arrays (all of one dtype and dimension) for :func:`_stack_rows`."""
    return List(arrays)


@njit
def _usable(skip, y, x):
    ny, nx = skip.shape
    return 0 <= y < ny and 0 <= x < nx and not skip[y, x]


@njit
def _stands_out(d, m, v, k, contrast):
    """Whether d exceeds the reference level m by more than k sigma and by more than ``contrast``
    times max(m, 0); sigma^2 = 2 v (the pixel's variance and the reference's, v each)."""
    e = d - m
    return e > 0.0 and e > contrast * max(m, 0.0) and e * e > 2.0 * k * k * max(v, 0.0)


#: Contrast a pixel needs against one side alone (a hit's neighbour along a column, a pixel of the
#: frame's first or last column along its row): a steep profile's flank, or a ThAr line cut by the
#: frame's edge (11x its downhill neighbour seen on a simulated arc), stands out against its downhill
#: side; a track's pixels are hundreds to thousands of times the background.
_CONTRAST_ONE_SIDED = 30.0


@njit
def _reference(data, var, use_var, rn2, skip, y, x, dy, dx):
    """The brighter of the two neighbours of (y, x) at -+1 step of (dy, dx), its variance (the
    variance array's, or ``rn2 + max(level, 0)``) and the contrast factor's floor. A smooth feature
    (an order along x, a line's profile along y, a line at least ~2 px wide along x) is never many
    times brighter than both its direct neighbours in the direction where it is smooth; a hit is.
    Along a column both neighbours must be usable: against its downhill neighbour alone a steep
    profile wing (at a frame's edge, next to a saturated pixel) would stand out. Along a row the
    frame's first and last columns use their one side (the brighter of its pixels at 1 and 2
    steps), with contrast at least :data:`_CONTRAST_ONE_SIDED`: a track along the edge column is
    thousands of times its neighbours. (nan, nan, 0) otherwise."""
    lo = _usable(skip, y - dy, x - dx)
    hi = _usable(skip, y + dy, x + dx)
    if lo and hi:
        a = data[y - dy, x - dx]
        b = data[y + dy, x + dx]
        m = max(a, b)
        if use_var:
            v = var[y - dy, x - dx] if a >= b else var[y + dy, x + dx]
        else:
            v = rn2 + max(m, 0.0)
        return m, v, 0.0
    nx = data.shape[1]
    if dy != 0 or not ((lo and x + dx >= nx) or (hi and x - dx < 0)):
        return np.nan, np.nan, 0.0
    side = -1 if lo else 1
    yy, xx = y, x + side
    m = data[yy, xx]
    if _usable(skip, y, x + 2 * side) and data[y, x + 2 * side] > m:
        xx = x + 2 * side
        m = data[yy, xx]
    v = var[yy, xx] if use_var else rn2 + max(m, 0.0)
    return m, v, _CONTRAST_ONE_SIDED


@njit
def _candidate(data, rn2, v_floor, y, x, dy, dx, k2, contrast):
    """Whether interior pixel (y, x) may stand out (:func:`_stands_out`) from the brighter of its two
    neighbours at -+1 step of (dy, dx), both usable: above ``contrast`` x that level and above k sigma
    for the smallest variance it can have (``v_floor``; or exactly ``rn2 + max(m, 0)`` when the frame
    has no variance, ``v_floor`` < 0). ``k2`` = 2 k^2. No variance is read: this loop over every
    pixel stays branch-light (reading them made it ~10x slower)."""
    m = max(data[y - dy, x - dx], data[y + dy, x + dx])
    ex = data[y, x] - m
    floor = rn2 + max(m, 0.0) if v_floor < 0.0 else v_floor
    return ex > 0.0 and ex > contrast * max(m, 0.0) and ex * ex > k2 * floor


@njit_parallel
def _contrast_candidates(data, rn2, v_floor, bad, near_bad, k, contrast, out):
    """Pass 1 of :func:`contrast_cosmics`: True where a pixel may be a hit (:func:`_candidate` along
    the row or the column) or needs the general test (``near_bad``); False at bad pixels."""
    ny, nx = data.shape
    k2 = 2.0 * k * k
    for y in prange(ny):
        for x in range(nx):
            if bad[y, x]:
                out[y, x] = False
            elif near_bad[y, x]:
                out[y, x] = True
            else:
                row = _candidate(data, rn2, v_floor, y, x, 0, 1, k2, contrast)
                out[y, x] = row or _candidate(data, rn2, v_floor, y, x, 1, 0, k2, contrast)


@njit_parallel
def _contrast_confirm(data, var, use_var, rn2, bad, k, contrast, out):
    """Pass 2 of :func:`contrast_cosmics`: the full test (:func:`_reference`, :func:`_stands_out`) at
    the candidates (``out`` True); ``out`` stays True at the hits only. Rows in parallel; the
    candidates are a small fraction of the pixels (a list of them cost more than this scan)."""
    ny, nx = data.shape
    for y in prange(ny):
        for x in range(nx):
            if not out[y, x]:
                continue
            hit = False
            for dy, dx in ((0, 1), (1, 0)):
                m, v, floor = _reference(data, var, use_var, rn2, bad, y, x, dy, dx)
                if m == m and _stands_out(data[y, x], m, v, k, max(contrast, floor)):
                    hit = True
                    break
            out[y, x] = hit


@njit
def _masked_min(values, bad):
    """Smallest of ``values`` where not ``bad`` (0 if none): the variance floor of the candidates."""
    best = np.inf
    ny, nx = values.shape
    for y in range(ny):
        for x in range(nx):
            if not bad[y, x] and values[y, x] < best:
                best = values[y, x]
    return best if best < np.inf else 0.0


def contrast_cosmics(data, var, use_var, rn2, bad, k, contrast, out):
    """Cosmic-ray hits of a frame by their contrast with their direct neighbours.

    A pixel is a hit when it exceeds the brighter of its two neighbours along the row, or the
    brighter of its two along the column, by more than ``k`` sigma and by more than ``contrast``
    times that neighbour (:func:`_reference`, :func:`_stands_out`). Two passes: a branch-light
    parallel one over every pixel keeps the candidates (a necessary condition without reading the
    variances), a general one confirms them and tests the pixels next to bad ones and the edges.

    Parameters
    ----------
    data : float64 (ny, nx)
        Electrons.
    var : float64 (ny, nx) or (1, 1)
        Variance (e-^2) when ``use_var``; else the noise is ``rn2 + max(level, 0)``.
    use_var : bool
    rn2 : float
        Read noise squared (e-^2).
    bad : bool (ny, nx)
        Pixels never flagged nor used as neighbours (masked, non-finite).
    k, contrast : float
    out : bool (ny, nx)
        Written: the hits.
    """
    v_floor = max(_masked_min(var, bad), 0.0) if use_var else -1.0
    _contrast_candidates(data, rn2, v_floor, bad, near_edges(bad, 1), k, contrast, out)
    _contrast_confirm(data, var, use_var, rn2, bad, k, contrast, out)


@njit
def _grow_reference(data, var, use_var, rn2, skip, y, x, dy, dx):
    """Reference level of a neighbour of a hit along (dy, dx) and its variance, and whether it is one-
    sided. With both direct neighbours usable: along a row, of the usable pixels at -+1, -+2 steps
    the second brightest when there are three or four (one more hit among them -- a track two pixels
    thick -- does not hide the pixel), else the brighter; along a column the brighter direct
    neighbour (:func:`_reference`). With one direct neighbour usable (the other a hit or saturated):
    the brighter of that side's -+1, -+2 pixels. (nan, nan, False) with none."""
    lo = _usable(skip, y - dy, x - dx)
    hi = _usable(skip, y + dy, x + dx)
    if not (lo or hi):
        return np.nan, np.nan, False
    one_sided = not (lo and hi)
    first = -np.inf
    second = -np.inf
    v_first = 0.0
    v_second = 0.0
    n = 0
    for step in (-2, -1, 1, 2):
        if one_sided and (step < 0) != lo:
            continue  # only the usable side
        yy = y + step * dy
        xx = x + step * dx
        if _usable(skip, yy, xx):
            n += 1
            val = data[yy, xx]
            vv = var[yy, xx] if use_var else 0.0
            if val > first:
                second, v_second = first, v_first
                first, v_first = val, vv
            elif val > second:
                second, v_second = val, vv
    # along a column only the brighter: a pixel on an order's flank whose uphill pixel is a hit would
    # otherwise be compared with the second brightest, its downhill neighbour
    m, v = (second, v_second) if n >= 3 and dx == 1 and not one_sided else (first, v_first)
    if dy == 1 and not one_sided:
        m, v, _ = _reference(data, var, use_var, rn2, skip, y, x, dy, dx)
    if not use_var:
        v = rn2 + max(m, 0.0)
    return m, v, one_sided


@njit
def true_coords(a, b):
    """(ys, xs) int64 of the pixels where ``a`` or ``b`` is True, in row order (a serial scan: half
    the time of numpy's nonzero of their OR, without the OR)."""
    ny, nx = a.shape
    n = 0
    for y in range(ny):
        for x in range(nx):
            if a[y, x] or b[y, x]:
                n += 1
    ys = np.empty(n, dtype=np.int64)
    xs = np.empty(n, dtype=np.int64)
    i = 0
    for y in range(ny):
        for x in range(nx):
            if a[y, x] or b[y, x]:
                ys[i] = y
                xs[i] = x
                i += 1
    return ys, xs


@njit
def _grow_cosmics(data, var, use_var, rn2, skip, ys, xs, k_grow, contrast_grow, out):
    """One round of growth: the non-``skip`` 8-neighbours of the pixels (ys, xs) (hits and seeds, all
    in ``skip``) become hits in ``out`` when they stand out (``k_grow``, ``contrast_grow``; against
    one side of a column, :data:`_CONTRAST_ONE_SIDED`) from their reference level
    (:func:`_grow_reference`) along the row or the column. Serial: the hits are few. Returns the new
    hits' (ys, xs)."""
    ny, nx = data.shape
    new_y = np.empty(8 * ys.size, dtype=np.int64)
    new_x = np.empty(8 * ys.size, dtype=np.int64)
    n_new = 0
    for i in range(ys.size):
        for y in range(max(ys[i] - 1, 0), min(ys[i] + 2, ny)):
            for x in range(max(xs[i] - 1, 0), min(xs[i] + 2, nx)):
                if skip[y, x] or out[y, x]:
                    continue
                for dy, dx in ((0, 1), (1, 0)):
                    m, v, one_sided = _grow_reference(data, var, use_var, rn2, skip, y, x, dy, dx)
                    c = max(contrast_grow, _CONTRAST_ONE_SIDED) if one_sided and dy == 1 else contrast_grow
                    if m == m and _stands_out(data[y, x], m, v, k_grow, c):
                        out[y, x] = True
                        new_y[n_new] = y
                        new_x[n_new] = x
                        n_new += 1
                        break
    return new_y[:n_new].copy(), new_x[:n_new].copy()


@njit_parallel
def _fill_rows(data, var, use_var, fill, usable, max_half, out, out_var):
    """Replace the ``fill`` pixels of every row by the median of the ``usable`` pixels of the same row
    within +-h columns (h = 2, 4, 8, ... up to ``max_half``, the first with at least 2 such pixels;
    the variance likewise); a pixel with none keeps its value. ``out``/``out_var`` start as copies."""
    ny, nx = data.shape
    for y in prange(ny):
        vals = np.empty(4 * max_half + 2)
        vvals = np.empty(4 * max_half + 2)
        for x in range(nx):
            if not fill[y, x]:
                continue
            h = 2
            while True:
                n = 0
                for xx in range(max(x - h, 0), min(x + h + 1, nx)):
                    if usable[y, xx]:
                        vals[n] = data[y, xx]
                        if use_var:
                            vvals[n] = var[y, xx]
                        n += 1
                if n >= 2 or h >= max_half:
                    break
                h = min(2 * h, max_half)
            if n >= 1:
                out[y, x] = np.median(vals[:n])
                if use_var:
                    out_var[y, x] = np.median(vvals[:n])


def near_edges(bad, reach):
    """Pixels with a ``bad`` pixel or the frame's edge within ``reach`` along their row or column
    (numpy): the pixels :func:`contrast_cosmics` tests in its general pass only."""
    near = bad.copy()
    for r in range(1, reach + 1):
        near[:, r:] |= bad[:, :-r]
        near[:, :-r] |= bad[:, r:]
        near[r:] |= bad[:-r]
        near[:-r] |= bad[r:]
    near[:reach] = True
    near[-reach:] = True
    near[:, :reach] = True
    near[:, -reach:] = True
    return near


def _warmup():
    """Compile every kernel of nres.calib on tiny inputs."""
    rng = np.random.default_rng(0)
    raw = rng.normal(100.0, 5.0, (6, 8))
    raw[2, 3] = 1e6
    level = _overscan_rows(np.ascontiguousarray(raw[:, 6:]), np.sort(raw[:, 6:], axis=1), 3.0)
    _overscan_frame(np.ascontiguousarray(raw[:, 6:]), 3.0)
    one = np.zeros((1, 1))
    no = np.zeros((1, 1), dtype=np.bool_)
    for dtype in RAW_DTYPES:
        out = (np.empty((6, 6)), np.empty((6, 6)), np.empty((6, 6), np.uint16), np.empty((6, 6), np.bool_))
        masters = (one, False, one, False, no, False) * 2 + (no, False)
        _process(raw.astype(dtype), level, 0, 0, 1.0, 1.0, 25.0, 1.0, *masters, 1e5, 9e4, 9e4, 1, False, *out)
    frames = [rng.normal(0.0, 1.0, (2, 3)) for _ in range(3)]
    inputs = (
        typed_list(frames),
        typed_list([np.ones((2, 3))] * 3),
        typed_list([no] * 3),
        np.zeros(3, dtype=np.bool_),
        np.ones(3),
    )
    for kernel in (_stack_rows, _stack_rows_serial):
        outs = (np.empty((2, 3)), np.empty((2, 3)), np.empty((2, 3), np.int16))
        outs += (np.empty((2, 3), np.uint16), np.empty((2, 3), np.bool_))
        outs += (np.empty(2, np.int64), np.empty(2, np.int64))
        kernel(inputs, 0, 2, 3.0, METHOD_CLIP, MEDIAN_EXACT, sorting_network(3), 2, outs, 0)
    img = rng.normal(0.0, 3.0, (7, 9))
    img[3, 4] = 500.0
    for use_var in (True, False):
        no_pix = np.zeros((7, 9), np.bool_)
        hits = no_pix.copy()
        contrast_cosmics(img, np.full((7, 9), 9.0), use_var, 9.0, no_pix, 6.0, 3.0, hits)
        ys, xs = true_coords(hits, no_pix)
        _masked_min(img, no_pix)
        _grow_cosmics(img, np.full((7, 9), 9.0), use_var, 9.0, hits.copy(), ys, xs, 3.0, 0.5, hits)
        hit = img > 100.0
        _fill_rows(img, np.full((7, 9), 9.0), use_var, hit, ~hit, 8, img.copy(), np.full((7, 9), 9.0))
