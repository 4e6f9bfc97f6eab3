"""``Traces``: the centres of the spectral orders on the detector, per (fiber, order).

Shared by tracing (``nres.extract``), the packaged reference tables (``nres.instrument``), readers
of the original's files (``nres.io``) and the simulator (``nres.sim``), hence a top-level module.

Conventions: y and x are 0-based full-detector pixel indices with pixel centres at integers (a
windowed frame's own origin is added by the caller, see :mod:`nres.window`). Each trace is a
Legendre series in ``t = 2 (x - x_domain[0]) / (x_domain[1] - x_domain[0]) - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from astropy.io import fits
from astropy.table import Table
from numpy.polynomial import legendre

from .errors import InvalidInputFileError, InvalidParameterError

__all__ = ["Traces"]

#: Full-detector x range of the trimmed NRES detector, the default Legendre domain.
DEFAULT_X_DOMAIN = (0.0, 4095.0)


def _as_int_vector(name, value, n):
    arr = np.asarray(value)
    if arr.shape != (n,) or arr.dtype.kind not in "iu":
        msg = f"Traces: {name} must be an integer array of shape ({n},), got {arr.dtype} {arr.shape}"
        raise InvalidParameterError(msg)
    return arr.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Traces:
    """Order centres y(x) as Legendre series, one per (fiber, order).

    Parameters
    ----------
    coefficients : ndarray, shape (n_traces, n_coef)
        Legendre coefficients (pixels) of each trace in the normalised coordinate ``t``.
    orders : ndarray of int, shape (n_traces,)
        Physical diffraction order m of each trace (52..118 on NRES).
    fibers : ndarray of int, shape (n_traces,)
        Fiber id (0, 1, 2) of each trace.
    x_domain : (float, float)
        Full-detector x mapped to t = -1 and +1 (default the whole detector, 0 and 4095).
    x_valid : ndarray, shape (n_traces, 2), optional
        First and last full-detector x (inclusive) where each trace is on the detector; default the
        whole domain. Edge-clipped orders keep their trace over these columns only.
    box_height : float
        Height (px) of the extraction aperture centred on each trace (the original's ORDWID 10.5).
    meta : dict
        Free-form metadata (site, camera, source file, fit rms...).
    nuisance : ndarray of bool, shape (n_traces,), optional
        True for a *nuisance* trace: one whose light reaches the frame although its aperture is
        nowhere wholly on it (an order just beyond a window's edge, see
        :func:`nres.extract.complete_traces`). Nuisance traces are modelled (profiles, scattered
        light, the joint extraction's neighbour light) but not extracted. Default all False.
    """

    coefficients: np.ndarray
    orders: np.ndarray
    fibers: np.ndarray
    x_domain: tuple = DEFAULT_X_DOMAIN
    x_valid: np.ndarray | None = None
    box_height: float = 10.5
    meta: dict = field(default_factory=dict)
    nuisance: np.ndarray | None = None

    def __post_init__(self):
        coef = np.asarray(self.coefficients, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[1] < 1:
            msg = f"Traces: coefficients must have shape (n_traces, n_coef), got {coef.shape}"
            raise InvalidParameterError(msg)
        n = coef.shape[0]
        orders = _as_int_vector("orders", self.orders, n)
        fibers = _as_int_vector("fibers", self.fibers, n)
        keys = set(zip(fibers.tolist(), orders.tolist(), strict=True))
        if len(keys) != n:
            msg = "Traces: (fiber, order) pairs must be unique"
            raise InvalidParameterError(msg)
        x_domain = tuple(float(v) for v in self.x_domain)
        if len(x_domain) != 2 or not x_domain[1] > x_domain[0]:
            msg = f"Traces: x_domain must be (xmin, xmax) with xmax > xmin, got {self.x_domain}"
            raise InvalidParameterError(msg)
        if self.x_valid is None:
            x_valid = np.tile(np.array(x_domain), (n, 1))
        else:
            x_valid = np.asarray(self.x_valid, dtype=np.float64)
            if x_valid.shape != (n, 2):
                msg = f"Traces: x_valid must have shape ({n}, 2), got {x_valid.shape}"
                raise InvalidParameterError(msg)
        if not self.box_height > 0:
            msg = f"Traces: box_height must be positive, got {self.box_height}"
            raise InvalidParameterError(msg)
        nuisance = np.zeros(n, dtype=bool) if self.nuisance is None else np.asarray(self.nuisance)
        if nuisance.shape != (n,) or nuisance.dtype != bool:
            msg = f"Traces: nuisance must be a boolean array of shape ({n},), got "
            msg += f"{nuisance.dtype} {nuisance.shape}"
            raise InvalidParameterError(msg)
        nuisance = nuisance.copy()
        for name, value in (
            ("coefficients", coef),
            ("orders", orders),
            ("fibers", fibers),
            ("x_domain", x_domain),
            ("x_valid", x_valid),
            ("nuisance", nuisance),
        ):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "box_height", float(self.box_height))
        object.__setattr__(self, "meta", dict(self.meta))

    # ----- evaluation ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.coefficients.shape[0]

    @property
    def degree(self) -> int:
        """Legendre degree of the traces."""
        return self.coefficients.shape[1] - 1

    def normalised_x(self, x) -> np.ndarray:
        """The Legendre argument t of full-detector x."""
        a, b = self.x_domain
        return 2.0 * (np.asarray(x, dtype=np.float64) - a) / (b - a) - 1.0

    def center(self, x) -> np.ndarray:
        """Trace centres y (px) at full-detector columns ``x``.

        Parameters
        ----------
        x : array_like, shape (nx,)
            Full-detector x (px).

        Returns
        -------
        ndarray, shape (n_traces, nx)
            y of every trace, in the order of :attr:`orders`/:attr:`fibers` (also outside
            :attr:`x_valid`; use :meth:`valid` to know where a trace is on the detector).
        """
        t = np.atleast_1d(self.normalised_x(x))
        return legendre.legval(t, self.coefficients.T)

    def valid(self, x) -> np.ndarray:
        """Boolean (n_traces, nx): True where column x is inside each trace's :attr:`x_valid`."""
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        return (x[None, :] >= self.x_valid[:, :1]) & (x[None, :] <= self.x_valid[:, 1:])

    def index(self, fiber: int, order: int) -> int:
        """Row of the trace of (fiber, order); raises ``KeyError`` naming both if absent."""
        hit = np.flatnonzero((self.fibers == fiber) & (self.orders == order))
        if hit.size == 0:
            msg = f"no trace for fiber {fiber}, order {order}"
            raise KeyError(msg)
        return int(hit[0])

    def select(self, *, fibers=None, orders=None) -> Traces:
        """The subset of traces with the given fiber ids and/or physical orders."""
        keep = np.ones(len(self), dtype=bool)
        if fibers is not None:
            keep &= np.isin(self.fibers, np.atleast_1d(fibers))
        if orders is not None:
            keep &= np.isin(self.orders, np.atleast_1d(orders))
        return self[keep]

    def __getitem__(self, item) -> Traces:
        idx = np.arange(len(self))[item]
        idx = np.atleast_1d(idx)
        return replace(
            self,
            coefficients=self.coefficients[idx],
            orders=self.orders[idx],
            fibers=self.fibers[idx],
            x_valid=self.x_valid[idx],
            nuisance=self.nuisance[idx],
        )

    def shifted(self, dy: float) -> Traces:
        """Traces moved by ``dy`` px in y."""
        coef = self.coefficients.copy()
        coef[:, 0] += dy
        return replace(self, coefficients=coef)

    # ----- construction -------------------------------------------------------------------------
    @classmethod
    def from_samples(
        cls,
        x,
        y,
        *,
        orders,
        fibers,
        degree=6,
        x_domain=DEFAULT_X_DOMAIN,
        x_valid=None,
        box_height=10.5,
        meta=None,
    ) -> Traces:
        """Least-squares Legendre fit of sampled centres.

        Parameters
        ----------
        x : ndarray, shape (n_samples,)
            Full-detector x of the samples (px).
        y : ndarray, shape (n_traces, n_samples)
            Centres (px); NaN samples are ignored.
        orders, fibers : ndarray of int, shape (n_traces,)
        degree : int
            Legendre degree.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if y.shape[1] != x.size:
            msg = f"Traces.from_samples: y has {y.shape[1]} samples per trace, x has {x.size}"
            raise InvalidParameterError(msg)
        a, b = (float(v) for v in x_domain)
        t = 2.0 * (x - a) / (b - a) - 1.0
        coef = np.empty((y.shape[0], degree + 1))
        for i, row in enumerate(y):
            good = np.isfinite(row)
            if good.sum() <= degree:
                msg = f"Traces.from_samples: trace {i} has {good.sum()} finite samples for degree {degree}"
                raise InvalidParameterError(msg)
            coef[i] = legendre.legfit(t[good], row[good], degree)
        return cls(
            coef, orders, fibers, x_domain=(a, b), x_valid=x_valid, box_height=box_height, meta=meta or {}
        )

    # ----- FITS ---------------------------------------------------------------------------------
    def to_table(self) -> Table:
        """An astropy Table (one row per trace) with the domain and box height in ``meta``."""
        t = Table()
        t["fiber"] = self.fibers
        t["order"] = self.orders
        t["coefficients"] = self.coefficients
        t["x_valid"] = self.x_valid
        t["nuisance"] = self.nuisance
        t.meta["XDOMAIN0"] = self.x_domain[0]
        t.meta["XDOMAIN1"] = self.x_domain[1]
        t.meta["BOXHEIGH"] = self.box_height
        t.meta["EXTNAME"] = "TRACES"
        for k, v in self.meta.items():
            if isinstance(v, str | int | float | bool) and len(k) <= 8:
                t.meta[k.upper()] = v
        return t

    @classmethod
    def from_table(cls, table: Table) -> Traces:
        """Inverse of :meth:`to_table`."""
        meta = {
            k: v for k, v in table.meta.items() if k not in ("XDOMAIN0", "XDOMAIN1", "BOXHEIGH", "EXTNAME")
        }
        return cls(
            np.asarray(table["coefficients"], dtype=np.float64),
            np.asarray(table["order"]).astype(np.int64),
            np.asarray(table["fiber"]).astype(np.int64),
            x_domain=(float(table.meta["XDOMAIN0"]), float(table.meta["XDOMAIN1"])),
            x_valid=np.asarray(table["x_valid"], dtype=np.float64),
            box_height=float(table.meta["BOXHEIGH"]),
            meta=meta,
            # files written before nuisance traces existed hold none
            nuisance=(np.asarray(table["nuisance"], dtype=bool) if "nuisance" in table.colnames else None),
        )

    def write(self, path, *, overwrite=False) -> None:
        """Write to a FITS file (a TRACES binary table extension)."""
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(self.to_table())])
        hdul.writeto(path, overwrite=overwrite)

    @classmethod
    def read(cls, path) -> Traces:
        """Read a file written by :meth:`write`."""
        try:
            with fits.open(path) as hdul:
                table = Table.read(hdul["TRACES"])
        except FileNotFoundError as err:
            raise InvalidInputFileError(path, "file does not exist") from err
        except (OSError, KeyError) as err:
            raise InvalidInputFileError(path, f"not an nres TRACES file ({err})") from err
        try:
            return cls.from_table(table)
        except KeyError as err:
            raise InvalidInputFileError(path, f"TRACES table lacks column or keyword {err}") from err
        except InvalidParameterError as err:
            raise InvalidInputFileError(path, f"inconsistent TRACES table ({err})") from err

    def __repr__(self) -> str:
        if len(self) == 0:
            return f"<Traces: 0 traces, degree {self.degree}>"
        extra = f" ({int(self.nuisance.sum())} nuisance)" if self.nuisance.any() else ""
        return (
            f"<Traces: {len(self)} traces{extra}, fibers {sorted(set(self.fibers.tolist()))}, "
            f"orders {self.orders.min()}..{self.orders.max()}, degree {self.degree}>"
        )
