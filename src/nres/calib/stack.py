"""Stacking of calibration frames into masters (sigma-clipped mean, median or mean).

The rule (``method="sigma_clip"``), exactly, per pixel: inputs that are masked or not finite are
left out; one pass: centre = median (mean of the two middle values for even N; the original's
upper-middle value only with ``median_rule="idl"``), scale = 1.4826 x MAD about that centre,
reject ``|x - centre| > sigma x scale``, mean of the survivors; variance = sum of the survivors'
variances / N_good^2; the pixel is masked (flag NO_WEIGHT) where no input survives.

Darks are normalised by their exposure times (the master is in e-/s). All checks (counts, shapes,
cameras, binning, fiber states, uncertainties, exposure times) run before any pixel is read.
Given paths, frames are read in row slabs (``section`` of uncompressed or tile-compressed FITS),
so memory stays bounded by ``max_slab_bytes`` whatever the number of frames.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData, VarianceUncertainty

from .. import legacy as _legacy
from ..errors import InvalidInputFileError, InvalidParameterError
from ..flags import FLAG_DTYPE
from ..provenance import record_provenance
from . import _kernels

__all__ = ["stack", "MIN_FRAMES", "STACK_METHODS"]

_STACK = "nres.calib.stack"
STACK_METHODS = {
    "sigma_clip": _kernels.METHOD_CLIP,
    "median": _kernels.METHOD_MEDIAN,
    "mean": _kernels.METHOD_MEAN,
}
#: minimum number of frames per OBSTYPE (BANZAI's values); others need 1
MIN_FRAMES = {"BIAS": 5, "DARK": 3, "LAMPFLAT": 5, "FLAT": 5, "DOUBLE": 1, "ARC": 1}
#: stacks of at most this many input values run on the calling thread: waking numba's worker
#: threads costs ~0.05 ms on an idle machine but several ms on a loaded one (measured 8 ms at
#: load 1.7 on 2 cores), more than the ~2 ns per value of the kernel
_SERIAL_MAX_VALUES = 1 << 22
#: header keywords that must agree between the inputs (camera, binning, fiber state, type)
_MATCH = ("INSTRUME", "CCDSUM", "OBJECTS", "OBSTYPE")

_legacy.register(
    _STACK,
    "median_rule",
    choices=("exact", "idl"),
    default="exact",
    legacy="idl",
    reference="idl-calib-trace-extract.md 12, 16.20",
    summary="avg_biasdark: even-N median is the upper-middle value, not the mean of the two",
)


class _Source:
    """One input: header, shape, and row-slab readers (in memory or from a file)."""

    def __init__(self, item, index):
        self.index = index
        if isinstance(item, str | Path):
            self.name = str(item)
            self._open_file(Path(item))
        elif isinstance(item, NDData):
            self.name = f"frames[{index}]"
            self.hdul = None
            self.header = item.meta if item.meta is not None else {}
            # float64, C-contiguous once (no copy if already so): the kernels read rows in place
            self.data = np.ascontiguousarray(item.data, dtype=np.float64)
            self.shape = self.data.shape
            unc = item.uncertainty
            if unc is None:
                self.var = None
            else:
                if not isinstance(unc, VarianceUncertainty):
                    unc = unc.represent_as(VarianceUncertainty)
                self.var = np.ascontiguousarray(unc.array, dtype=np.float64)
                if self.var.shape != self.shape:
                    msg = f"frames[{index}]: variance shape {self.var.shape} != data shape {self.shape}"
                    raise InvalidParameterError(msg)
            self.mask = None if item.mask is None else np.ascontiguousarray(item.mask, dtype=np.bool_)
            self.flags = getattr(item, "flags", None)
            for what, arr in (("mask", self.mask), ("flags", self.flags)):
                if arr is not None and np.shape(arr) != self.shape:
                    msg = f"frames[{index}]: {what} shape {np.shape(arr)} != data shape {self.shape}"
                    raise InvalidParameterError(msg)
            self.unit = item.unit if hasattr(item, "unit") else None
        else:
            msg = f"frames_or_paths[{index}]: expected a CCDData or a path, got {type(item).__name__}"
            raise InvalidParameterError(msg)

    def _open_file(self, path):
        if not path.exists():
            raise InvalidInputFileError(path, "file not found")
        try:
            hdul = fits.open(path, memmap=False, lazy_load_hdus=True)
            hdus = list(hdul)
        except OSError as err:
            raise InvalidInputFileError(path, f"not a readable FITS file ({err})") from None
        image = [h for h in hdus if h.is_image and h.header.get("NAXIS", 0) == 2]
        if not image:
            raise InvalidInputFileError(path, "no 2-D image HDU")
        self.hdul = hdul
        self._data_hdu = image[0]
        self.header = hdus[0].header.copy()
        if image[0] is not hdus[0]:  # compressed or extension image: add its own keywords
            for key, value in image[0].header.items():
                if key not in self.header and key not in ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME"):
                    self.header[key] = value
        self.shape = tuple(self._data_hdu.shape)
        names = {h.name.upper(): h for h in hdus}
        self._var_hdu = names.get("UNCERT")
        self._var_is_std = False
        if self._var_hdu is not None:
            utype = str(self._var_hdu.header.get("UTYPE", "VarianceUncertainty"))
            if "StdDev" in utype:
                self._var_is_std = True
            elif "Inverse" in utype:
                raise InvalidInputFileError(path, f"UNCERT extension of type {utype} is not supported")
        self._mask_hdu = names.get("MASK")
        self.var = None if self._var_hdu is None else True
        self.mask = None if self._mask_hdu is None else True
        self.flags = None
        self.unit = self.header.get("BUNIT")

    def read_rows(self, y0, y1, data, var, mask):
        """Read rows y0:y1 of a file into the (y1 - y0, nx) buffers (float64, float64, bool).

        ``mask`` is None when the file has no MASK extension. Values are converted to float64
        before the standard deviation is squared (as a float64 variance would be).
        """
        np.copyto(data, self._data_hdu.section[y0:y1], casting="unsafe")
        np.copyto(var, self._var_hdu.section[y0:y1], casting="unsafe")
        if self._var_is_std:
            np.multiply(var, var, out=var)
        if mask is not None:
            np.not_equal(self._mask_hdu.section[y0:y1], 0, out=mask)

    def close(self):
        if self.hdul is not None:
            self.hdul.close()


def _check(sources, obstype, min_frames, method):
    """Every validation, before any pixel is read."""
    if not sources:
        raise InvalidParameterError("frames_or_paths: expected at least one frame, got none")
    first = sources[0]
    for s in sources:
        if s.shape != first.shape or len(s.shape) != 2:
            msg = f"{s.name}: shape {s.shape} differs from {first.name}'s {first.shape}"
            raise InvalidParameterError(msg)
        for key in _MATCH:
            a, b = first.header.get(key), s.header.get(key)
            if a is not None and b is not None and str(a).strip().upper() != str(b).strip().upper():
                msg = f"{s.name}: {key} = {b!r} differs from {first.name}'s {a!r}; stack like frames only"
                raise InvalidParameterError(msg)
        if s.var is None:
            msg = (
                f"{s.name}: no variance (uncertainty / UNCERT extension); stack propagates variances, "
                "so process frames with nres.calib.process_ccd first"
            )
            raise InvalidParameterError(msg)
    if len(sources) > np.iinfo(np.int16).max:
        msg = f"frames_or_paths: {len(sources)} frames given, at most 32767 (N_good is int16)"
        raise InvalidParameterError(msg)
    if obstype is None:
        obstype = first.header.get("OBSTYPE")
    obstype = None if obstype is None else str(obstype).strip().upper()
    need = MIN_FRAMES.get(obstype, 1) if min_frames is None else int(min_frames)
    if len(sources) < need:
        msg = f"frames_or_paths: {len(sources)} {obstype or 'frames'} given, at least {need} needed"
        raise InvalidParameterError(msg)
    scale = np.ones(len(sources))
    if obstype == "DARK":
        for i, s in enumerate(sources):
            t = s.header.get("EXPTIME")
            if t is None or not float(t) > 0:
                msg = f"{s.name}: a dark needs EXPTIME > 0 to be normalised to e-/s, got {t!r}"
                raise InvalidParameterError(msg)
            scale[i] = 1.0 / float(t)
    if method not in STACK_METHODS:
        msg = f"method: expected one of {sorted(STACK_METHODS)}, got {method!r}"
        raise InvalidParameterError(msg)
    return obstype, scale


def stack(
    frames_or_paths,
    *,
    method: str = "sigma_clip",
    sigma: float = 3.0,
    obstype: str | None = None,
    min_frames: int | None = None,
    median_rule: str | None = None,
    legacy: bool = False,
    return_ngood: bool = False,
    max_slab_bytes: int = 4_000_000,
):
    """Combine calibration frames into a master.

    Parameters
    ----------
    frames_or_paths : sequence of CCDData or of paths
        Processed frames (electrons) with variance; or FITS files written from such frames
        (primary or first image HDU = data, ``UNCERT`` = variance or standard deviation,
        optional ``MASK``), plain or tile-compressed. All must share shape, INSTRUME (camera),
        CCDSUM (binning), OBJECTS (fiber state) and OBSTYPE.
    method : {"sigma_clip", "median", "mean"}
        Combination (see the module docstring). ``"median"``: variance = pi/2 x (sum of
        variances / N^2). ``"mean"``: plain mean of the valid inputs.
    sigma : float
        Rejection threshold in robust standard deviations (``"sigma_clip"``).
    obstype : str, optional
        Frame type; default the inputs' OBSTYPE. DARK frames are divided by EXPTIME (master in
        e-/s, EXPTIME = 1 in its header).
    min_frames : int, optional
        Minimum number of inputs; default :data:`MIN_FRAMES` (BIAS 5, DARK 3, LAMPFLAT 5,
        DOUBLE/ARC 1, other 1).
    median_rule : {"exact", "idl"}, optional
        Median of an even count: mean of the two middle values (default) or the original's
        upper-middle value (legacy).
    legacy : bool
        Turn on every legacy option not given explicitly.
    return_ngood : bool
        Also return the N_good plane.
    max_slab_bytes : int
        Size of the row-slab buffers (bytes: N x rows x nx x 16, or 17 with masks) when
        reading paths; bounds memory whatever the number of frames. Unused in memory.

    Returns
    -------
    CCDData or (CCDData, ndarray)
        The master (float64, with ``VarianceUncertainty``, ``flags`` NO_WEIGHT where no input
        survived, OR-ed with the inputs' flags there, and ``mask``); header = the first input's
        with NCOMBINE, NGOODMIN, NGOODMAX and provenance. With ``return_ngood``, also the int16
        N_good plane (ny, nx): write it as an ``ImageHDU(name="NGOOD")`` beside the master.

    Raises
    ------
    InvalidParameterError
        Too few frames, mismatched shapes/cameras/binning/fiber states/types, missing variance,
        a dark without EXPTIME, or an unknown method/option. Raised before any pixel is read.
    InvalidInputFileError
        A path is missing or not a FITS image.
    """
    rule = _legacy.resolve(_STACK, legacy, median_rule=median_rule)["median_rule"]
    items = list(frames_or_paths) if not isinstance(frames_or_paths, str | Path) else [frames_or_paths]
    kinds = {isinstance(item, str | Path) for item in items}
    if len(kinds) > 1:
        raise InvalidParameterError("frames_or_paths: give either all CCDData or all paths, not a mix")
    sources = []
    try:
        for i, item in enumerate(items):
            sources.append(_Source(item, i))
        obstype, scale = _check(sources, obstype, min_frames, method)
        data, var, ngood, flags, mask, ngood_min, ngood_max = _combine(
            sources,
            scale,
            float(sigma),
            STACK_METHODS[method],
            _kernels.MEDIAN_IDL if rule == "idl" else _kernels.MEDIAN_EXACT,
            int(max_slab_bytes),
        )
    finally:
        for s in sources:
            s.close()
    if ngood_min == 0 and any(s.flags is not None for s in sources):
        # rare: OR the inputs' reasons into the pixels where no input survived (already masked)
        none = ngood == 0
        for s in sources:
            if s.flags is not None:
                flags[none] |= np.asarray(s.flags, dtype=FLAG_DTYPE)[none]
    meta = sources[0].header.copy()
    meta["NCOMBINE"] = len(sources)
    meta["NGOODMIN"] = ngood_min
    meta["NGOODMAX"] = ngood_max
    unit = sources[0].unit
    if obstype == "DARK":
        meta["EXPTIME"] = 1.0
        meta["BUNIT"] = "electron / s"
        unit = u.electron / u.s
    record_provenance(
        meta,
        _STACK,
        method=method,
        sigma=float(sigma),
        median_rule=rule,
        nframes=len(sources),
        obstype=obstype,
    )
    out = CCDData(
        data,
        unit=unit if unit is not None else u.electron,
        uncertainty=VarianceUncertainty(var, copy=False),  # fresh array: no 128 MB copy
        mask=mask,  # = flags_to_mask(flags): only NO_WEIGHT pixels are flagged (tested)
        flags=flags,
        meta=meta,
    )
    if return_ngood:
        return out, ngood
    return out


def _kernel(values):
    """The parallel stack kernel, or its serial twin when the work is too small to share."""
    return _kernels._stack_rows if values > _SERIAL_MAX_VALUES else _kernels._stack_rows_serial


def _combine(sources, scale, sigma, method, rule, max_slab_bytes):
    """Run the stack kernel; returns (data, var, ngood int16, flags, mask, N_good min, max).

    In memory: one pass over every row, reading the frames in place. From files: the inputs are
    read in row slabs into (n, rows, nx) buffers (at most ``max_slab_bytes``) and the same
    kernel combines each slab.
    """
    n = len(sources)
    ny, nx = sources[0].shape
    # outputs allocated here, not in the kernel: numpy gets huge pages for large arrays
    outputs = (
        np.empty((ny, nx)),
        np.empty((ny, nx)),
        np.empty((ny, nx), dtype=np.int16),
        np.empty((ny, nx), dtype=FLAG_DTYPE),
        np.empty((ny, nx), dtype=np.bool_),
        np.empty(ny, dtype=np.int64),
        np.empty(ny, dtype=np.int64),
    )
    net = _kernels.sorting_network(n)
    scale = np.ascontiguousarray(scale, dtype=np.float64)
    threads = numba.get_num_threads()
    no_mask = np.zeros((1, 1), dtype=np.bool_)
    has_mask = np.array([s.mask is not None for s in sources])
    if sources[0].hdul is None:
        inputs = (
            _kernels.typed_list([s.data for s in sources]),
            _kernels.typed_list([s.var for s in sources]),
            _kernels.typed_list([no_mask if s.mask is None else s.mask for s in sources]),
            has_mask,
            scale,
        )
        # a few chunks per thread (each allocates its row scratch once)
        chunks = max(1, min(ny, 4 * threads))
        _kernel(n * ny * nx)(inputs, 0, ny, sigma, method, rule, net, chunks, outputs, 0)
    else:
        any_mask = bool(has_mask.any())
        # bytes per row of the buffers: data + variance (float64) and the mask (bool) if any
        rows = max(1, min(ny, max_slab_bytes // (n * nx * (17 if any_mask else 16))))
        dbuf = np.empty((n, rows, nx))
        vbuf = np.empty((n, rows, nx))
        mbuf = np.empty((n, rows, nx), dtype=np.bool_) if any_mask else None
        inputs = (
            _kernels.typed_list(list(dbuf)),
            _kernels.typed_list(list(vbuf)),
            _kernels.typed_list([mbuf[i] if has_mask[i] else no_mask for i in range(n)]),
            has_mask,
            scale,
        )
        for y0 in range(0, ny, rows):
            y1 = min(ny, y0 + rows)
            k = y1 - y0
            for i, src in enumerate(sources):
                src.read_rows(y0, y1, dbuf[i, :k], vbuf[i, :k], mbuf[i, :k] if has_mask[i] else None)
            chunks = max(1, min(k, threads))
            _kernel(n * k * nx)(inputs, 0, k, sigma, method, rule, net, chunks, outputs, y0)
    row_min, row_max = outputs[5:]
    return (*outputs[:5], int(row_min.min()), int(row_max.max()))
