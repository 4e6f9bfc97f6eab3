"""Readers of the original pipeline's text trace seeds into :class:`nres.traces.Traces`.

The format (``idl-calib-trace-extract.md`` section 14.1; also the per-site ``*trace*.txt`` tables
fitted with Brandt's ``echelle_orders.py``)::

    <free text>
    <token> mfib fib0 fib1 [...]          e.g. "nfib 2 0 1"
    <token> x_1 x_2 ... x_n               sample columns
    iord y(x_1) ... y(x_n)                mfib rows per order: fiber fib0, then fib1, ...
    ...

``iord`` is the order index (physical order m = 52 + iord). Rows of an order group belong to the
consecutive fiber ids fib0, fib0 + 1, ...

y convention (converted here, once, to nres's 0-based pixel-centre convention):

``"numpy"``
    0-based indices with pixel centres at integers, as nres. The Brandt tables are in this
    convention: ``echelle_orders.py`` (the code that became BANZAI-NRES's first trace finder)
    maximises the flux of the spline-interpolated image sampled with
    ``scipy.ndimage.map_coordinates`` at (y, x), x = 0..nx-1, which puts pixel values at integer
    coordinates. No shift.
``"idl"``
    the IDL TRACE convention: a centre at numpy row j is stored as j + 0.5 (shift -0.5 in y).
``"ds9"``
    1-based ds9 image coordinates, how the hand-read seeds were made (shift -1 in x and y).
``"auto"`` (default)
    ``"numpy"`` if the first line names ``echelle_orders`` (the Brandt tables), else ``"ds9"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidInputFileError, InvalidParameterError
from ..traces import Traces
from ..window import DETECTOR_SHAPE

__all__ = [
    "Y_CONVENTIONS",
    "TraceSamples",
    "read_trace_samples",
    "read_trace_seeds",
    "add_missing_fiber",
    "samples_to_traces",
]

#: Physical order of order index 0 and the number of NRES orders.
ORDER0 = 52
NORD = 67

#: y convention -> (x shift, y shift) that takes the file's numbers to nres pixel indices.
Y_CONVENTIONS = {"numpy": (0.0, 0.0), "idl": (0.0, -0.5), "ds9": (-1.0, -1.0)}


@dataclass(frozen=True, eq=False)
class TraceSamples:
    """Sampled trace centres as read from a seed/table file, already in nres pixel coordinates.

    Attributes
    ----------
    x : ndarray, shape (n_x,)
        Full-detector columns of the samples (px).
    y : ndarray, shape (n_traces, n_x)
        Trace centres (px, 0-based, pixel centres at integers).
    orders : ndarray of int, shape (n_traces,)
        Physical order m of each row.
    fibers : ndarray of int, shape (n_traces,)
        Fiber id of each row.
    comment : str
        The file's first line.
    convention : str
        The y convention the file was read with.
    path : str
        Source file.
    """

    x: np.ndarray
    y: np.ndarray
    orders: np.ndarray
    fibers: np.ndarray
    comment: str = ""
    convention: str = "numpy"
    path: str = ""
    meta: dict = field(default_factory=dict)


def _floats(path, lineno, tokens, what):
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as err:
        raise InvalidInputFileError(path, f"line {lineno}: {what} must be numbers ({err})") from err
    if not np.all(np.isfinite(values)):
        raise InvalidInputFileError(path, f"line {lineno}: {what} must be finite")
    return values


def _int(path, lineno, token, what):
    try:
        value = float(token)
    except ValueError as err:
        raise InvalidInputFileError(path, f"line {lineno}: {what} must be an integer, got {token!r}") from err
    if not value.is_integer():
        raise InvalidInputFileError(path, f"line {lineno}: {what} must be an integer, got {token!r}")
    return int(value)


def read_trace_samples(path, *, y_convention="auto") -> TraceSamples:
    """Read a text trace seed / trace table into sampled centres in nres coordinates.

    Parameters
    ----------
    path : str or Path
        The text file (format in the module docstring).
    y_convention : {"auto", "numpy", "idl", "ds9"}
        Coordinate convention of the file's numbers (module docstring).

    Returns
    -------
    TraceSamples
        ``y`` shape (n_orders * mfib, n_x), rows in file order.

    Raises
    ------
    InvalidInputFileError
        The file does not exist or is not in this format (the message says which line and why):
        fewer than three lines, a bad fiber line, bad or unsorted sample columns, a data row with
        the wrong number of values, a row count that is not a multiple of the fiber count, an
        order index outside 0..66, inconsistent or repeated order indices.
    InvalidParameterError
        Unknown ``y_convention``.
    """
    if y_convention != "auto" and y_convention not in Y_CONVENTIONS:
        choices = ["auto", *Y_CONVENTIONS]
        msg = f"read_trace_samples: y_convention={y_convention!r}; expected one of {choices}"
        raise InvalidParameterError(msg)
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise InvalidInputFileError(path, "file does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputFileError(path, f"cannot read as text ({err})") from err
    lines = text.splitlines()
    # (line number, tokens) of the non-blank lines after the free-text first line
    rows = [(i + 1, ln.split()) for i, ln in enumerate(lines) if i > 0 and ln.strip()]
    if not lines or len(rows) < 3:
        raise InvalidInputFileError(
            path,
            "not a trace seed file: expected a comment line, a fiber line, "
            "a line of x positions and at least one data row",
        )
    comment = lines[0].strip()

    lineno, tokens = rows[0]
    if len(tokens) < 3:
        raise InvalidInputFileError(
            path, f"line {lineno}: expected '<token> mfib fib0 [fib1 ...]', got {tokens}"
        )
    mfib = _int(path, lineno, tokens[1], "the number of fibers")
    if not 1 <= mfib <= 3 or len(tokens) < 2 + min(mfib, 2):
        raise InvalidInputFileError(
            path,
            f"line {lineno}: the number of fibers must be 1..3 and be followed by "
            f"the first fiber id(s), got {tokens}",
        )
    fib0 = _int(path, lineno, tokens[2], "fiber id")
    if mfib >= 2:
        # trace0 uses fib0 and fib1 and assumes the lit fibers are consecutive
        fib1 = _int(path, lineno, tokens[3], "fiber id")
        if fib1 != fib0 + 1:
            raise InvalidInputFileError(
                path,
                f"line {lineno}: fiber ids must be consecutive (fib1 = fib0 + 1), "
                f"got {fib0} and {fib1}; the older 'nfib 3 2 1 2 ...' layout "
                "is not supported",
            )
    fibers = np.arange(fib0, fib0 + mfib)
    if fibers.min() < 0 or fibers.max() > 2:
        raise InvalidInputFileError(
            path, f"line {lineno}: fiber ids must be within 0..2, got {fibers.tolist()}"
        )

    lineno, tokens = rows[1]
    x = _floats(path, lineno, tokens[1:], "sample x positions")
    if x.size < 2 or np.any(np.diff(x) <= 0):
        raise InvalidInputFileError(path, f"line {lineno}: expected at least two increasing x positions")

    data = rows[2:]
    if len(data) % mfib:
        raise InvalidInputFileError(
            path, f"{len(data)} data rows is not a multiple of the {mfib} fibers per order"
        )
    order_index = np.empty(len(data), dtype=np.int64)
    y = np.empty((len(data), x.size))
    for k, (lineno, tokens) in enumerate(data):
        if len(tokens) != x.size + 1:
            raise InvalidInputFileError(
                path,
                f"line {lineno}: expected an order index and {x.size} y values, got {len(tokens)} numbers",
            )
        order_index[k] = _int(path, lineno, tokens[0], "order index")
        y[k] = _floats(path, lineno, tokens[1:], "y values")
    groups = order_index.reshape(-1, mfib)
    if np.any(groups != groups[:, :1]):
        bad = data[mfib * int(np.flatnonzero(np.any(groups != groups[:, :1], axis=1))[0])][0]
        raise InvalidInputFileError(path, f"line {bad}: the {mfib} rows of an order must share its index")
    per_order = groups[:, 0]
    if per_order.min() < 0 or per_order.max() >= NORD:
        raise InvalidInputFileError(
            path, f"order indices must be within 0..{NORD - 1}, got {per_order.min()}..{per_order.max()}"
        )
    if np.unique(per_order).size != per_order.size:
        raise InvalidInputFileError(path, "an order index appears in more than one group of rows")

    convention = y_convention
    if convention == "auto":
        convention = "numpy" if "echelle_orders" in comment else "ds9"
    dx, dy = Y_CONVENTIONS[convention]
    return TraceSamples(
        x=x + dx,
        y=y + dy,
        orders=order_index + ORDER0,
        fibers=np.tile(fibers, per_order.size),
        comment=comment,
        convention=convention,
        path=str(path),
    )


def add_missing_fiber(samples: TraceSamples) -> TraceSamples:
    """Add the unmeasured third fiber at the measured fiber spacing of each order and column.

    The fibers sit equally spaced on the slit, so with two measured fibers a and b the third
    (id f) is put at ``y_a + (f - a) (y_b - y_a) / (b - a)``, per order and sample column (e.g.
    fiber 2 = fiber 1 - (fiber 0 - fiber 1), ~17 px below fiber 1 in the red and ~24 px in the
    blue on NRES). The original trace0 did the same with a spacing fitted linearly across orders.

    Parameters
    ----------
    samples : TraceSamples
        Exactly two fibers per order.

    Returns
    -------
    TraceSamples
        Three fibers per order (rows ordered by order, then fiber id).
    """
    fib = np.unique(samples.fibers)
    if fib.size != 2:
        msg = f"add_missing_fiber: need exactly two measured fibers, got {fib.tolist()}"
        raise InvalidParameterError(msg)
    (a, b), (missing,) = fib, np.setdiff1d([0, 1, 2], fib)
    orders = np.unique(samples.orders)
    y = np.empty((3 * orders.size, samples.x.size))
    for i, m in enumerate(orders):
        ya = samples.y[(samples.orders == m) & (samples.fibers == a)][0]
        yb = samples.y[(samples.orders == m) & (samples.fibers == b)][0]
        step = (yb - ya) / (b - a)
        for f in range(3):
            y[3 * i + f] = ya + (f - a) * step if f == missing else (ya if f == a else yb)
    return TraceSamples(
        x=samples.x,
        y=y,
        orders=np.repeat(orders, 3),
        fibers=np.tile(np.arange(3), orders.size),
        comment=samples.comment,
        convention=samples.convention,
        path=samples.path,
        meta={**samples.meta, "extrapolated_fiber": int(missing)},
    )


def _x_valid(traces: Traces, ny: int) -> np.ndarray:
    """First and last column where each trace centre is on the detector rows 0..ny-1."""
    a, b = traces.x_domain
    xs = np.arange(np.ceil(a), np.floor(b) + 1)
    on = (traces.center(xs) >= 0) & (traces.center(xs) <= ny - 1)
    out = np.tile([np.nan, np.nan], (len(traces), 1))
    for k, row in enumerate(on):
        idx = np.flatnonzero(row)
        if idx.size:
            out[k] = xs[idx[0]], xs[idx[-1]]
    return out


def samples_to_traces(samples: TraceSamples, *, degree=4, meta=None, detector_shape=DETECTOR_SHAPE) -> Traces:
    """Fit sampled centres with Legendre series in full-detector x (domain 0..nx-1).

    ``x_valid`` is where the fitted centre lies on the detector rows; a trace never on the
    detector raises :class:`InvalidParameterError`. ``meta["FITMAX"]`` holds the largest absolute
    fit residual (px) over all samples.
    """
    ny, nx = detector_shape
    x_domain = (0.0, float(nx - 1))
    traces = Traces.from_samples(
        samples.x, samples.y, orders=samples.orders, fibers=samples.fibers, degree=degree, x_domain=x_domain
    )
    resid = traces.center(samples.x) - samples.y
    x_valid = _x_valid(traces, ny)
    if np.isnan(x_valid).any():
        bad = int(np.flatnonzero(np.isnan(x_valid[:, 0]))[0])
        msg = f"trace of fiber {traces.fibers[bad]}, order {traces.orders[bad]} is nowhere on the detector"
        raise InvalidParameterError(msg)
    info = {
        "SOURCE": Path(samples.path).name,
        "YCONV": samples.convention,
        "FITMAX": float(np.abs(resid).max()),
        "FITRMS": float(np.sqrt(np.mean(resid**2))),
    }
    return Traces(
        traces.coefficients,
        traces.orders,
        traces.fibers,
        x_domain=x_domain,
        x_valid=x_valid,
        meta={**info, **(meta or {})},
    )


def read_trace_seeds(path, *, y_convention="auto", degree=4, add_third_fiber=False) -> Traces:
    """Read the original's text trace seeds (or a Brandt ``*trace*.txt`` table) as :class:`Traces`.

    Parameters
    ----------
    path : str or Path
        The text file (format in the module docstring).
    y_convention : {"auto", "numpy", "idl", "ds9"}
        Coordinate convention of the file (module docstring); converted to nres pixel indices.
    degree : int
        Legendre degree of each trace (4 reproduces the Brandt tables to their 0.01 px print
        precision; the 5-sample hand seeds need degree <= 4).
    add_third_fiber : bool
        Also return the unmeasured fiber, extrapolated by :func:`add_missing_fiber`.

    Returns
    -------
    Traces
        One trace per (fiber, order) in the file, physical orders m = 52 + index, full-detector
        coordinates; ``meta`` names the source file, the convention and the fit residual.

    Raises
    ------
    InvalidInputFileError
        Missing file or bad format (see :func:`read_trace_samples`), or too few samples per order
        for ``degree``.
    """
    samples = read_trace_samples(path, y_convention=y_convention)
    if samples.x.size <= degree:
        raise InvalidInputFileError(
            path, f"{samples.x.size} x samples per trace cannot constrain a degree-{degree} Legendre fit"
        )
    try:
        if add_third_fiber:
            samples = add_missing_fiber(samples)
        return samples_to_traces(samples, degree=degree)
    except InvalidParameterError as err:
        raise InvalidInputFileError(path, str(err)) from err
